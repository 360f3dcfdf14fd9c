import Foundation

/// Gemma 2 (`Gemma2ForCausalLM`): GeGLU (tanh GELU), RMSNorm scaled by 1 + w (the 1 added at conversion),
/// embeddings times sqrt(hidden), a norm before and after each sublayer, attention and final logit
/// soft-capping, a score scale of `query_pre_attn_scalar`^-1/2, and sliding-window layers alternating with
/// global ones.
enum Gemma2Family: ModelFamily {
    static let architectures = ["Gemma2ForCausalLM"]
    static let displayName = "Gemma 2"
    static let name = "gemma2"
    static let normsAddOne = true
    static let ggufArchitecture: String? = "gemma2"

    /// llama.cpp's converter writes norms as 1 + w already, and no `query_pre_attn_scalar` and no layer
    /// pattern: llama.cpp infers them from the model's size (sliding window on even layers; queries scaled by
    /// head_dim^-1/2 for the 26- and 42-layer models, (hidden / heads)^-1/2 for the 46-layer one, and no
    /// other size loads). EdgeLM applies the same rules and refuses other sizes by name.
    static func configureGGUF(_ config: inout ModelConfig, _ keys: inout GGUFKeys, tensors: inout [String: SourceTensor]) throws(EdgeLMError) {
        switch config.layers {
        case 26, 42: config.attention.scale = 1 / Float(config.headDim).squareRoot()
        case 46: config.attention.scale = 1 / Float(config.dim / config.heads).squareRoot()
        default:
            throw keys.fail(
                "block_count",
                "\(config.layers) layers: a gemma2 GGUF does not store its query scale, which llama.cpp implies "
                    + "only for 26, 42 and 46 layers; convert this model from its Hugging Face folder")
        }
        config.block.activation = .geluTanh
        config.block.sandwichNorms = true
        config.block.embeddingScale = Float(Double(config.dim).squareRoot())
        config.attention.slidingWindow = try keys.int("attention.sliding_window", default: 4096)
        config.attention.slidingLayers = (0..<config.layers).map { $0 % 2 == 0 }
        config.attention.softcap = Float(try keys.float("attn_logit_softcapping", default: 50))
        config.block.finalSoftcap = Float(try keys.float("final_logit_softcapping", default: 30))
    }

    /// Gemma's layer parameters: its four norms are named differently from Llama's.
    static let modules: [String: String] = llamaModules.merging([
        "post_attention_layernorm.weight": "post_attention_norm", "pre_feedforward_layernorm.weight": "ffn_norm",
        "post_feedforward_layernorm.weight": "post_ffw_norm",
        "self_attn.q_norm.weight": "attn_q_norm", "self_attn.k_norm.weight": "attn_k_norm",
    ]) { $1 }

    static func configure(_ config: inout ModelConfig, _ r: inout ConfigReader, rope: RopeSettings) throws(EdgeLMError) {
        try configureGemma(&config, &r, defaultSliding: { $0 % 2 == 0 })
        config.attention.softcap = try r.double("attn_logit_softcapping").map(Float.init)
    }

    /// What Gemma 2 and 3 share; `defaultSliding` decides the sliding layers of a config without `layer_types`.
    static func configureGemma(_ config: inout ModelConfig, _ r: inout ConfigReader, defaultSliding: (Int) -> Bool) throws(EdgeLMError) {
        config.block.activation = try FamilyKeys.activation(&r, ["gelu_pytorch_tanh": .geluTanh], default: .geluTanh)
        config.block.sandwichNorms = true
        config.block.embeddingScale = Float(Double(config.dim).squareRoot())
        try r.refuseTrue("attention_bias", "biases on the attention projections are not supported for Gemma")
        try r.refuseTrue("use_bidirectional_attention", "bidirectional attention is not supported")
        let scalar = try r.double("query_pre_attn_scalar") ?? Double(config.headDim)
        guard scalar > 0 else { throw r.fail("query_pre_attn_scalar", "\(scalar) must be > 0") }
        config.attention.scale = Float(1 / scalar.squareRoot())
        config.block.finalSoftcap = try r.double("final_logit_softcapping").map(Float.init)
        let sliding = try FamilyKeys.slidingLayers(&r, layers: config.layers) ?? (0..<config.layers).map(defaultSliding)
        if sliding.contains(true) {
            guard let w = try r.int("sliding_window"), w >= 1 else { throw r.fail("sliding_window", "sliding layers need a window >= 1") }
            config.attention.slidingWindow = w
            config.attention.slidingLayers = sliding
        } else {
            r.harmless(["sliding_window"])
        }
    }

