import Foundation

/// Reads a Hugging Face checkpoint folder: `config.json`, `model.safetensors` (or the shards named by
/// `model.safetensors.index.json`), `tokenizer.json` and optionally `tokenizer_config.json`.
enum HuggingFaceReader {
    /// `path` is the folder or its `config.json`.
    static func checkpoint(path: String) throws(EdgeLMError) -> Checkpoint {
        var isDir: ObjCBool = false
        let folder = FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
            ? path : (path as NSString).deletingLastPathComponent
        func file(_ name: String) -> String { (folder as NSString).appendingPathComponent(name) }
        let hf = try HuggingFaceConfig.load(path: file("config.json"))

        var mappings: [MappedFile] = []
        var raw: [String: SourceTensor] = [:]
        let index = file("model.safetensors.index.json")
        if FileManager.default.fileExists(atPath: index) {
            guard let data = FileManager.default.contents(atPath: index),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let weightMap = json["weight_map"] as? [String: String] else {
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
        for (name, t) in raw {
            if name.hasSuffix("rotary_emb.inv_freq") { continue }
            guard let canonical = canonicalName(name) else {
                throw .invalidField(path: folder, field: "tensor '\(name)'", message: "not a weight of a Llama model (biases and extra modules are not supported)")
            }
            tensors[canonical] = SourceTensor(name: canonical, shape: t.shape, dtype: t.dtype, bytes: t.bytes)
        }
        var tied = hf.tieWordEmbeddings ?? false
        if tensors["token_embd"] == nil, let output = tensors["output"], tied || hf.tieWordEmbeddings == nil {
            tensors["token_embd"] = SourceTensor(name: "token_embd", shape: output.shape, dtype: output.dtype, bytes: output.bytes)
            tied = true
        }
        if tied { tensors["output"] = nil }
        let config = hf.modelConfig(tied: tied)
        try config.validate(source: file("config.json"))
        let tokenizerConfig = file("tokenizer_config.json")
        let tokenizer = try HuggingFaceTokenizer.load(path: file("tokenizer.json"),
                                                      configPath: FileManager.default.fileExists(atPath: tokenizerConfig) ? tokenizerConfig : nil,
                                                      vocabSize: config.vocabSize, bosId: hf.bosTokenId, eosId: hf.eosTokenId?.first)
        try tokenizer.validate(source: file("tokenizer.json"), vocabSize: config.vocabSize)
        let checkpoint = Checkpoint(path: folder, format: "safetensors (\(mappings.count) file\(mappings.count == 1 ? "" : "s"))",
                                    config: config, tokenizer: tokenizer, tensors: tensors, mappings: mappings)
        try checkpoint.validateTensors()
        return checkpoint
    }

    /// Hugging Face Llama parameter name -> canonical name.
    static func canonicalName(_ name: String) -> String? {
        switch name {
        case "model.embed_tokens.weight": return "token_embd"
        case "lm_head.weight": return "output"
        case "model.norm.weight": return "output_norm"
        default: break
        }
        let parts = name.split(separator: ".")
        guard parts.count == 6 || parts.count == 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]),
              parts.last == "weight" else { return nil }
        let module = parts[3...(parts.count - 2)].joined(separator: ".")
        let map = [
            "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
            "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
            "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
        ]
        return map[module].map { "blk.\(layer).\($0)" }
    }
}
