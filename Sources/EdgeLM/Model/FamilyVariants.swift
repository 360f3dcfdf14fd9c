/// What a family changes in attention. Every field nil is Llama's attention; a file stores the fields flat
/// in its configuration, under the keys named in `CodingKeys`.
public struct AttentionVariant: Codable, Sendable, Equatable {
    /// Q, K and V projections have biases (Qwen2).
    public var qkvBias: Bool?
    /// Per-head RMSNorm of queries and keys before RoPE (Qwen3, Gemma 3).
    public var qkNorm: Bool?
    /// Attention score scale (nil: 1 / sqrt(headDim); Gemma: query_pre_attn_scalar^-1/2).
    public var scale: Float?
    /// Attention scores pass through cap * tanh(score / cap) (Gemma 2).
    public var softcap: Float?
    /// Positions a query sees in the layers marked by `slidingLayers` (itself included).
    public var slidingWindow: Int?
    /// For each layer, true when it attends over the sliding window only.
    public var slidingLayers: [Bool]?

    /// Llama's attention.
    public init() {}

    enum CodingKeys: String, CodingKey {
        case qkvBias, qkNorm, slidingWindow, slidingLayers
        case scale = "attentionScale"
        case softcap = "attentionSoftcap"
    }
}

/// What a family changes in the rotary position embedding beyond `ropeTheta` (nil: one standard table).
public struct RotaryVariant: Codable, Sendable, Equatable {
    /// Rotary frequency tables (nil: one standard table from `ropeTheta`).
    public var tables: [RopeTable]?
    /// Index into `tables` for each layer (nil: table 0 everywhere).
    public var layerTable: [Int]?

    /// One standard table.
    public init() {}

    enum CodingKeys: String, CodingKey {
        case tables = "ropeTables"
        case layerTable = "layerRopeTable"
    }
}

/// What a family changes in the block around attention and the feed-forward network (nil: Llama's).
public struct BlockVariant: Codable, Sendable, Equatable {
    /// Norms applied to each sublayer's output before the residual add (Gemma 2/3).
    public var sandwichNorms: Bool?
    /// Feed-forward non-linearity (nil: SwiGLU).
    public var activation: FFNActivation?
    /// Factor applied to token embeddings (Gemma: sqrt(dim)).
    public var embeddingScale: Float?
    /// Logits pass through cap * tanh(logit / cap) (Gemma 2).
    public var finalSoftcap: Float?

    /// Llama's block.
    public init() {}
}
