/// Llama 2/3.x and SmolLM2 (`LlamaForCausalLM`): the base block. RoPE variants come from the common
/// reading; biases are refused.
enum LlamaFamily: ModelFamily {
    static let architectures = ["LlamaForCausalLM"]
    static let displayName = "Llama 2 / 3.x, SmolLM2"
    static let name = "llama"
    static let ggufArchitecture: String? = "llama"
    /// llama.cpp's converter permutes Llama's Q/K rows into Meta's interleaved pairs.
    static let ggufRopeLayout = RopeLayout.interleaved

    static func configure(_ config: inout ModelConfig, _ r: inout ConfigReader, rope: RopeSettings) throws(EdgeLMError) {
        try r.refuseTrue("attention_bias", "biases on the attention projections (q, k, v and o) are not supported for Llama")
        try r.refuseTrue("mlp_bias", "MLP biases are not supported")
        config.block.activation = try FamilyKeys.activation(&r, ["silu": .silu], default: .silu)
    }
}

/// Mistral (`MistralForCausalLM`): Llama with an optional sliding window over every layer.
enum MistralFamily: ModelFamily {
    static let architectures = ["MistralForCausalLM"]
    static let displayName = "Mistral"
    static let name = "llama"

    static func configure(_ config: inout ModelConfig, _ r: inout ConfigReader, rope: RopeSettings) throws(EdgeLMError) {
        try LlamaFamily.configure(&config, &r, rope: rope)
        try FamilyKeys.everyLayerWindow(&config, &r)
    }
}
