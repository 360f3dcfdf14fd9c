/// Lowers a JSON Schema (the keywords of drafts 2020-12 and 07 that describe data shape) into a grammar whose
/// strings are exactly the JSON texts the schema accepts, within these documented limits:
/// - object members come in any order when an object declares at most `anyOrderLimit` of them, otherwise in the
///   order of `properties` (required or not), then any additional members;
/// - `oneOf` is matched as `anyOf` (exclusivity is not enforced), `allOf` merges its parts when they do not
///   conflict, `format` is checked by shape (a date's day is 01-31 whatever the month);
/// - every keyword outside the supported set is refused by name, never ignored. Annotations (`title`,
///   `description`, `default`, `examples`, `$schema`, `$id`, `$comment`, ...) are ignored.
/// Whitespace between tokens is one space, or a newline and up to 20 characters of indentation, so a model may
/// pretty-print; none after the value, so the output is complete at its last character.
struct JSONSchemaCompiler {
    static let annotations: Set<String> = [
        "title", "description", "default", "examples", "$schema", "$id", "$comment",
        "deprecated", "readOnly", "writeOnly", "$anchor", "contentMediaType",
        "contentEncoding", "strict", "discriminator", "nullable",
    ]
    static let supported: Set<String> = [
        "type", "properties", "required", "additionalProperties", "items", "prefixItems",
        "additionalItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
        "definitions", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minProperties",
        "maxProperties",
    ]
    static let maxDepth = 64

    var b = GrammarBuilder()
    let document: JSONValue
    var refs: [String: Int] = [:]
    var common: [String: [GrammarSymbol]] = [:]

    init(document: JSONValue) { self.document = document }

    /// The grammar of `schema`; with a `prefix` or `suffix`, of the value between them, and when `repeated` of one
    /// or more such, separated by newlines.
    static func compile(_ schema: JSONValue, prefix: String = "", suffix: String = "", repeated: Bool = false) throws(EdgeLMError) -> Grammar {
        var c = JSONSchemaCompiler(document: schema)
        let body = try c.value(schema, path: "#", depth: 0)
        let ws = try c.ws()
        let one = GrammarBuilder.literal(prefix) + (prefix.isEmpty ? ws : []) + body + GrammarBuilder.literal(suffix)
        let all = repeated ? one + (try c.b.repeated(GrammarBuilder.literal("\n") + one, min: 0, max: nil)) : one
        let root = try c.b.add("root", [all])
        return try c.b.build(root: root)
    }

    /// The grammar of any JSON object (`response_format` `json_object`).
    static func anyObject() throws(EdgeLMError) -> Grammar {
        var c = JSONSchemaCompiler(document: .object([]))
        let body = try c.objectGrammar(.object([("type", .string("object"))]), path: "#", depth: 0)
        let ws = try c.ws()
        let root = try c.b.add("root", [ws + body])
        return try c.b.build(root: root)
    }

    func error(_ path: String, _ message: String) -> EdgeLMError { .invalidArgument("JSON Schema at \(path): \(message)") }

    // MARK: - Shared pieces

    mutating func shared(_ name: String, _ make: (inout JSONSchemaCompiler) throws(EdgeLMError) -> [GrammarSymbol]) throws(EdgeLMError) -> [GrammarSymbol] {
        if let s = common[name] { return s }
        let id = b.declare(name)
        common[name] = [.rule(id)]
        try b.define(id, [try make(&self)])
        return [.rule(id)]
    }

    mutating func ws() throws(EdgeLMError) -> [GrammarSymbol] {
        // Nothing, one space, or a newline and up to 20 spaces or tabs of indentation (as llama.cpp's JSON grammar):
        // enough to pretty-print, too little for a small model to fill its budget with blank lines.
        try shared("ws") { c throws(EdgeLMError) in
            var indent = ByteSet(0x20...0x20)
            indent.insert(0x09)
            let newline = GrammarBuilder.literal("\n") + (try c.b.repeated([.bytes(indent)], min: 0, max: 20, name: "indent"))
            return try c.b.choice([[], GrammarBuilder.literal(" "), newline], name: "ws")
        }
    }

