/// One converted tensor, as reported to the user.
public struct TensorReport: Sendable {
    /// Canonical name.
    public let name: String
    /// Shape.
    public let shape: [Int]
    /// Stored scheme.
    public let scheme: TensorScheme
    /// Decoded payload bytes.
    public let rawBytes: Int
    /// Stored bytes (differs from raw when compressed).
    public let storedBytes: Int
    /// Error against the source floats (nil for f32 tensors, which are exact, and unless
    /// `ConversionOptions.measureError` is set).
    public let error: QuantizationError?
    /// True when the source's codes and scales were stored as they were (a GGUF Q8_0 or Q4_0 tensor
    /// written as q8 or q4 with groups of 32), with no second rounding.
    public let carriedOver: Bool
    /// The source tensor's type ("F32", "Q4_K", ...).
    public let sourceType: String
}

/// Progress events during conversion.
public struct ConversionProgress: Sendable {
    /// Index of the tensor just finished (1-based).
    public let done: Int
    /// Number of tensors.
    public let total: Int
    /// The tensor just finished.
    public let tensor: TensorReport
}

/// Summary of a conversion.
public struct ConversionReport: Sendable {
    /// Per-tensor results in file order.
    public let tensors: [TensorReport]
    /// Parameters written.
    public let parameters: Int
    /// Size of the input checkpoint.
    public let inputBytes: Int
    /// Size of the output file.
    public let outputBytes: Int
    /// Wall time in seconds.
    public let seconds: Double
    /// Bits per weight over the attention and FFN matrices (codes + scales).
    public let matrixBitsPerWeight: Double
    /// Bits per weight over all tensors, from decoded payload bytes.
    public let bitsPerWeight: Double
    /// Decoded payload bytes over stored payload bytes.
    public let compressionRatio: Double
    /// True when the source's output head was identical to its embedding and stored once.
    public let tiedOutput: Bool

    /// The report of `tensors`, with the parameter and bit counts summed from them.
    init(tensors: [TensorReport], inputBytes: Int, outputBytes: Int, seconds: Double, tiedOutput: Bool) {
        let matrices = tensors.filter { TensorRole(name: $0.name).isMatrix }
        let matrixParams = matrices.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let raw = tensors.reduce(0) { $0 + $1.rawBytes }, stored = tensors.reduce(0) { $0 + $1.storedBytes }
        self.tensors = tensors
        parameters = tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }
        self.inputBytes = inputBytes
        self.outputBytes = outputBytes
        self.seconds = seconds
        matrixBitsPerWeight = Double(matrices.reduce(0) { $0 + $1.rawBytes } * 8) / Double(max(1, matrixParams))
        bitsPerWeight = Double(raw * 8) / Double(max(1, parameters))
        compressionRatio = Double(raw) / Double(max(1, stored))
        self.tiedOutput = tiedOutput
    }
}
