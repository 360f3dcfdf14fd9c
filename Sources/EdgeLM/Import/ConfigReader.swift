import Foundation

/// A `config.json` being read so that nothing in it can be silently ignored: every key is either used,
/// checked against the values EdgeLM implements, or declared harmless (`harmless`); `finish` refuses any
/// key left over by name, because an unknown setting may change the computation.
struct ConfigReader {
    /// The file, for errors.
    let path: String
    private let values: [String: Any]
    private var consumed: Set<String> = []

    /// Keys that never change what an inference engine computes (training, bookkeeping, dropout).
    static let harmlessKeys: Set<String> = [
        "transformers_version", "dtype", "torch_dtype", "initializer_range", "use_cache", "attention_dropout", "pad_token_id",
        "_name_or_path", "auto_map", "output_attentions", "output_hidden_states", "return_dict", "_from_model_config",
        "embd_pdrop", "resid_pdrop", "hidden_dropout", "hidden_dropout_prob", "attention_probs_dropout_prob", "tokenizer_class",
        "pretraining_tp", "cache_implementation", "_attn_implementation", "_attn_implementation_autoset", "id2label", "label2id",
    ]

    init(data: Data, path: String) throws(EdgeLMError) {
        guard let json = try? JSONSerialization.jsonObject(with: data), let object = json as? [String: Any] else {
            throw .invalidField(path: path, field: "config", message: "not a JSON object")
        }
        self.path = path
        values = object
    }

    func fail(_ key: String, _ message: String) -> EdgeLMError { .invalidField(path: path, field: key, message: message) }

    /// True when `key` is present with a non-null value.
    func has(_ key: String) -> Bool { values[key].map { !($0 is NSNull) } ?? false }

    /// The raw value of `key` (nil when absent or null), marking it read.
    mutating func raw(_ key: String) -> Any? {
        consumed.insert(key)
        guard let v = values[key], !(v is NSNull) else { return nil }
        return v
    }

    mutating func int(_ key: String) throws(EdgeLMError) -> Int? {
        guard let v = raw(key) else { return nil }
        guard let n = v as? NSNumber, let i = Int(exactly: n.doubleValue) else { throw fail(key, "must be an integer") }
        return i
    }

    mutating func requiredInt(_ key: String) throws(EdgeLMError) -> Int {
        guard let v = try int(key) else { throw fail(key, "missing") }
        return v
    }

    mutating func double(_ key: String) throws(EdgeLMError) -> Double? {
        guard let v = raw(key) else { return nil }
        guard let n = v as? NSNumber else { throw fail(key, "must be a number") }
        return n.doubleValue
    }

    mutating func bool(_ key: String) throws(EdgeLMError) -> Bool? {
        guard let v = raw(key) else { return nil }
        guard let b = v as? Bool else { throw fail(key, "must be true or false") }
        return b
    }

    mutating func string(_ key: String) throws(EdgeLMError) -> String? {
        guard let v = raw(key) else { return nil }
        guard let s = v as? String else { throw fail(key, "must be a string") }
        return s
    }

    mutating func strings(_ key: String) throws(EdgeLMError) -> [String]? {
        guard let v = raw(key) else { return nil }
        guard let s = v as? [String] else { throw fail(key, "must be a list of strings") }
        return s
    }

    mutating func object(_ key: String) throws(EdgeLMError) -> [String: Any]? {
        guard let v = raw(key) else { return nil }
        guard let o = v as? [String: Any] else { throw fail(key, "must be an object") }
        return o
    }

    /// Marks keys read that do not change the computation.
    mutating func harmless(_ keys: [String]) { consumed.formUnion(keys) }

    /// Refuses `key` unless it is absent, null, or `accepted` says its value changes nothing here.
    mutating func refuse(_ key: String, unless accepted: (Any) -> Bool, _ message: String) throws(EdgeLMError) {
        guard let v = raw(key) else { return }
        guard accepted(v) else { throw fail(key, "\(describe(v)): \(message)") }
    }

    /// Refuses `key` when it is true.
    mutating func refuseTrue(_ key: String, _ message: String) throws(EdgeLMError) {
        if try bool(key) == true { throw fail(key, "true: \(message)") }
    }

    /// Fails on the first key nothing read, naming it.
    func finish() throws(EdgeLMError) {
        let left = Set(values.keys).subtracting(consumed).subtracting(Self.harmlessKeys).sorted()
        if let key = left.first {
            throw fail(
                key,
                "\(describe(values[key]!)) is a setting EdgeLM does not implement (it may change the computation; "
                    + "\(left.count == 1 ? "no other key is" : "also unknown: \(left.dropFirst().joined(separator: ", "))"))")
        }
    }

    private func describe(_ v: Any) -> String {
        if let data = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys]),
            let s = String(data: data, encoding: .utf8)
        {
            return s.count > 80 ? String(s.prefix(77)) + "..." : s
        }
        return "\(v)"
    }
}