    static func layerTensors(_ module: String, _ t: SourceTensor, config: ModelConfig) -> [(String, SourceTensor)]? {
        modules[module].map { [($0, t)] }
    }
}

/// Gemma 3 text (`Gemma3ForCausalLM`): Gemma 2 with q/k RMSNorm, no soft-capping by default, and two RoPE
/// tables: the local base for sliding layers, the global one (with its scaling) for full ones.
enum Gemma3Family: ModelFamily {
    static let architectures = ["Gemma3ForCausalLM"]
    static let displayName = "Gemma 3 (text)"
    static let name = "gemma3"
    static let normsAddOne = true
    static let ggufArchitecture: String? = "gemma3"

    /// As llama.cpp reads a gemma3 GGUF (its converter writes norms as 1 + w, the head width as
    /// `attention.key_length`, the global base as `rope.freq_base` with any `rope.scaling`, the local one as
    /// `rope.freq_base_swa`): sliding layers only with an `attention.sliding_window`, by
    /// `attention.sliding_window_pattern` (a list of flags, or n: every n-th layer global; 6 when absent, as
    /// the converter leaves it out), their RoPE table unscaled at the local base (10000 when absent); queries
    /// scaled by head_dim^-1/2, or (hidden / heads)^-1/2 for the 62-layer model; no attention soft-cap.
    static func configureGGUF(_ config: inout ModelConfig, _ keys: inout GGUFKeys, tensors: inout [String: SourceTensor]) throws(EdgeLMError) {
        config.block.activation = .geluTanh
        config.block.sandwichNorms = true
        config.attention.qkNorm = true
        config.block.embeddingScale = Float(Double(config.dim).squareRoot())
        config.attention.scale = 1 / Float(config.layers == 62 ? config.dim / config.heads : config.headDim).squareRoot()
        if let cap = keys.value("final_logit_softcapping") {
            guard let c = cap.asDouble, c > 0 else { throw keys.fail("final_logit_softcapping", "must be a number > 0") }
            config.block.finalSoftcap = Float(c)
        }
        let window = try keys.int("attention.sliding_window", default: 0)
        let pattern = keys.value("attention.sliding_window_pattern")
        let local = try keys.float("rope.freq_base_swa", default: 10000)
        guard window > 0 else { return }
        let sliding: [Bool]
        switch pattern {
        case let .array(flags, 7)?:
            guard flags.count == config.layers else { throw keys.fail("attention.sliding_window_pattern", "\(flags.count) flags for \(config.layers) layers") }
            sliding = flags.map { if case let .bool(b) = $0 { b } else { false } }
        case nil:
            sliding = (0..<config.layers).map { $0 % 6 < 5 }
        case let v?:
            guard let n = v.asInt, n >= 1 else { throw keys.fail("attention.sliding_window_pattern", "must be a layer count >= 1 or a list of flags") }
            sliding = (0..<config.layers).map { $0 % n < n - 1 }
        }
        guard sliding.contains(true) else { return }
        config.attention.slidingWindow = window
        config.attention.slidingLayers = sliding
        config.rotary.tables = [config.rotary.tables![0], .standard(theta: local, dims: config.headDim)]
        config.rotary.layerTable = sliding.map { $0 ? 1 : 0 }
    }

    static func configure(_ config: inout ModelConfig, _ r: inout ConfigReader, rope: RopeSettings) throws(EdgeLMError) {
        let pattern = try r.int("sliding_window_pattern") ?? 6
        r.harmless(["_sliding_window_pattern"])
        guard pattern >= 1 else { throw r.fail("sliding_window_pattern", "\(pattern) must be >= 1") }
        try Gemma2Family.configureGemma(&config, &r, defaultSliding: { ($0 + 1) % pattern != 0 })
        config.attention.qkNorm = true
        config.attention.softcap = try r.double("attn_logit_softcapping").map(Float.init)
        let global: RopeTable, local: RopeTable
        if let g = rope.tables["full_attention"], let l = rope.tables["sliding_attention"] {
            (global, local) = (g, l)
            r.harmless(["rope_local_base_freq"])
        } else {
            global = try rope.single(r)
            local = .standard(theta: try r.double("rope_local_base_freq") ?? 10000, dims: config.headDim)
        }
        config.rotary.tables = [global, local]
        config.rotary.layerTable = (0..<config.layers).map { config.attention.slidingLayers?[$0] == true ? 1 : 0 }
    }

    static func layerTensors(_ module: String, _ t: SourceTensor, config: ModelConfig) -> [(String, SourceTensor)]? {
        Gemma2Family.layerTensors(module, t, config: config)
    }
}
