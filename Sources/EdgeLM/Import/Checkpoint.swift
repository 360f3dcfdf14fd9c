import CEdgeKernels
import Foundation

/// Element types of source tensors: floats, or ggml's quantized blocks (from GGUF files).
public enum SourceDType: Sendable, Equatable {
    case f32, f16, bf16
    /// ggml blocks along each row (ne0), dequantized as ggml does.
    case ggml(GGMLType)

    /// Bytes of `count` elements along a row (a whole number of blocks for ggml types).
    public func bytes(_ count: Int) -> Int {
        switch self {
        case .f32: count * 4
        case .f16, .bf16: count * 2
        case let .ggml(t): count / t.blockValues * t.blockBytes
        }
    }

    /// Bytes per element of the float types.
    public var size: Int { bytes(1) }

    /// The type's name ("F32", "Q4_K", ...).
    public var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case let .ggml(t): t.name
        }
    }
}

/// One float tensor of a source checkpoint, viewed in place in the input file's mapping.
public struct SourceTensor: @unchecked Sendable {
    /// Canonical name ("blk.0.attn_q", ...).
    public let name: String
    /// [rows, cols] or [n].
    public let shape: [Int]
    /// Element type.
    public let dtype: SourceDType
    /// The raw little-endian elements.
    public let bytes: UnsafeRawBufferPointer
    /// Added to every element when read (Gemma stores norm weights w for a scale of 1 + w).
    public var addend: Float = 0

    /// Creates a view of `bytes` as a tensor.
    public init(name: String, shape: [Int], dtype: SourceDType, bytes: UnsafeRawBufferPointer) {
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.bytes = bytes
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// The same data under canonical name `name`.
    func named(_ name: String) -> SourceTensor {
        var t = SourceTensor(name: name, shape: shape, dtype: dtype, bytes: bytes)
        t.addend = addend
        return t
    }

    /// Rows `rows` of a matrix as a tensor of its own (a fused projection split at conversion).
    func rows(_ rows: Range<Int>, name: String) -> SourceTensor {
        let rowBytes = dtype.bytes(shape[1])
        return SourceTensor(
            name: name, shape: [rows.count, shape[1]], dtype: dtype,
            bytes: UnsafeRawBufferPointer(rebasing: bytes[(rows.lowerBound * rowBytes)..<(rows.upperBound * rowBytes)]))
    }

    /// Converts the elements to f32 (in parallel chunks), rejecting NaN and infinities.
    /// - Parameter path: the file name for errors.
    public func floats(path: String) throws(EdgeLMError) -> [Float] {
        var failure: EdgeLMError?
        let out = [Float](unsafeUninitializedCapacity: count) { buf, initialized in
            do throws(EdgeLMError) { try floats(path: path, into: buf.baseAddress!) } catch { failure = error }
            initialized = count
        }
        if let failure { throw failure }
        return out
    }

    /// `floats(path:)` into `out` (`count` floats), so a converter can reuse one buffer for every tensor
    /// instead of faulting in fresh pages for each. On a throw `out` holds the converted values up to the error.
    public func floats(path: String, into out: UnsafeMutablePointer<Float>) throws(EdgeLMError) {
        let n = count, chunk = 1 << 20, chunks = max(1, (n + chunk - 1) / chunk)
        let bad = ConcurrentSlots<Int>(count: chunks)
        let dst = UncheckedSendable(out), me = self
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = c * chunk, hi = min(n, lo + chunk)
            me.convert(lo..<hi, into: dst.value)
            if let i = firstNonFinite(dst.value, lo..<hi) { bad.set(c, i) }
            if me.addend != 0 { for i in lo..<hi { dst.value[i] += me.addend } }
        }
        if let index = bad.values.compactMap({ $0 }).min() { throw .nonFiniteWeight(path: path, tensor: name, index: index) }
    }

