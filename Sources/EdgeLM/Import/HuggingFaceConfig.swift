import Foundation

/// The fields of a Hugging Face `config.json` that describe a Llama-shaped model. Anything that would change
/// the computation and that EdgeLM does not implement is rejected by name rather than ignored.
struct HuggingFaceConfig: Decodable {
    let architectures: [String]?
    let modelType: String?
    let hiddenSize: Int
    let numHiddenLayers: Int
    let numAttentionHeads: Int
    let numKeyValueHeads: Int?
    let intermediateSize: Int
    let vocabSize: Int
    let maxPositionEmbeddings: Int?
    let rmsNormEps: Double?
    let ropeTheta: Double?
    let tieWordEmbeddings: Bool?
    let hiddenAct: String?
    let attentionBias: Bool?
    let mlpBias: Bool?
    let headDim: Int?
    let bosTokenId: Int?
    let eosTokenId: EOS?
    let ropeScaling: Ignored?
    let slidingWindow: Int?

    /// `eos_token_id` is an integer or a list of integers.
    enum EOS: Decodable {
        case one(Int)
        case many([Int])

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let v = try? c.decode(Int.self) { self = .one(v) } else { self = .many(try c.decode([Int].self)) }
        }

        var first: Int? {
            switch self {
            case let .one(v): return v
            case let .many(v): return v.first
            }
        }
    }

    /// Any JSON value, only checked for presence (null decodes as nil).
    struct Ignored: Decodable {
        init(from decoder: Decoder) throws {}
    }

    static let supportedArchitectures: Set<String> = ["LlamaForCausalLM", "MistralForCausalLM"]

    /// Reads and checks `config.json`.
    static func load(path: String) throws(EdgeLMError) -> HuggingFaceConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw .io(path: path, message: "cannot read config.json") }
        return try parse(data, path: path)
    }

    /// Parses and checks config.json bytes; `path` names the file in errors.
    static func parse(_ data: Data, path: String) throws(EdgeLMError) -> HuggingFaceConfig {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let config: HuggingFaceConfig
        do {
            config = try decoder.decode(HuggingFaceConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw .invalidField(path: path, field: key.stringValue, message: "missing")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .invalidField(path: path, field: context.codingPath.map(\.stringValue).joined(separator: "."), message: "wrong type")
        } catch {
            throw .invalidField(path: path, field: "config", message: "not a valid config.json: \(error)")
        }
        try config.check(path: path)
        return config
    }

    private func check(path: String) throws(EdgeLMError) {
        func bad(_ field: String, _ message: String) -> EdgeLMError { .invalidField(path: path, field: field, message: message) }
        let arch = architectures?.first ?? "missing"
        guard Self.supportedArchitectures.contains(arch) else {
            throw bad("architectures", "'\(arch)' is not supported (\(Self.supportedArchitectures.sorted().joined(separator: ", ")))")
        }
        if ropeScaling != nil { throw bad("rope_scaling", "RoPE scaling is not supported") }
        if let w = slidingWindow { throw bad("sliding_window", "sliding-window attention (\(w)) is not supported") }
        if attentionBias == true { throw bad("attention_bias", "attention biases are not supported") }
        if mlpBias == true { throw bad("mlp_bias", "MLP biases are not supported") }
        if let act = hiddenAct, act != "silu" { throw bad("hidden_act", "'\(act)' is not supported (only silu)") }
        if let h = headDim, numAttentionHeads > 0, h != hiddenSize / numAttentionHeads {
            throw bad("head_dim", "\(h) differs from hidden_size / num_attention_heads")
        }
    }

    /// The EdgeLM configuration (Q/K stay in Hugging Face's rotate-half layout).
    func modelConfig(tied: Bool) -> ModelConfig {
        ModelConfig(dim: hiddenSize, layers: numHiddenLayers, heads: numAttentionHeads,
                    kvHeads: numKeyValueHeads ?? numAttentionHeads, ffnDim: intermediateSize, vocabSize: vocabSize,
                    contextLength: maxPositionEmbeddings ?? 2048, ropeTheta: Float(ropeTheta ?? 10000), ropeLayout: .halves,
                    normEpsilon: Float(rmsNormEps ?? 1e-6), tiedOutput: tied)
    }
}
