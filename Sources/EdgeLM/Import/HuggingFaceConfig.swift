import Foundation

/// A Hugging Face `config.json` read into an EdgeLM configuration. The keys every Llama-shaped model has
/// are read here; the family named by `architectures` reads its own (`ModelFamily.configure`), and any key
/// nobody read is refused by name (`ConfigReader.finish`). Both config forms are read: transformers 5's
/// `rope_parameters` and the 4.x `rope_theta` + `rope_scaling`.
struct HuggingFaceConfig {
    /// The EdgeLM configuration (`tiedOutput` as the config says; the reader settles it against the tensors).
    let config: ModelConfig
    /// The family that read it.
    let family: any ModelFamily.Type
    /// `tie_word_embeddings`, when given.
    let tieWordEmbeddings: Bool?
    let bosTokenId: Int?
    let eosTokenId: Int?
    /// Every id of `eos_token_id` (a list names several tokens that end generation).
    let eosTokenIds: [Int]

    /// Reads and checks `config.json`.
    static func load(path: String) throws(EdgeLMError) -> HuggingFaceConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw .io(path: path, message: "cannot read config.json") }
        return try parse(data, path: path)
    }

    /// Parses and checks config.json bytes; `path` names the file in errors.
    static func parse(_ data: Data, path: String) throws(EdgeLMError) -> HuggingFaceConfig {
        var r = try ConfigReader(data: data, path: path)
        let arch = try r.strings("architectures")?.first ?? "missing"
        guard let family = ModelFamilies.all.first(where: { $0.architectures.contains(arch) }) else {
            let names = ModelFamilies.all.flatMap { $0.architectures }.sorted().joined(separator: ", ")
            throw r.fail("architectures", "'\(arch)' is not supported (\(names))")
        }
        _ = try r.string("model_type")
        let dim = try r.requiredInt("hidden_size"), heads = try r.requiredInt("num_attention_heads")
        var config = ModelConfig(
            architecture: family.name, dim: dim, layers: try r.requiredInt("num_hidden_layers"), heads: heads,
            kvHeads: try r.int("num_key_value_heads") ?? heads, ffnDim: try r.requiredInt("intermediate_size"),
            vocabSize: try r.requiredInt("vocab_size"), contextLength: try r.int("max_position_embeddings") ?? 2048, ropeLayout: .halves,
            normEpsilon: Float(try r.double("rms_norm_eps") ?? 1e-6), tiedOutput: false)
        guard (1...ModelConfig.Limits.maxHeads).contains(heads) else {
            throw r.fail("num_attention_heads", "\(heads) is outside 1...\(ModelConfig.Limits.maxHeads)")
        }
        guard (1...ModelConfig.Limits.maxDim).contains(dim) else { throw r.fail("hidden_size", "\(dim) is outside 1...\(ModelConfig.Limits.maxDim)") }
        guard (1...ModelConfig.Limits.maxLayers).contains(config.layers) else {
            throw r.fail("num_hidden_layers", "\(config.layers) is outside 1...\(ModelConfig.Limits.maxLayers)")
        }
        if let h = try r.int("head_dim"), h != dim / heads || dim % heads != 0 { config.headDimension = h }
        guard (2...4096).contains(config.headDim), config.headDim % 2 == 0 else {
            throw r.fail("head_dim", "\(config.headDim) must be even and in 2...4096")
        }
        let tie = try r.bool("tie_word_embeddings")
        let bos = try tokenIds(&r, "bos_token_id").first, eosIds = try tokenIds(&r, "eos_token_id")
        let rope = try RopeSettings(&r, dims: config.headDim, contextLength: config.contextLength)
        try family.configure(&config, &r, rope: rope)
        if config.rotary.tables == nil { config.rotary.tables = [try rope.single(r)] }
        config.ropeTheta = Float(config.rotary.tables![0].theta)
        try r.finish()
        return HuggingFaceConfig(
            config: config.normalized(), family: family, tieWordEmbeddings: tie, bosTokenId: bos, eosTokenId: eosIds.first,
            eosTokenIds: eosIds)
    }

    /// `bos_token_id` / `eos_token_id`: an integer or a list of them (none when absent or null).
    private static func tokenIds(_ r: inout ConfigReader, _ key: String) throws(EdgeLMError) -> [Int] {
        guard let v = r.raw(key) else { return [] }
        guard let ids = tokenIds(v) else { throw r.fail(key, "must be an integer or a list of integers") }
        return ids
    }

    /// A JSON token id or list of ids (nil when it is neither; [] for null).
    static func tokenIds(_ v: Any) -> [Int]? {
        if v is NSNull { return [] }
        if let n = v as? NSNumber, let i = Int(exactly: n.doubleValue) { return [i] }
        if let list = v as? [NSNumber] {
            let ids = list.compactMap { Int(exactly: $0.doubleValue) }
            return ids.count == list.count ? ids : nil
        }
        return nil
    }
}

