/// How query/key vectors are laid out for rotary position embedding.
public enum RopeLayout: String, Codable, Sendable {
    /// Meta's original layout: dimensions (2i, 2i+1) of a head form a rotated pair (llama2.c, GGUF).
    case interleaved
    /// Hugging Face's rotate-half layout: dimensions i and i + headDim/2 form a pair.
    case halves
}

/// The non-linearity of the gated feed-forward network.
public enum FFNActivation: String, Codable, Sendable {
    /// SwiGLU: silu(gate) * up (Llama, Qwen, Phi-3).
    case silu
    /// GeGLU with the tanh approximation of GELU (Gemma's `gelu_pytorch_tanh`).
    case geluTanh
}

/// Hyper-parameters of a Llama-family transformer. The variants (`rotary`, `attention`, `block`) group what a
/// family changes in the Llama block (nil fields: the Llama behaviour); files written before a field existed
/// decode with it nil.
public struct ModelConfig: Codable, Sendable, Equatable {
    /// Architecture (family) name: one of `ModelConfig.architectures`.
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
    /// Width of one attention head when it is not dim / heads (Qwen3, Gemma).
    public var headDimension: Int?
    /// What the family changes in the rotary embedding.
    public var rotary = RotaryVariant()
    /// What the family changes in attention.
    public var attention = AttentionVariant()
    /// What the family changes around attention and the feed-forward network.
    public var block = BlockVariant()

    /// The fields a file stores besides the family variants (which it stores flat beside them).
    private enum CodingKeys: String, CodingKey {
        case architecture, dim, layers, heads, kvHeads, ffnDim, vocabSize, contextLength, ropeTheta, ropeLayout, normEpsilon
        case tiedOutput, headDimension
    }

