/// Qwen2 / Qwen2.5 (`Qwen2ForCausalLM`): Llama with biases on the q, k and v projections.
enum Qwen2Family: ModelFamily {
    static let architectures = ["Qwen2ForCausalLM"]
    static let displayName = "Qwen2 / 2.5"
    static let name = "qwen2"
    static let ggufArchitecture: String? = "qwen2"

    static func configureGGUF(_ config: inout ModelConfig, _ keys: inout GGUFKeys, tensors: inout [String: SourceTensor]) throws(EdgeLMError) {
        config.attention.qkvBias = true
    }

    static func configure(_ config: inout ModelConfig, _ r: inout ConfigReader, rope: RopeSettings) throws(EdgeLMError) {
        config.attention.qkvBias = true
        config.block.activation = try FamilyKeys.activation(&r, ["silu": .silu], default: .silu)
        try FamilyKeys.qwenWindow(&r, layers: config.layers)
    }

    static func layerTensors(_ module: String, _ t: SourceTensor, config: ModelConfig) -> [(String, SourceTensor)]? {
        let biases = ["self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias"]
        return (biases[module] ?? llamaModules[module]).map { [($0, t)] }
    }
}

/// Qwen3 (`Qwen3ForCausalLM`): Llama with a per-head RMSNorm on queries and keys before RoPE, and a head
/// width of its own (`head_dim`, read in common).
enum Qwen3Family: ModelFamily {
    static let architectures = ["Qwen3ForCausalLM"]
    static let displayName = "Qwen3"
    static let name = "qwen3"
    static let ggufArchitecture: String? = "qwen3"

    /// llama.cpp's converter writes the head width as `attention.key_length` (read in common) and the norms
    /// as `attn_q_norm` / `attn_k_norm`; queries and keys keep the Hugging Face (rotate-half) layout.
    static func configureGGUF(_ config: inout ModelConfig, _ keys: inout GGUFKeys, tensors: inout [String: SourceTensor]) throws(EdgeLMError) {
        config.attention.qkNorm = true
    }

    static func configure(_ config: inout ModelConfig, _ r: inout ConfigReader, rope: RopeSettings) throws(EdgeLMError) {
        config.attention.qkNorm = true
        try r.refuseTrue("attention_bias", "biases on the attention projections are not supported for Qwen3")
        config.block.activation = try FamilyKeys.activation(&r, ["silu": .silu], default: .silu)
        try FamilyKeys.qwenWindow(&r, layers: config.layers)
    }

    static func layerTensors(_ module: String, _ t: SourceTensor, config: ModelConfig) -> [(String, SourceTensor)]? {
        let norms = ["self_attn.q_norm.weight": "attn_q_norm", "self_attn.k_norm.weight": "attn_k_norm"]
        return (norms[module] ?? llamaModules[module]).map { [($0, t)] }
    }
}
