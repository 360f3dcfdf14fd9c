/// Phi-3 / Phi-4-mini (`Phi3ForCausalLM`): Llama with fused `qkv_proj` and `gate_up_proj`, split into the
/// canonical q, k, v and gate, up matrices at conversion (row ranges of the fused matrix, no copy).
enum Phi3Family: ModelFamily {
    static let architectures = ["Phi3ForCausalLM"]
    static let name = "phi3"

    static func configure(_ config: inout ModelConfig, _ r: inout ConfigReader, rope: RopeSettings) throws(EdgeLMError) {
        config.activation = try FamilyKeys.activation(&r, ["silu": .silu], default: .silu)
        // Only LongRoPE (refused by its rope_type) reads the original context.
        r.harmless(["original_max_position_embeddings"])
        if let w = try r.int("sliding_window") {
            guard w >= 1 else { throw r.fail("sliding_window", "\(w) must be >= 1") }
            config.slidingWindow = w
            config.slidingLayers = Array(repeating: true, count: config.layers)
        }
    }

    static func layerTensors(_ module: String, _ t: SourceTensor, config: ModelConfig) -> [(String, SourceTensor)]? {
        switch module {
        case "self_attn.qkv_proj.weight":
            guard t.shape.count == 2, t.shape[0] == config.qDim + 2 * config.kvDim else { return [("attn_qkv", t)] }
            let q = config.qDim, kv = config.kvDim
            return [("attn_q", t.rows(0..<q, name: "attn_q")), ("attn_k", t.rows(q..<(q + kv), name: "attn_k")),
                    ("attn_v", t.rows((q + kv)..<(q + 2 * kv), name: "attn_v"))]
        case "mlp.gate_up_proj.weight":
            guard t.shape.count == 2, t.shape[0] == 2 * config.ffnDim else { return [("ffn_gate_up", t)] }
            let f = config.ffnDim
            return [("ffn_gate", t.rows(0..<f, name: "ffn_gate")), ("ffn_up", t.rows(f..<(2 * f), name: "ffn_up"))]
        default:
            return llamaModules[module].map { [($0, t)] }
        }
    }
}