/// The RoPE settings of a config: one set, or one per layer type (Gemma 3's `rope_parameters` with
/// `full_attention` and `sliding_attention` entries).
struct RopeSettings {
    /// Tables by layer type ("" when the config gives one set for every layer).
    var tables: [String: RopeTable]

    /// The keys each variant may carry besides `rope_type`/`type` and `rope_theta`.
    static let variantKeys: [RopeKind: Set<String>] = [
        .default: [], .linear: ["factor"], .factors: [],
        .llama3: ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"],
        .yarn: ["factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "truncate"],
    ]

    init(_ r: inout ConfigReader, dims: Int, contextLength: Int) throws(EdgeLMError) {
        let legacyTheta = try r.double("rope_theta")
        let legacyScaling = try r.object("rope_scaling")
        if r.has("partial_rotary_factor") {
            try r.refuse("partial_rotary_factor", unless: { ($0 as? NSNumber)?.doubleValue == 1 }, "partial rotary embeddings are not supported")
        }
        func table(_ p: [String: Any], field: String, theta fallback: Double?) throws(EdgeLMError) -> RopeTable {
            let kindName = (p["rope_type"] as? String) ?? (p["type"] as? String) ?? "default"
            guard let kind = RopeKind(rawValue: kindName), RopeKind.fromCheckpoints.contains(kind) else {
                throw r.fail(
                    "\(field).rope_type",
                    "'\(kindName)' is not supported (\(RopeKind.fromCheckpoints.map(\.rawValue).joined(separator: ", "))\(kindName == "yarn" ? RopeKind.yarnRefusal : ""))"
                )
            }
            var numbers: [String: Double] = [:]
            for (key, value) in p where !["rope_type", "type", "rope_theta"].contains(key) {
                if key == "partial_rotary_factor", (value as? NSNumber)?.doubleValue == 1 { continue }
                if key == "truncate", value as? Bool == true { continue }
                guard RopeSettings.variantKeys[kind]!.contains(key), key != "truncate" else {
                    throw r.fail("\(field).\(key)", "is not supported with rope_type '\(kindName)'")
                }
                guard let n = value as? NSNumber, n.doubleValue.isFinite else { throw r.fail("\(field).\(key)", "must be a number") }
                numbers[key] = n.doubleValue
            }
            guard let theta = (p["rope_theta"] as? NSNumber)?.doubleValue ?? fallback, theta.isFinite, theta > 1 else {
                throw r.fail("\(field).rope_theta", "missing or not a number > 1")
            }
            return try RopeTable.compute(
                kind: kind, theta: theta, dims: dims, parameters: numbers, contextLength: contextLength,
                field: field, path: r.path)
        }
        if let params = try r.object("rope_parameters") {
            if !params.isEmpty, params.values.allSatisfy({ $0 is [String: Any] }) {
                var tables: [String: RopeTable] = [:]
                for (type, p) in params { tables[type] = try table(p as! [String: Any], field: "rope_parameters.\(type)", theta: legacyTheta) }
                self.tables = tables
            } else {
                tables = ["": try table(params, field: "rope_parameters", theta: legacyTheta)]
            }
        } else {
            tables = ["": try table(legacyScaling ?? [:], field: "rope_scaling", theta: legacyTheta ?? 10000)]
        }
    }

    /// The one table of a config without per-layer-type settings.
    func single(_ r: ConfigReader) throws(EdgeLMError) -> RopeTable {
        guard let t = tables[""] else {
            throw r.fail("rope_parameters", "per-layer-type settings (\(tables.keys.sorted().joined(separator: ", "))) are only read for Gemma 3")
        }
        return t
    }
}
