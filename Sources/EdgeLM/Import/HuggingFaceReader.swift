import Foundation

/// Reads a Hugging Face checkpoint folder: `config.json`, `model.safetensors` (or the shards named by
/// `model.safetensors.index.json`), `tokenizer.json` and optionally `tokenizer_config.json`.
enum HuggingFaceReader {
    /// `path` is the folder or its `config.json`.
    static func checkpoint(path: String) throws(EdgeLMError) -> Checkpoint {
        var isDir: ObjCBool = false
        let folder =
            FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
            ? path : (path as NSString).deletingLastPathComponent
        func file(_ name: String) -> String { (folder as NSString).appendingPathComponent(name) }
        let hf = try HuggingFaceConfig.load(path: file("config.json"))

        var mappings: [MappedFile] = []
        var raw: [String: SourceTensor] = [:]
        let index = file("model.safetensors.index.json")
        if FileManager.default.fileExists(atPath: index) {
            guard let data = FileManager.default.contents(atPath: index),
                let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let weightMap = json["weight_map"] as? [String: String]
            else {
                throw .invalidField(path: index, field: "weight_map", message: "missing or not a map of tensor names to files")
            }
            for shard in Set(weightMap.values).sorted() {
                guard !shard.contains("/"), !shard.hasPrefix(".") else {
                    throw .invalidField(path: index, field: "weight_map", message: "shard name '\(shard)' must be a file in the same folder")
                }
                let mapped = try MappedFile(path: file(shard))
                mappings.append(mapped)
                for (name, t) in try SafeTensors.read(mapped) where weightMap[name] == shard { raw[name] = t }
            }
            if let missing = weightMap.keys.first(where: { raw[$0] == nil }) {
                throw .missingTensor(path: index, tensor: missing)
            }
        } else {
            let mapped = try MappedFile(path: file("model.safetensors"))
            mappings.append(mapped)
            raw = try SafeTensors.read(mapped)
        }

        var tensors: [String: SourceTensor] = [:]
        let family = hf.family
        for (name, t) in raw {
            if name.hasSuffix("rotary_emb.inv_freq") { continue }
            guard let mapped = canonicalTensors(name, t, family: family, config: hf.config) else {
                throw .invalidField(path: folder, field: "tensor '\(name)'", message: "not a parameter of a \(family.architectures[0]) model EdgeLM reads")
            }
            for (canonical, var tensor) in mapped {
                guard tensors[canonical] == nil else { throw .invalidField(path: folder, field: "tensor '\(name)'", message: "gives '\(canonical)' twice") }
                if family.normsAddOne, canonical.hasSuffix("_norm") { tensor.addend = 1 }
                tensors[canonical] = tensor.named(canonical)
            }
        }
        var tied = hf.tieWordEmbeddings ?? false
        if tensors["token_embd"] == nil, let output = tensors["output"], tied || hf.tieWordEmbeddings == nil {
            tensors["token_embd"] = output.named("token_embd")
            tied = true
        }
        if tensors["output"] == nil, hf.tieWordEmbeddings == nil { tied = true }
        if tied { tensors["output"] = nil }
        var config = hf.config
        config.tiedOutput = tied
        try config.validate(source: file("config.json"))
        let tokenizerConfig = file("tokenizer_config.json")
        var tokenizer = try HuggingFaceTokenizer.load(
            path: file("tokenizer.json"),
            configPath: FileManager.default.fileExists(atPath: tokenizerConfig) ? tokenizerConfig : nil,
            vocabSize: config.vocabSize, bosId: hf.bosTokenId, eosId: hf.eosTokenId)
        let stops = Set(hf.eosTokenIds + (try generationEndIds(path: file("generation_config.json")))).subtracting(tokenizer.eos.map { [$0] } ?? [])
        tokenizer.endOfGeneration = stops.isEmpty ? nil : stops.sorted()
        try tokenizer.validate(source: file("tokenizer.json"), vocabSize: config.vocabSize)
        let checkpoint = Checkpoint(
            path: folder, format: "safetensors (\(mappings.count) file\(mappings.count == 1 ? "" : "s"))",
            config: config, tokenizer: tokenizer, tensors: tensors, mappings: mappings)
        try checkpoint.validateTensors()
        return checkpoint
    }

    /// The `eos_token_id` ids of `generation_config.json` (none when the file is absent): every one ends generation.
    static func generationEndIds(path: String) throws(EdgeLMError) -> [Int] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw .invalidField(path: path, field: "generation_config.json", message: "not a JSON object")
        }
        guard let v = json["eos_token_id"] else { return [] }
        guard let ids = HuggingFaceConfig.tokenIds(v) else {
            throw .invalidField(path: path, field: "eos_token_id", message: "must be an integer or a list of integers")
        }
        return ids
    }

    /// Canonical tensors of Hugging Face parameter `name` in `family` (nil: not one of its parameters).
    static func canonicalTensors(
        _ name: String, _ t: SourceTensor, family: any ModelFamily.Type,
        config: ModelConfig
    ) -> [(String, SourceTensor)]? {
        switch name {
        case "model.embed_tokens.weight": return [("token_embd", t)]
        case "lm_head.weight": return [("output", t)]
        case "model.norm.weight": return [("output_norm", t)]
        default: break
        }
        let parts = name.split(separator: ".", maxSplits: 3)
        guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), (0..<config.layers).contains(layer),
            let mapped = family.layerTensors(String(parts[3]), t, config: config)
        else { return nil }
        return mapped.map { ("blk.\(layer).\($0.0)", $0.1) }
    }
}