    /// One JSON string character standing for a code point of `ranges`: the character itself, or its escape when
    /// JSON requires one (`"`, `\`, control characters); `\/` and `\uXXXX` forms too when `anyEscape`.
    mutating func stringChar(_ ranges: [ClosedRange<UInt32>]) throws(EdgeLMError) -> [GrammarSymbol] {
        let normal = GrammarBuilder.normalize(ranges)
        let raw = GrammarBuilder.normalize(
            normal.flatMap { r -> [ClosedRange<UInt32>] in
                GrammarBuilder.complement([0...0x1F, 0x22...0x22, 0x5C...0x5C]).compactMap { c in
                    let lo = max(r.lowerBound, c.lowerBound), hi = min(r.upperBound, c.upperBound)
                    return lo <= hi ? lo...hi : nil
                }
            })
        var alternatives: [[GrammarSymbol]] = raw.isEmpty ? [] : [try b.scalar(in: raw)]
        func contains(_ v: UInt32) -> Bool { normal.contains { $0.contains(v) } }
        let short: [(UInt32, String)] = [(0x22, "\\\""), (0x5C, "\\\\"), (0x0A, "\\n"), (0x0D, "\\r"), (0x09, "\\t"), (0x08, "\\b"), (0x0C, "\\f")]
        for (v, text) in short where contains(v) { alternatives.append(GrammarBuilder.literal(text)) }
        for v in UInt32(0)...0x1F where contains(v) && !short.contains(where: { $0.0 == v }) {
            let hex = String(v, radix: 16)
            alternatives.append(GrammarBuilder.literal("\\u" + String(repeating: "0", count: 4 - hex.count) + hex))
        }
        if normal == [0...0x10FFFF] {
            // Any character: every escape JSON allows.
            var hexSet = ByteSet(0x30...0x39).union(ByteSet(0x41...0x46)).union(ByteSet(0x61...0x66))
            hexSet.insert(0x30)
            alternatives.append(GrammarBuilder.literal("\\/"))
            alternatives.append(GrammarBuilder.literal("\\u") + Array(repeating: .bytes(hexSet), count: 4))
        }
        guard !alternatives.isEmpty else { return [.rule(try b.add("never", []))] }
        return try b.choice(alternatives, name: "string-char")
    }

    mutating func anyChar() throws(EdgeLMError) -> [GrammarSymbol] {
        try shared("char") { c throws(EdgeLMError) in try c.stringChar([0...0x10FFFF]) }
    }

    mutating func anyString() throws(EdgeLMError) -> [GrammarSymbol] {
        try shared("string") { c throws(EdgeLMError) in
            GrammarBuilder.literal("\"") + (try c.b.repeated(try c.anyChar(), min: 0, max: nil, name: "chars")) + GrammarBuilder.literal("\"")
        }
    }

    /// A JSON string that is none of `names` (additional members may not reuse a declared member's name): a
    /// walk down the trie of the names that must leave it, or stop short of a name's end.
    mutating func string(excluding names: [String]) throws(EdgeLMError) -> [GrammarSymbol] {
        guard !names.isEmpty else { return try anyString() }
        let quote = GrammarBuilder.literal("\"")
        let tail = (try b.repeated(try anyChar(), min: 0, max: nil, name: "chars")) + quote
        let scalars = names.map { $0.unicodeScalars.map(\.value) }
        func node(_ prefix: [UInt32], _ c: inout JSONSchemaCompiler) throws(EdgeLMError) -> [GrammarSymbol] {
            let matching = scalars.filter { $0.starts(with: prefix) }
            var alternatives: [[GrammarSymbol]] = matching.contains { $0.count == prefix.count } ? [] : [quote]
            let children = Array(Set(matching.filter { $0.count > prefix.count }.map { $0[prefix.count] })).sorted()
            for ch in children { alternatives.append((try c.stringChar([ch...ch])) + (try node(prefix + [ch], &c))) }
            alternatives.append((try c.stringChar(GrammarBuilder.complement(children.map { $0...$0 }))) + tail)
            return [.rule(try c.b.add("other-name", alternatives))]
        }
        return quote + (try node([], &self))
    }

