import Foundation

/// What one model family changes in the reading of a Hugging Face checkpoint. The base is Llama: the
/// common config keys are read by `HuggingFaceConfig`, the common tensor names by `llamaModules`; a family
/// reads its own keys (refusing the values it does not implement) and maps its own tensor names. The forward
/// pass then runs from the resulting `ModelConfig` alone.
protocol ModelFamily: Sendable {
    /// Hugging Face class names (`architectures[0]`).
    static var architectures: [String] { get }
    /// EdgeLM architecture name stored in the file.
    static var name: String { get }
    /// The models it covers, as help text and errors name them ("Llama 2 / 3.x, SmolLM2", as README's family table names it).
    static var displayName: String { get }
    /// Norm weights are stored as w for a scale of 1 + w (Gemma); the converter adds the 1.
    static var normsAddOne: Bool { get }
    /// Reads the family's own config keys into `config`.
    static func configure(_ config: inout ModelConfig, _ r: inout ConfigReader, rope: RopeSettings) throws(EdgeLMError)
    /// The canonical tensors (name without "blk.N.") of one layer parameter, e.g. "self_attn.q_proj.weight";
    /// nil when the family has no such parameter.
    static func layerTensors(_ module: String, _ t: SourceTensor, config: ModelConfig) -> [(String, SourceTensor)]?
    /// `general.architecture` of the family's GGUF files as llama.cpp writes them (nil: not read from GGUF).
    static var ggufArchitecture: String? { get }
    /// How llama.cpp's converter stores Q/K for RoPE in those files.
    static var ggufRopeLayout: RopeLayout { get }
    /// Reads the family's own `<arch>.` keys and tensors (the common ones are read already).
    static func configureGGUF(_ config: inout ModelConfig, _ keys: inout GGUFKeys, tensors: inout [String: SourceTensor]) throws(EdgeLMError)
}

extension ModelFamily {
    static var normsAddOne: Bool { false }
    static var ggufArchitecture: String? { nil }
    static var ggufRopeLayout: RopeLayout { .halves }
    static func configureGGUF(_ config: inout ModelConfig, _ keys: inout GGUFKeys, tensors: inout [String: SourceTensor]) throws(EdgeLMError) {}

    static func layerTensors(_ module: String, _ t: SourceTensor, config: ModelConfig) -> [(String, SourceTensor)]? {
        llamaModules[module].map { [($0, t)] }
    }
}

/// The one list of families: Hugging Face configs, GGUF architectures, the architectures a model file may name and
/// the help text all come from it.
enum ModelFamilies {
    static let all: [any ModelFamily.Type] = [
        LlamaFamily.self, MistralFamily.self, Qwen2Family.self, Qwen3Family.self,
        Gemma2Family.self, Gemma3Family.self, Phi3Family.self,
    ]
}

/// Llama's layer parameters and their canonical names.
let llamaModules: [String: String] = [
    "input_layernorm.weight": "attn_norm", "post_attention_layernorm.weight": "ffn_norm",
    "self_attn.q_proj.weight": "attn_q", "self_attn.k_proj.weight": "attn_k", "self_attn.v_proj.weight": "attn_v",
    "self_attn.o_proj.weight": "attn_output",
    "mlp.gate_proj.weight": "ffn_gate", "mlp.up_proj.weight": "ffn_up", "mlp.down_proj.weight": "ffn_down",
]

/// Config readings several families share.
enum FamilyKeys {
    /// Reads the activation from `hidden_act` or `hidden_activation`, accepting only `allowed`.
    static func activation(_ r: inout ConfigReader, _ allowed: [String: FFNActivation], default value: FFNActivation) throws(EdgeLMError) -> FFNActivation {
        var result = value
        for key in ["hidden_act", "hidden_activation"] {
            guard let name = try r.string(key) else { continue }
            guard let a = allowed[name] else {
                throw r.fail(key, "'\(name)' is not supported (\(allowed.keys.sorted().joined(separator: ", ")))")
            }
            result = a
        }
        return result
    }

    /// `layer_types` as booleans (true: sliding), refusing types other than full and sliding attention.
    static func slidingLayers(_ r: inout ConfigReader, layers: Int) throws(EdgeLMError) -> [Bool]? {
        guard let types = try r.strings("layer_types") else { return nil }
        guard types.count == layers else { throw r.fail("layer_types", "\(types.count) entries for \(layers) layers") }
        return try types.map { (t) throws(EdgeLMError) -> Bool in
            switch t {
            case "full_attention": return false
            case "sliding_attention": return true
            default: throw r.fail("layer_types", "'\(t)' is not supported (full_attention, sliding_attention)")
            }
        }
    }

    /// `sliding_window` as a window over every layer (Mistral, Phi-3), when given.
    static func everyLayerWindow(_ config: inout ModelConfig, _ r: inout ConfigReader) throws(EdgeLMError) {
        guard let w = try r.int("sliding_window") else { return }
        guard w >= 1 else { throw r.fail("sliding_window", "\(w) must be >= 1") }
        config.slideEveryLayer(window: w)
    }

    /// Qwen's optional sliding window: refused when switched on; its size and layer count then change nothing.
    static func qwenWindow(_ r: inout ConfigReader, layers: Int) throws(EdgeLMError) {
        try r.refuseTrue("use_sliding_window", "Qwen's sliding-window layers are not supported")
        r.harmless(["sliding_window", "max_window_layers"])
        if let sliding = try slidingLayers(&r, layers: layers), sliding.contains(true) {
            throw r.fail("layer_types", "sliding-attention layers without use_sliding_window are not supported")
        }
    }
}
