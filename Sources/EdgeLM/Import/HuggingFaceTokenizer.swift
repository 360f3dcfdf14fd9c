import Foundation

/// Reads a Hugging Face `tokenizer.json` (BPE model) into `TokenizerData`. Supported pipelines are the ones
/// Llama-family models use: SentencePiece-style (normalizer Prepend "▁" + Replace " " -> "▁", or a Metaspace
/// pre-tokenizer) and byte-level (ByteLevel, optionally after a regex Split, as GPT-2 and Llama 3 do).
/// Anything else is rejected by name.
enum HuggingFaceTokenizer {
    static func load(path: String, configPath: String?, vocabSize: Int, bosId: Int?, eosId: Int?) throws(EdgeLMError) -> TokenizerData {
        guard let data = FileManager.default.contents(atPath: path) else { throw .io(path: path, message: "cannot read tokenizer.json") }
        let config = configPath.flatMap { FileManager.default.contents(atPath: $0) }
        return try parse(data, path: path, tokenizerConfig: config, vocabSize: vocabSize, bosId: bosId, eosId: eosId)
    }

    /// Parses tokenizer.json bytes (and tokenizer_config.json bytes, if any); `path` names the file in errors.
    static func parse(
        _ data: Data, path: String, tokenizerConfig: Data?, vocabSize: Int, bosId: Int?,
        eosId: Int?
    ) throws(EdgeLMError) -> TokenizerData {
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw .invalidField(path: path, field: "tokenizer.json", message: "not a JSON object")
        }
        func bad(_ field: String, _ message: String) -> EdgeLMError { .invalidField(path: path, field: field, message: message) }
        guard let model = json["model"] as? [String: Any] else { throw bad("model", "missing") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw bad("model.type", "'\(type)' is not supported (only BPE)") }
        guard let vocab = model["vocab"] as? [String: Int] else { throw bad("model.vocab", "missing or not a map of ids") }
        var pieces = [String?](repeating: nil, count: vocabSize)
        for (piece, id) in vocab {
            guard (0..<vocabSize).contains(id) else {
                throw bad("model.vocab", "id \(id) of '\(piece.prefix(32))' is outside the model's vocabulary of \(vocabSize)")
            }
            pieces[id] = piece
        }
        var types = [TokenType](repeating: .normal, count: vocabSize)
        for (i, p) in pieces.enumerated() where p?.isByteToken == true { types[i] = .byte }
        let unkName = model["unk_token"] as? String
        for added in json["added_tokens"] as? [[String: Any]] ?? [] {
            guard let id = added["id"] as? Int, let content = added["content"] as? String else { throw bad("added_tokens", "entries need id and content") }
            guard (0..<vocabSize).contains(id) else { throw bad("added_tokens", "id \(id) is outside the model's vocabulary of \(vocabSize)") }
            pieces[id] = content
            types[id] = content == unkName ? .unknown : (added["special"] as? Bool ?? false) ? .control : .userDefined
        }
        for (i, p) in pieces.enumerated() where p == nil {
            pieces[i] = "<unused\(i)>"
            types[i] = .unused
        }
        let unk = unkName.flatMap { vocab[$0] }
        if let unk { types[unk] = .unknown }
        var merges: [String] = []
        for m in model["merges"] as? [Any] ?? [] {
            if let s = m as? String {
                merges.append(s)
            } else if let pair = m as? [String], pair.count == 2 {
                merges.append(pair.joined(separator: " "))
            } else {
                throw bad("model.merges", "entries must be \"a b\" strings or [a, b] pairs")
            }
        }
        let (addPrefix, preTokenizer) = try pipeline(json, bad: bad)
        // tokenizer_config.json, parsed once (an unreadable one counts as absent, as before).
        let settings = tokenizerConfig.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        let special = specialIds(settings, vocab: vocab, pieces: pieces.map { $0! })
        var data = TokenizerData(
            kind: .mergesBPE, pieces: pieces.map { $0! }, scores: [Float](repeating: 0, count: vocabSize), types: types,
            merges: merges, bos: special.bos ?? bosId, eos: special.eos ?? eosId, unk: unk, pad: nil,
            addDummyPrefix: addPrefix, removeExtraWhitespaces: false,
            byteFallback: model["byte_fallback"] as? Bool ?? false, preTokenizer: preTokenizer,
            fuseUnknown: model["fuse_unk"] as? Bool ?? false, matchesSpecialTokens: true)
        data.chatTemplate = chatTemplate(settings)
        let template = templateSpecials(json["post_processor"])
        data.addBOS = settings["add_bos_token"] as? Bool ?? (template.first != nil && template.first == data.bos)
        data.addEOS = settings["add_eos_token"] as? Bool ?? (template.last != nil && template.last == data.eos)
        return data
    }

    /// The ids of the special tokens the post-processor's single-sequence template puts right before and right
    /// after the text (a `TemplateProcessing`, possibly inside a `Sequence`); nil where it puts none.
    private static func templateSpecials(_ node: Any?) -> (first: Int?, last: Int?) {
        guard let node = node as? [String: Any] else { return (nil, nil) }
        if node["type"] as? String == "Sequence" {
            for p in node["processors"] as? [[String: Any]] ?? [] where p["type"] as? String == "TemplateProcessing" { return templateSpecials(p) }
            return (nil, nil)
        }
        guard node["type"] as? String == "TemplateProcessing", let single = node["single"] as? [[String: Any]] else { return (nil, nil) }
        let specials = node["special_tokens"] as? [String: Any] ?? [:]
        func id(_ item: [String: Any]) -> Int? {
            guard let name = (item["SpecialToken"] as? [String: Any])?["id"] as? String else { return nil }
            return ((specials[name] as? [String: Any])?["ids"] as? [Int])?.first
        }
        guard let textIndex = single.firstIndex(where: { $0["Sequence"] != nil }) else { return (nil, nil) }
        return (textIndex > 0 ? id(single[textIndex - 1]) : nil, textIndex + 1 < single.count ? id(single[textIndex + 1]) : nil)
    }

    /// `chat_template` of tokenizer_config.json: a string, or a list of {name, template} whose "default"
    /// (else first) entry is taken.
    private static func chatTemplate(_ json: [String: Any]) -> String? {
        if let text = json["chat_template"] as? String { return text }
        guard let list = json["chat_template"] as? [[String: Any]] else { return nil }
        let entry = list.first { $0["name"] as? String == "default" } ?? list.first
        return entry?["template"] as? String
    }

    /// (dummy prefix, byte-level pre-tokenizer) from the normalizer and pre-tokenizer.
    private static func pipeline(_ json: [String: Any], bad: (String, String) -> EdgeLMError) throws(EdgeLMError) -> (Bool, PreTokenizer?) {
        func flatten(_ node: Any?, _ key: String) -> [[String: Any]] {
            guard let node = node as? [String: Any] else { return [] }
            if node["type"] as? String == "Sequence" { return (node[key] as? [[String: Any]] ?? []).flatMap { flatten($0, key) } }
            return [node]
        }
        var prefix = false, spaceToMarker = false
        for n in flatten(json["normalizer"], "normalizers") {
            switch n["type"] as? String {
            case "Prepend" where n["prepend"] as? String == "\u{2581}": prefix = true
            case "Replace" where (n["pattern"] as? [String: Any])?["String"] as? String == " " && n["content"] as? String == "\u{2581}":
                spaceToMarker = true
            default: throw bad("normalizer", "'\(n["type"] as? String ?? "?")' is not supported")
            }
        }
        var byteLevel: PreTokenizer?
        var splitPattern: String?
        for p in flatten(json["pre_tokenizer"], "pretokenizers") {
            switch p["type"] as? String {
            case "Metaspace":
                spaceToMarker = true
                prefix = (p["prepend_scheme"] as? String).map { $0 != "never" } ?? (p["add_prefix_space"] as? Bool ?? true)
            case "Split":
                guard let pattern = (p["pattern"] as? [String: Any])?["Regex"] as? String else { throw bad("pre_tokenizer", "Split needs a Regex pattern") }
                splitPattern = pattern
            case "ByteLevel":
                let useRegex = p["use_regex"] as? Bool ?? true
                byteLevel = PreTokenizer(
                    pattern: useRegex ? PreTokenizer.gpt2Pattern : (splitPattern ?? #"(?s).+"#),
                    addPrefixSpace: p["add_prefix_space"] as? Bool ?? false)
            default: throw bad("pre_tokenizer", "'\(p["type"] as? String ?? "?")' is not supported")
            }
        }
        if let b = byteLevel {
            guard !prefix, !spaceToMarker else { throw bad("pre_tokenizer", "byte-level and SentencePiece-style steps cannot be mixed") }
            return (false, b)
        }
        if splitPattern != nil { throw bad("pre_tokenizer", "a Split without ByteLevel is not supported") }
        guard spaceToMarker || json["normalizer"] == nil || json["normalizer"] is NSNull else {
            throw bad("normalizer", "spaces must be replaced by U+2581")
        }
        return (prefix, nil)
    }

    /// BOS/EOS ids named in tokenizer_config.json (as strings or {content: ...} objects).
    private static func specialIds(_ json: [String: Any], vocab: [String: Int], pieces: [String]) -> (bos: Int?, eos: Int?) {
        func id(_ key: String) -> Int? {
            let name = (json[key] as? String) ?? ((json[key] as? [String: Any])?["content"] as? String)
            return name.flatMap { n in vocab[n] ?? pieces.firstIndex(of: n) }
        }
        return (id("bos_token"), id("eos_token"))
    }
}