    mutating func digits(min: Int) throws(EdgeLMError) -> [GrammarSymbol] {
        try b.repeated([.bytes(ByteSet(0x30...0x39))], min: min, max: nil, name: "digits")
    }

    mutating func integerBody(negative: Bool) throws(EdgeLMError) -> [GrammarSymbol] {
        let magnitude = try b.choice([GrammarBuilder.literal("0"), [.bytes(ByteSet(0x31...0x39))] + (try digits(min: 0))], name: "int")
        return negative ? (try b.repeated(GrammarBuilder.literal("-"), min: 0, max: 1, name: "sign")) + magnitude : magnitude
    }

    mutating func anyNumber(negative: Bool = true) throws(EdgeLMError) -> [GrammarSymbol] {
        try shared(negative ? "number" : "number-nonnegative") { c throws(EdgeLMError) in
            let fraction = try c.b.repeated(GrammarBuilder.literal(".") + (try c.digits(min: 1)), min: 0, max: 1, name: "fraction")
            var e = ByteSet(0x45...0x45); e.insert(0x65)
            var sign = ByteSet(0x2B...0x2B); sign.insert(0x2D)
            let exponent = try c.b.repeated(
                [.bytes(e)] + (try c.b.repeated([.bytes(sign)], min: 0, max: 1)) + (try c.digits(min: 1)),
                min: 0, max: 1, name: "exponent")
            return (try c.integerBody(negative: negative)) + fraction + exponent
        }
    }

    mutating func anyValue() throws(EdgeLMError) -> [GrammarSymbol] {
        if let s = common["value"] { return s }
        let id = b.declare("value")
        common["value"] = [.rule(id)]
        let ws = try ws()
        let value: [GrammarSymbol] = [.rule(id)]
        let member = (try anyString()) + ws + GrammarBuilder.literal(":") + ws + value + ws
        let object =
            GrammarBuilder.literal("{") + ws
            + (try b.repeated(member + (try b.repeated(GrammarBuilder.literal(",") + ws + member, min: 0, max: nil)), min: 0, max: 1))
            + GrammarBuilder.literal("}")
        let element = value + ws
        let array =
            GrammarBuilder.literal("[") + ws
            + (try b.repeated(element + (try b.repeated(GrammarBuilder.literal(",") + ws + element, min: 0, max: nil)), min: 0, max: 1))
            + GrammarBuilder.literal("]")
        try b.define(
            id,
            [
                object, array, try anyString(), try anyNumber(), GrammarBuilder.literal("true"),
                GrammarBuilder.literal("false"), GrammarBuilder.literal("null"),
            ])
        return value
    }

    // MARK: - Schemas

