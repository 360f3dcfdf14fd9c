/// How a tensor payload is encoded on disk.
public enum PayloadEncoding: String, Codable, Sendable {
    /// The bytes are the tensor layout itself, usable in place from a memory map.
    case raw
    /// Independent zstd frames, one per chunk of `chunkBytes` decoded bytes.
    case zstd
}

/// One row of the tensor directory.
public struct TensorEntry: Codable, Sendable, Equatable {
    /// Canonical name ("token_embd", "blk.0.attn_q", ...).
    public var name: String
    /// Shape: [rows, cols] for matrices, [n] for vectors.
    public var shape: [Int]
    /// Storage scheme.
    public var scheme: TensorScheme
    /// Weights per scale group along a row (0: one scale per row; unused for float schemes).
    public var groupSize: Int
    /// Payload offset from the start of the data section.
    public var offset: Int
    /// Stored payload bytes.
    public var length: Int
    /// Payload encoding.
    public var encoding: PayloadEncoding
    /// Decoded chunk size for zstd payloads.
    public var chunkBytes: Int?
    /// Stored byte length of each zstd frame, in order.
    public var chunks: [Int]?
    /// xxHash64 (hex) of the stored bytes.
    public var checksum: String
    /// xxHash64 (hex) of the decoded bytes (zstd payloads).
    public var rawChecksum: String?

    /// The decoded byte layout.
    public func layout() throws(EdgeLMError) -> TensorLayout {
        try TensorLayout(shape: shape, scheme: scheme, groupSize: groupSize)
    }
}

/// Where a converted model came from and how it was converted.
public struct Provenance: Codable, Sendable, Equatable {
    /// File name of the source checkpoint.
    public var sourceFile: String
    /// SHA-256 of the source checkpoint (hex).
    public var sourceSHA256: String
    /// Source format ("gguf v3", "llama2.c", ...).
    public var sourceFormat: String
    /// EdgeLM version that wrote the file.
    public var converterVersion: String
    /// ISO-8601 time of conversion.
    public var created: String
}

/// The quantization options a file was written with.
public struct QuantizationSettings: Codable, Sendable, Equatable {
    /// Scheme of the attention and FFN matrices.
    public var type: TensorScheme
    /// Group size along rows (0: per channel).
    public var groupSize: Int
    /// Scheme of the token embedding and output head.
    public var embeddingType: TensorScheme
    /// Payload encoding.
    public var compression: PayloadEncoding
    /// zstd level, when compressed.
    public var zstdLevel: Int?
    /// The calibration text the q4 scales were fitted with, if any.
    public var calibration: CalibrationProvenance?
    /// The `--tensor-type` rules (`PATTERN=TYPE:GROUP`) that gave some matrices another scheme, if any.
    public var tensorTypes: [String]?
}

/// Which text calibrated a conversion.
public struct CalibrationProvenance: Codable, Sendable, Equatable {
    /// SHA-256 of the calibration text file's bytes (hex).
    public var textSHA256: String
    /// Tokens run through the float model.
    public var tokens: Int
    /// Windows (of `context` tokens, BOS first) they were run in.
    public var windows: Int
    /// Tokens per window.
    public var context: Int
    /// How the statistics chose the q4 codes (nil in files written before GPTQ: `.importance`).
    public var method: CalibrationMethod?

    /// Creates a record.
    public init(textSHA256: String, tokens: Int, windows: Int, context: Int, method: CalibrationMethod? = nil) {
        self.textSHA256 = textSHA256
        self.tokens = tokens
        self.windows = windows
        self.context = context
        self.method = method
    }
}

/// How calibration statistics shape a q4 conversion.
public enum CalibrationMethod: String, Codable, Sendable {
    /// Scales fitted to the importance-weighted error; codes rounded to nearest.
    case importance
    /// Scales as for `importance`; codes rounded column by column with GPTQ's error feedback.
    case gptq
    /// GPTQ in forward order from the partly quantized model's inputs, each matrix fitted to the float
    /// model's outputs first (`SequentialGPTQ`).
    case sequentialGPTQ
}

/// Everything in a model file except the payloads.
public struct ModelMetadata: Codable, Sendable, Equatable {
    /// Architecture hyper-parameters.
    public var config: ModelConfig
    /// Vocabulary and tokenizer settings.
    public var tokenizer: TokenizerData
    /// Source of the checkpoint.
    public var provenance: Provenance
    /// Conversion options.
    public var quantization: QuantizationSettings
    /// The tensor directory.
    public var tensors: [TensorEntry]
}