    /// Elements `range` as f32 into `out` (at the same indices); ggml ranges are whole blocks.
    private func convert(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let lo = range.lowerBound, n = range.count
        switch dtype {
        case .f32:
            UnsafeMutableRawPointer(out + lo).copyMemory(from: bytes.baseAddress! + lo * 4, byteCount: n * 4)
        case .f16:
            // Exact at every level: the fastest one, whatever level the reader's caller runs its kernels at.
            edge_f16_to_f32(KernelLevel.detected.rawValue, bytes.baseAddress!.assumingMemoryBound(to: UInt16.self) + lo, out + lo, Int64(n))
        case .bf16:
            for i in range {
                out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) << 16)
            }
        case let .ggml(t):
            let first = lo / t.blockValues
            t.dequantize(UnsafeRawBufferPointer(rebasing: bytes[(first * t.blockBytes)...]), blocks: n / t.blockValues, into: out + lo)
        }
    }
}

/// Index of the first NaN or infinity among `values[range]`.
private func firstNonFinite(_ values: UnsafeMutablePointer<Float>, _ range: Range<Int>) -> Int? {
    let raw = UnsafeRawPointer(values), exponent = SIMD16<UInt32>(repeating: 0x7F80_0000)
    var i = range.lowerBound
    while i + 16 <= range.upperBound {
        let bits = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<UInt32>.self)
        if any(bits & exponent .== exponent) { break }
        i += 16
    }
    while i < range.upperBound {
        if !values[i].isFinite { return i }
        i += 1
    }
    return nil
}

/// A float checkpoint read from some source format: configuration, vocabulary and tensors.
public struct Checkpoint: @unchecked Sendable {
    /// The main input file.
    public let path: String
    /// Human-readable format ("gguf v3", "llama2.c").
    public let format: String
    /// Model hyper-parameters.
    public let config: ModelConfig
    /// Vocabulary.
    public let tokenizer: TokenizerData
    /// Tensors by canonical name (a tied model has no "output").
    public let tensors: [String: SourceTensor]
    /// Files backing the tensor views (kept alive with the checkpoint).
    let mappings: [MappedFile]

    /// Opens a checkpoint: a Hugging Face folder (or its config.json), else GGUF or llama2.c by content.
    /// - Parameters:
    ///   - path: the checkpoint file or folder.
    ///   - tokenizerPath: llama2.c tokenizer (`tokenizer.bin`), required for llama2.c input.
    public static func open(path: String, tokenizerPath: String?) throws(EdgeLMError) -> Checkpoint {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw .io(path: path, message: "no such file or directory") }
        if isDir.boolValue || (path as NSString).lastPathComponent == "config.json" {
            return try HuggingFaceReader.checkpoint(path: path)
        }
        let file = try MappedFile(path: path)
        if file.bytes.count >= 4, Array(file.bytes[0..<4]) == Array("GGUF".utf8) {
            return try GGUFReader.checkpoint(file: file)
        }
        guard let tokenizerPath else {
            throw .invalidArgument("\(path): not a GGUF file; a llama2.c checkpoint needs --tokenizer tokenizer.bin")
        }
        return try Llama2CReader.checkpoint(file: file, tokenizerPath: tokenizerPath)
    }

    /// Checks that every tensor the configuration needs is present with the right shape.
    func validateTensors() throws(EdgeLMError) {
        for (name, shape) in config.tensorShapes {
            guard let t = tensors[name] else { throw .missingTensor(path: path, tensor: name) }
            guard t.shape == shape else { throw .shapeMismatch(path: path, tensor: name, expected: shape, actual: t.shape) }
        }
    }

    /// SHA-256 of the weight files, in order (the single input file for GGUF and llama2.c).
    public func sha256() -> String {
        var hash = SHA256()
        for m in mappings { hash.update(m.bytes) }
        return hash.finalizeHex()
    }

    /// Total bytes of the weight files.
    public var inputBytes: Int { mappings.reduce(0) { $0 + $1.bytes.count } }
}