    /// Decodes a configuration as files store it: one flat object (files written before a field existed lack it).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architecture = try c.decode(String.self, forKey: .architecture)
        dim = try c.decode(Int.self, forKey: .dim)
        layers = try c.decode(Int.self, forKey: .layers)
        heads = try c.decode(Int.self, forKey: .heads)
        kvHeads = try c.decode(Int.self, forKey: .kvHeads)
        ffnDim = try c.decode(Int.self, forKey: .ffnDim)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        contextLength = try c.decode(Int.self, forKey: .contextLength)
        ropeTheta = try c.decode(Float.self, forKey: .ropeTheta)
        ropeLayout = try c.decode(RopeLayout.self, forKey: .ropeLayout)
        normEpsilon = try c.decode(Float.self, forKey: .normEpsilon)
        tiedOutput = try c.decode(Bool.self, forKey: .tiedOutput)
        headDimension = try c.decodeIfPresent(Int.self, forKey: .headDimension)
        rotary = try RotaryVariant(from: decoder)
        attention = try AttentionVariant(from: decoder)
        block = try BlockVariant(from: decoder)
    }

    /// Encodes the configuration as one flat object, the variants' fields beside the others.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(architecture, forKey: .architecture)
        try c.encode(dim, forKey: .dim)
        try c.encode(layers, forKey: .layers)
        try c.encode(heads, forKey: .heads)
        try c.encode(kvHeads, forKey: .kvHeads)
        try c.encode(ffnDim, forKey: .ffnDim)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(contextLength, forKey: .contextLength)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(ropeLayout, forKey: .ropeLayout)
        try c.encode(normEpsilon, forKey: .normEpsilon)
        try c.encode(tiedOutput, forKey: .tiedOutput)
        try c.encodeIfPresent(headDimension, forKey: .headDimension)
        try rotary.encode(to: encoder)
        try attention.encode(to: encoder)
        try block.encode(to: encoder)
    }

    /// Creates a configuration.
    public init(
        architecture: String = "llama", dim: Int, layers: Int, heads: Int, kvHeads: Int, ffnDim: Int,
        vocabSize: Int, contextLength: Int, ropeTheta: Float = 10000, ropeLayout: RopeLayout,
        normEpsilon: Float, tiedOutput: Bool
    ) {
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

    /// The same configuration with defaults spelled as nil (SwiGLU, one standard RoPE table), so that
    /// equal models compare equal whichever reader produced them.
    public func normalized() -> ModelConfig {
        var c = self
        if c.block.activation == .silu { c.block.activation = nil }
        if let t = c.rotary.tables, t.count == 1, c.rotary.layerTable == nil, t[0] == .standard(theta: Double(ropeTheta), dims: headDim) {
            c.rotary.tables = nil
        }
        return c
    }

    /// The supported architectures (the families' names).
    public static let architectures = Set(ModelFamilies.all.map { $0.name })
    /// The supported families as people name them ("Llama 2 / 3.x, SmolLM2, Mistral, ...").
    public static let familyNames = ModelFamilies.all.map { $0.displayName }.joined(separator: ", ")
    /// The architectures of the GGUF files EdgeLM reads ("llama, qwen2, ...").
    public static let ggufArchitectures = ModelFamilies.all.compactMap { $0.ggufArchitecture }.joined(separator: ", ")

    /// Width of one attention head.
    public var headDim: Int { headDimension ?? dim / heads }
    /// Width of all query heads together (the input width of the attention output matrix).
    public var qDim: Int { headDim * heads }
    /// Width of all key (or value) heads together.
    public var kvDim: Int { headDim * kvHeads }
    /// The rotary tables, the standard one when the file stores none.
    public var resolvedRopeTables: [RopeTable] { rotary.tables ?? [.standard(theta: Double(ropeTheta), dims: headDim)] }
    /// The rotary table of layer `l`.
    public func ropeTableIndex(layer l: Int) -> Int { rotary.layerTable?[l] ?? 0 }
    /// Makes every layer attend over a sliding window of `window` positions (Mistral, Phi-3).
    mutating func slideEveryLayer(window: Int) {
        attention.slidingWindow = window
        attention.slidingLayers = Array(repeating: true, count: layers)
    }

    /// The attention window of layer `l` (nil: every earlier position).
    public func window(layer l: Int) -> Int? { attention.slidingLayers?[l] == true ? attention.slidingWindow : nil }

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
        guard Self.architectures.contains(architecture) else {
            throw bad("architecture", "'\(architecture)' is not supported (\(Self.architectures.sorted().joined(separator: ", ")))")
        }
        guard (1...Limits.maxDim).contains(dim) else { throw bad("dim", "\(dim) is outside 1...\(Limits.maxDim)") }
        guard (1...Limits.maxLayers).contains(layers) else { throw bad("layers", "\(layers) is outside 1...\(Limits.maxLayers)") }
        guard (1...Limits.maxHeads).contains(heads) else { throw bad("heads", "\(heads) is outside 1...\(Limits.maxHeads)") }
        if let h = headDimension {
            guard (2...4096).contains(h) else { throw bad("headDimension", "\(h) is outside 2...4096") }
        } else {
            guard dim % heads == 0 else { throw bad("heads", "dim \(dim) is not divisible by \(heads) heads") }
        }
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
        try validateFamilyFields(bad)
    }

    private func validateFamilyFields(_ bad: (String, String) -> EdgeLMError) throws(EdgeLMError) {
        let tables = resolvedRopeTables
        guard (1...16).contains(tables.count) else { throw bad("ropeTables", "\(tables.count) tables (1...16 allowed)") }
        for (i, t) in tables.enumerated() {
            guard t.inverseFrequencies.count == headDim / 2, t.inverseFrequencies.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw bad("ropeTables[\(i)]", "needs \(headDim / 2) positive finite frequencies")
            }
            guard t.attentionFactor.isFinite, t.attentionFactor > 0 else { throw bad("ropeTables[\(i)]", "attention factor \(t.attentionFactor)") }
        }
        if let map = rotary.layerTable {
            guard map.count == layers, map.allSatisfy({ (0..<tables.count).contains($0) }) else {
                throw bad("layerRopeTable", "needs one table index per layer, each below \(tables.count)")
            }
        }
        if let s = attention.slidingLayers {
            guard s.count == layers else { throw bad("slidingLayers", "\(s.count) entries for \(layers) layers") }
            guard let w = attention.slidingWindow, w >= 1 else { throw bad("slidingWindow", "sliding layers need a window >= 1") }
        }
        for (field, v) in [
            ("embeddingScale", block.embeddingScale), ("attentionScale", attention.scale), ("attentionSoftcap", attention.softcap),
            ("finalSoftcap", block.finalSoftcap),
        ] {
            if let v { guard v.isFinite, v > 0 else { throw bad(field, "\(v) must be a positive finite number") } }
        }
    }

    /// The canonical tensors of this configuration with their shapes ([rows, cols] for matrices, [n] for vectors).
    public var tensorShapes: [(name: String, shape: [Int])] {
        var list: [(String, [Int])] = [("token_embd", [vocabSize, dim])]
        for l in 0..<layers {
            let p = "blk.\(l)."
            list += [
                (p + "attn_norm", [dim]),
                (p + "attn_q", [qDim, dim]),
                (p + "attn_k", [kvDim, dim]),
                (p + "attn_v", [kvDim, dim]),
                (p + "attn_output", [dim, qDim]),
                (p + "ffn_norm", [dim]),
                (p + "ffn_gate", [ffnDim, dim]),
                (p + "ffn_up", [ffnDim, dim]),
                (p + "ffn_down", [dim, ffnDim]),
            ]
            if attention.qkvBias == true { list += [(p + "attn_q.bias", [qDim]), (p + "attn_k.bias", [kvDim]), (p + "attn_v.bias", [kvDim])] }
            if attention.qkNorm == true { list += [(p + "attn_q_norm", [headDim]), (p + "attn_k_norm", [headDim])] }
            if block.sandwichNorms == true { list += [(p + "post_attention_norm", [dim]), (p + "post_ffw_norm", [dim])] }
        }
        list.append(("output_norm", [dim]))
        if !tiedOutput { list.append(("output", [vocabSize, dim])) }
        return list
    }

    /// The attention and FFN matrices among `tensorShapes`, in file order.
    public var matrixNames: [String] { tensorShapes.map(\.name).filter { TensorRole(name: $0).isMatrix } }

    /// Parameter count of the model (a tied head counted once).
    public var parameterCount: Int { tensorShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }
}

/// The role a tensor plays, which decides how it may be quantized.
public enum TensorRole: Sendable {
    case embedding, output, norm, attention, ffn

    /// The role of the canonical tensor `name` (biases count as norms: vectors kept in f32).
    public init(name: String) {
        if name == "token_embd" {
            self = .embedding
        } else if name == "output" {
            self = .output
        } else if name.hasSuffix("_norm") || name.hasSuffix(".bias") {
            self = .norm
        } else if name.contains(".attn_") {
            self = .attention
        } else {
            self = .ffn
        }
    }

    /// True for the attention and FFN matrices (the ones `--type` and `--tensor-type` apply to).
    public var isMatrix: Bool { self == .attention || self == .ffn }
}