    mutating func value(_ schema: JSONValue, path: String, depth: Int) throws(EdgeLMError) -> [GrammarSymbol] {
        guard depth < Self.maxDepth else { throw error(path, "nested deeper than \(Self.maxDepth) levels") }
        switch schema {
        case .bool(true): return try anyValue()
        case .bool(false): return [.rule(try b.add("never", []))]
        case .object: break
        default: throw error(path, "a schema must be an object or a boolean")
        }
        let members = schema.objectValue!
        for (key, _) in members where !Self.supported.contains(key) && !Self.annotations.contains(key) {
            throw error(path, "keyword '\(key)' is not supported")
        }
        if path != "#", schema["$id"] != nil { throw error(path, "'$id' in a subschema (a new base for references) is not supported") }
        if let ref = schema["$ref"] {
            guard members.allSatisfy({ $0.0 == "$ref" || $0.0 == "$defs" || $0.0 == "definitions" || Self.annotations.contains($0.0) }) else {
                throw error(path, "'$ref' next to other validation keywords is not supported")
            }
            guard let target = ref.stringValue else { throw error(path, "'$ref' must be a string") }
            return [.rule(try reference(target, path: path, depth: depth))]
        }
        if let parts = schema["allOf"] {
            guard let list = parts.arrayValue, !list.isEmpty else { throw error(path, "'allOf' must be a non-empty array") }
            var merged = JSONValue.object(members.filter { $0.0 != "allOf" })
            for (i, part) in list.enumerated() { merged = try merge(merged, try resolved(part, path: "\(path)/allOf/\(i)"), path: path) }
            return try value(merged, path: path, depth: depth + 1)
        }
        for keyword in ["anyOf", "oneOf"] {
            guard let options = schema[keyword] else { continue }
            guard let list = options.arrayValue, !list.isEmpty else { throw error(path, "'\(keyword)' must be a non-empty array") }
            let siblings = JSONValue.object(members.filter { $0.0 != keyword })
            var alternatives: [[GrammarSymbol]] = []
            var branches: [JSONValue] = []
            for (i, option) in list.enumerated() {
                let sub = "\(path)/\(keyword)/\(i)"
                branches.append(hasValidation(siblings) ? try merge(siblings, try resolved(option, path: sub), path: sub) : option)
                alternatives.append(try value(branches[i], path: sub, depth: depth + 1))
            }
            if keyword == "oneOf" {
                for i in branches.indices {
                    for j in branches.indices where j > i {
                        guard !(try disjoint(branches[i], branches[j], path: path)) else { continue }
                        throw error(
                            path,
                            "'oneOf' branches \(i) and \(j) may both match; exactly-one matching is not supported (it is supported when the branches differ in type, in const/enum values, or in a required property's const/enum values; use 'anyOf' if either may match)"
                        )
                    }
                }
            }
            return [.rule(try b.add(keyword, alternatives))]
        }
        let types = try typeList(schema, path: path)
        if let c = schema["const"] { return try literalChoice([c], types: types, path: path, keyword: "const") }
        if let e = schema["enum"] {
            guard let values = e.arrayValue else { throw error(path, "'enum' must be an array") }
            return try literalChoice(values, types: types, path: path, keyword: "enum")
        }
        var alternatives: [[GrammarSymbol]] = []
        for type in types {
            switch type {
            case "string": alternatives.append(try stringGrammar(schema, path: path))
            case "integer": alternatives.append(try integerGrammar(schema, path: path))
            case "number": alternatives.append(try numberGrammar(schema, path: path))
            case "boolean": alternatives.append(try b.choice([GrammarBuilder.literal("true"), GrammarBuilder.literal("false")], name: "boolean"))
            case "null": alternatives.append(GrammarBuilder.literal("null"))
            case "object": alternatives.append(try objectGrammar(schema, path: path, depth: depth))
            case "array": alternatives.append(try arrayGrammar(schema, path: path, depth: depth))
            default: throw error(path, "unknown type '\(type)'")
            }
        }
        return try b.choice(alternatives, name: "type")
    }

    /// The types a schema allows: its `type`, else those its keywords imply, else all.
    func typeList(_ schema: JSONValue, path: String) throws(EdgeLMError) -> [String] {
        if let t = schema["type"] {
            if let s = t.stringValue { return [s] }
            if let list = t.arrayValue, !list.isEmpty, list.allSatisfy({ $0.stringValue != nil }) { return list.map { $0.stringValue! } }
            throw error(path, "'type' must be a string or a non-empty array of strings")
        }
        if schema["const"] != nil || schema["enum"] != nil { return [] }
        let implied: [(String, [String])] = [
            ("object", ["properties", "required", "additionalProperties", "minProperties", "maxProperties"]),
            ("array", ["items", "prefixItems", "additionalItems", "minItems", "maxItems"]),
            ("string", ["minLength", "maxLength", "pattern", "format"]),
            ("number", ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]),
        ]
        let found = implied.filter { entry in entry.1.contains { schema[$0] != nil } }.map(\.0)
        if !found.isEmpty {
            // Keywords constrain only values of their type; other types stay valid.
            let others = ["string", "number", "boolean", "null", "object", "array"].filter { !found.contains($0) }
            return found + others
        }
        return ["string", "number", "boolean", "null", "object", "array"]
    }
}
