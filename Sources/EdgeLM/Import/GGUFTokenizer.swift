// The tokenizer of a GGUF file, from its `tokenizer.ggml.*` keys.

extension GGUFReader {
    /// Token texts that end generation in a GGUF vocabulary, as llama.cpp marks them at load (its end-of-turn
    /// and end-of-text markers of the families EdgeLM reads).
    static let endOfGenerationPieces: Set<String> = [
        "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
        "<EOT>", "_<EOT>", "<end_of_utterance>",
    ]

    static func makeTokenizer(kv: [String: GGUFValue], path: String) throws(EdgeLMError) -> TokenizerData {
        var keys = GGUFKeys(prefix: "tokenizer", kv: kv, path: path)
        func fail(_ key: String, _ message: String) -> EdgeLMError { keys.fail(key, message) }
        func flag(_ key: String) throws(EdgeLMError) -> Bool? { try keys.bool("ggml.\(key)") }
        func id(_ key: String) throws(EdgeLMError) -> Int? { try keys.optionalInt("ggml.\(key)") }
        let model = keys.value("ggml.model")?.asString ?? "missing"
        guard model == "llama" || model == "gpt2" else {
            throw fail("ggml.model", "'\(model)' is not supported (the SentencePiece 'llama' and byte-level BPE 'gpt2' vocabularies)")
        }
        guard case let .array(tokenValues, 8)? = keys.value("ggml.tokens") else {
            throw fail("ggml.tokens", "missing or not an array of strings")
        }
        let pieces = tokenValues.compactMap(\.asString)
        var scores = [Float](repeating: 0, count: pieces.count)
        if let v = keys.value("ggml.scores") {
            guard case let .array(items, 6) = v, items.count == pieces.count else {
                throw fail("ggml.scores", "must be an array of \(pieces.count) f32 values")
            }
            scores = items.map { Float($0.asDouble ?? 0) }
        }
        var types = [TokenType](repeating: .normal, count: pieces.count)
        if let v = keys.value("ggml.token_type") {
            guard case let .array(items, et) = v, [4, 5].contains(et), items.count == pieces.count else {
                throw fail("ggml.token_type", "must be an array of \(pieces.count) int32 values")
            }
            for (i, item) in items.enumerated() {
                guard let raw = item.asInt, let t = TokenType(rawValue: raw) else {
                    throw fail("ggml.token_type", "token \(i) has unknown type \(item.asInt ?? -1)")
                }
                types[i] = t
            }
        }
        let spacePrefix = try flag("add_space_prefix")
        var data: TokenizerData
        // llama.cpp's defaults when the file does not say: SentencePiece vocabularies add BOS, byte-level ones
        // only for the pre-tokenizers of vocabularies that do (Llama 3).
        var addBOSDefault = true
        if model == "gpt2" {
            let pre = keys.value("ggml.pre")?.asString ?? "default"
            guard var preTokenizer = PreTokenizer.llamaCppPreTokenizers[pre] else {
                throw fail("ggml.pre", "'\(pre)' is not supported (\(PreTokenizer.llamaCppPreTokenizers.keys.sorted().joined(separator: ", ")))")
            }
            preTokenizer.addPrefixSpace = spacePrefix ?? false
            addBOSDefault = PreTokenizer.llamaCppAddingBOS.contains(pre)
            guard case let .array(mergeValues, 8)? = keys.value("ggml.merges") else {
                throw fail("ggml.merges", "a byte-level BPE vocabulary needs its merges (an array of strings)")
            }
            data = TokenizerData(
                kind: .mergesBPE, pieces: pieces, scores: scores, types: types, merges: mergeValues.compactMap(\.asString),
                bos: try id("bos_token_id"), eos: try id("eos_token_id"), unk: try id("unknown_token_id"),
                pad: try id("padding_token_id"), addDummyPrefix: false, removeExtraWhitespaces: false,
                byteFallback: false, preTokenizer: preTokenizer, fuseUnknown: false, matchesSpecialTokens: true)
            if try flag("remove_extra_whitespaces") == true {
                throw fail("ggml.remove_extra_whitespaces", "collapsing spaces is not implemented for byte-level vocabularies")
            }
        } else {
            data = TokenizerData(
                kind: .sentencePieceBPE, pieces: pieces, scores: scores, types: types,
                bos: try id("bos_token_id"), eos: try id("eos_token_id"),
                unk: try id("unknown_token_id") ?? types.firstIndex(of: .unknown),
                pad: try id("padding_token_id"), addDummyPrefix: spacePrefix ?? true,
                removeExtraWhitespaces: try flag("remove_extra_whitespaces") ?? false, byteFallback: types.contains(.byte))
        }
        data.chatTemplate = keys.value("chat_template")?.asString
        data.addBOS = try flag("add_bos_token") ?? addBOSDefault
        data.addEOS = try flag("add_eos_token") ?? false
        if try flag("add_sep_token") == true {
            throw fail("ggml.add_sep_token", "appending a separator token is not implemented")
        }
        // As llama.cpp loads a GGUF vocabulary: eot and eom, and every token spelled like an end of turn or text.
        let named = pieces.indices.filter { endOfGenerationPieces.contains(pieces[$0]) }
        let turnEnds = Set([try id("eot_token_id"), try id("eom_token_id")].compactMap { $0 } + named).subtracting(data.eos.map { [$0] } ?? [])
        data.endOfGeneration = turnEnds.isEmpty ? nil : turnEnds.sorted()
        for key in kv.keys where key.hasPrefix("tokenizer.chat_template.") { _ = keys.value(String(key.dropFirst("tokenizer.".count))) }
        try keys.finish(harmless: harmlessTokenizerKeys)
        return data
    }
}
