/// A GGUF metadata value.
enum GGUFValue {
    case int(Int64)
    case uint(UInt64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue], elementType: UInt32)

    var asInt: Int? {
        switch self {
        case let .int(v): return Int(exactly: v)
        case let .uint(v): return Int(exactly: v)
        default: return nil
        }
    }

    var asDouble: Double? {
        switch self {
        case let .float(v): return v
        case let .int(v): return Double(v)
        case let .uint(v): return Double(v)
        default: return nil
        }
    }

    var asString: String? {
        if case let .string(s) = self { return s }
        return nil
    }
}

/// The `<arch>.` (or `tokenizer.`) metadata keys of a GGUF being read: like `ConfigReader`, every key must be
/// read or declared harmless, or `finish` refuses it by name.
struct GGUFKeys {
    /// The keys' prefix: the architecture name, or `tokenizer`.
    let prefix: String
    let kv: [String: GGUFValue]
    let path: String
    private var used = Set<String>()

    init(prefix: String, kv: [String: GGUFValue], path: String) {
        self.prefix = prefix
        self.kv = kv
        self.path = path
    }

    func fail(_ key: String, _ message: String) -> EdgeLMError { .invalidField(path: path, field: "\(prefix).\(key)", message: message) }

    /// `<prefix>.key`, marking it read.
    mutating func value(_ key: String) -> GGUFValue? {
        used.insert("\(prefix).\(key)")
        return kv["\(prefix).\(key)"]
    }

    /// An integer key that may be absent.
    mutating func optionalInt(_ key: String) throws(EdgeLMError) -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.asInt else { throw fail(key, "not an integer") }
        return i
    }

    /// A boolean key that may be absent.
    mutating func bool(_ key: String) throws(EdgeLMError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard case let .bool(b) = v else { throw fail(key, "not a boolean") }
        return b
    }

    mutating func int(_ key: String, default fallback: Int? = nil) throws(EdgeLMError) -> Int {
        if let i = try optionalInt(key) { return i }
        guard let fallback else { throw fail(key, "missing") }
        return fallback
    }

    mutating func float(_ key: String, default fallback: Double) throws(EdgeLMError) -> Double {
        guard let v = value(key) else { return fallback }
        guard let d = v.asDouble else { throw fail(key, "not a number") }
        return d
    }

    func finish(harmless: Set<String>) throws(EdgeLMError) {
        for key in kv.keys.sorted() where key.hasPrefix("\(prefix).") && !used.contains(key) && !harmless.contains(String(key.dropFirst(prefix.count + 1))) {
            throw .invalidField(path: path, field: key, message: "is a setting EdgeLM does not implement for '\(prefix)' (it may change the computation)")
        }
    }
}
