/// How query/key vectors are laid out for rotary position embedding.
public enum RopeLayout: String, Codable, Sendable {
    /// Meta's original layout: dimensions (2i, 2i+1) of a head form a rotated pair (llama2.c, GGUF).
    case interleaved
    /// Hugging Face's rotate-half layout: dimensions i and i + headDim/2 form a pair.
    case halves
}

/// Hyper-parameters of a Llama-family transformer.
public struct ModelConfig: Codable, Sendable, Equatable {
    /// Architecture name; only "llama" is supported.
    public var architecture: String
    /// Model (residual stream) width.
    public var dim: Int
    /// Number of transformer blocks.
    public var layers: Int
    /// Query heads.
    public var heads: Int
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    public var kvHeads: Int
    /// Hidden width of the SwiGLU feed-forward network.
    public var ffnDim: Int
    /// Vocabulary size.
    public var vocabSize: Int
    /// Longest sequence the model was trained for.
    public var contextLength: Int
    /// RoPE base frequency.
    public var ropeTheta: Float
    /// Layout of Q/K for RoPE.
    public var ropeLayout: RopeLayout
    /// RMSNorm epsilon.
    public var normEpsilon: Float
    /// True when the output head reuses the token embedding matrix.
    public var tiedOutput: Bool

    /// Creates a configuration.
    public init(architecture: String = "llama", dim: Int, layers: Int, heads: Int, kvHeads: Int, ffnDim: Int,
                vocabSize: Int, contextLength: Int, ropeTheta: Float = 10000, ropeLayout: RopeLayout,
                normEpsilon: Float, tiedOutput: Bool) {
        self.architecture = architecture
        self.dim = dim
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.ffnDim = ffnDim
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.ropeTheta = ropeTheta
        self.ropeLayout = ropeLayout
        self.normEpsilon = normEpsilon
        self.tiedOutput = tiedOutput
    }

    /// Width of one attention head.
    public var headDim: Int { dim / heads }
    /// Width of all key (or value) heads together.
    public var kvDim: Int { headDim * kvHeads }

    /// Upper bounds on hyper-parameters; anything larger is rejected before allocation.
    public enum Limits {
        public static let maxDim = 65_536
        public static let maxLayers = 1_024
        public static let maxHeads = 1_024
        public static let maxFFN = 262_144
        public static let maxVocab = 1 << 21
        public static let maxContext = 1 << 20
    }

    /// Checks every field against its limits and the relations between them.
    /// - Parameter source: the file name to put in the error.
    public func validate(source: String) throws(EdgeLMError) {
        func bad(_ field: String, _ message: String) -> EdgeLMError {
            .invalidField(path: source, field: field, message: message)
        }
        guard architecture == "llama" else { throw bad("architecture", "'\(architecture)' is not supported (only llama)") }
        guard (1...Limits.maxDim).contains(dim) else { throw bad("dim", "\(dim) is outside 1...\(Limits.maxDim)") }
        guard (1...Limits.maxLayers).contains(layers) else { throw bad("layers", "\(layers) is outside 1...\(Limits.maxLayers)") }
        guard (1...Limits.maxHeads).contains(heads) else { throw bad("heads", "\(heads) is outside 1...\(Limits.maxHeads)") }
        guard dim % heads == 0 else { throw bad("heads", "dim \(dim) is not divisible by \(heads) heads") }
        guard headDim % 2 == 0 else { throw bad("heads", "head dimension \(headDim) is odd; RoPE needs pairs") }
        guard (1...heads).contains(kvHeads), heads % kvHeads == 0 else {
            throw bad("kvHeads", "\(kvHeads) does not divide \(heads) query heads")
        }
        guard (1...Limits.maxFFN).contains(ffnDim) else { throw bad("ffnDim", "\(ffnDim) is outside 1...\(Limits.maxFFN)") }
        guard (1...Limits.maxVocab).contains(vocabSize) else { throw bad("vocabSize", "\(vocabSize) is outside 1...\(Limits.maxVocab)") }
        guard (1...Limits.maxContext).contains(contextLength) else {
            throw bad("contextLength", "\(contextLength) is outside 1...\(Limits.maxContext)")
        }
        guard ropeTheta.isFinite, ropeTheta > 1 else { throw bad("ropeTheta", "\(ropeTheta) must be a finite number > 1") }
        guard normEpsilon.isFinite, normEpsilon > 0, normEpsilon < 1 else {
            throw bad("normEpsilon", "\(normEpsilon) must be in (0, 1)")
        }
    }

    /// The canonical tensors of this configuration with their shapes ([rows, cols] for matrices, [n] for vectors).
    public var tensorShapes: [(name: String, shape: [Int])] {
        var list: [(String, [Int])] = [("token_embd", [vocabSize, dim])]
        for l in 0..<layers {
            let p = "blk.\(l)."
            list += [
                (p + "attn_norm", [dim]),
                (p + "attn_q", [dim, dim]),
                (p + "attn_k", [kvDim, dim]),
                (p + "attn_v", [kvDim, dim]),
                (p + "attn_output", [dim, dim]),
                (p + "ffn_norm", [dim]),
                (p + "ffn_gate", [ffnDim, dim]),
                (p + "ffn_up", [ffnDim, dim]),
                (p + "ffn_down", [dim, ffnDim]),
            ]
        }
        list.append(("output_norm", [dim]))
        if !tiedOutput { list.append(("output", [vocabSize, dim])) }
        return list
    }

    /// Parameter count of the model (a tied head counted once).
    public var parameterCount: Int { tensorShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }
}

/// The role a tensor plays, which decides how it may be quantized.
public enum TensorRole: Sendable {
    case embedding, output, norm, attention, ffn

    /// The role of the canonical tensor `name`.
    public init(name: String) {
        if name == "token_embd" { self = .embedding }
        else if name == "output" { self = .output }
        else if name.hasSuffix("_norm") { self = .norm }
        else if name.contains(".attn_") { self = .attention }
        else { self = .ffn }
    }
}
