/// Phi-3 / Phi-4-mini (`Phi3ForCausalLM`): Llama with fused `qkv_proj` and `gate_up_proj`, split into the
/// canonical q, k, v and gate, up matrices at conversion (row ranges of the fused matrix, no copy).
enum Phi3Family: ModelFamily {
    static let architectures = ["Phi3ForCausalLM"]
    static let displayName = "Phi-3 / Phi-4-mini"
    static let name = "phi3"
    static let ggufArchitecture: String? = "phi3"

    /// llama.cpp keeps the fused matrices (`attn_qkv`, and `ffn_up` holding gate then up); they are split
    /// here. A sliding window of 0 means none (Phi-4); LongRoPE factors are refused.
    static func configureGGUF(_ config: inout ModelConfig, _ keys: inout GGUFKeys, tensors: inout [String: SourceTensor]) throws(EdgeLMError) {
        if tensors["rope_factors_long"] != nil || tensors["rope_factors_short"] != nil || keys.value("rope.scaling.attn_factor") != nil {
            throw keys.fail("rope.scaling", "LongRoPE (rope_factors_long/short) is not supported")
        }
        _ = keys.value("rope.scaling.original_context_length")
        let window = try keys.int("attention.sliding_window", default: 0)
        if window > 0 { config.slideEveryLayer(window: window) }
        for l in 0..<config.layers {
            let p = "blk.\(l)."
            if let qkv = tensors.removeValue(forKey: p + "attn_qkv") {
                guard let split = layerTensors("self_attn.qkv_proj.weight", qkv, config: config), split.count == 3 else {
                    throw .shapeMismatch(path: keys.path, tensor: p + "attn_qkv", expected: [config.qDim + 2 * config.kvDim, config.dim], actual: qkv.shape)
                }
                for (name, t) in split { tensors[p + name] = t.named(p + name) }
            }
            if let up = tensors[p + "ffn_up"], tensors[p + "ffn_gate"] == nil {
                guard let split = layerTensors("mlp.gate_up_proj.weight", up, config: config), split.count == 2 else {
                    throw .shapeMismatch(path: keys.path, tensor: p + "ffn_up", expected: [2 * config.ffnDim, config.dim], actual: up.shape)
                }
                for (name, t) in split { tensors[p + name] = t.named(p + name) }
            }
        }
    }

    static func configure(_ config: inout ModelConfig, _ r: inout ConfigReader, rope: RopeSettings) throws(EdgeLMError) {
        config.block.activation = try FamilyKeys.activation(&r, ["silu": .silu], default: .silu)
        // Only LongRoPE (refused by its rope_type) reads the original context.
        r.harmless(["original_max_position_embeddings"])
        try FamilyKeys.everyLayerWindow(&config, &r)
    }

    static func layerTensors(_ module: String, _ t: SourceTensor, config: ModelConfig) -> [(String, SourceTensor)]? {
        switch module {
        case "self_attn.qkv_proj.weight":
            guard t.shape.count == 2, t.shape[0] == config.qDim + 2 * config.kvDim else { return [("attn_qkv", t)] }
            let q = config.qDim, kv = config.kvDim
            return [
                ("attn_q", t.rows(0..<q, name: "attn_q")), ("attn_k", t.rows(q..<(q + kv), name: "attn_k")),
                ("attn_v", t.rows((q + kv)..<(q + 2 * kv), name: "attn_v")),
            ]
        case "mlp.gate_up_proj.weight":
            guard t.shape.count == 2, t.shape[0] == 2 * config.ffnDim else { return [("ffn_gate_up", t)] }
            let f = config.ffnDim
            return [("ffn_gate", t.rows(0..<f, name: "ffn_gate")), ("ffn_up", t.rows(f..<(2 * f), name: "ffn_up"))]
        default:
            return llamaModules[module].map { [($0, t)] }
        }
    }
}
