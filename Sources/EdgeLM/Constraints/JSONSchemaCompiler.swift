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
    static let annotations: Set<String> = ["title", "description", "default", "examples", "$schema", "$id", "$comment",
                                           "deprecated", "readOnly", "writeOnly", "$anchor", "contentMediaType",
                                           "contentEncoding", "strict", "discriminator", "nullable"]
    static let supported: Set<String> = ["type", "properties", "required", "additionalProperties", "items", "prefixItems",
                                         "additionalItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
                                         "definitions", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format",
                                         "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minProperties",
                                         "maxProperties"]
    static let maxDepth = 64

    private var b = GrammarBuilder()
    private let document: JSONValue
    private var refs: [String: Int] = [:]
    private var common: [String: [GrammarSymbol]] = [:]

    private init(document: JSONValue) { self.document = document }

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

    private func error(_ path: String, _ message: String) -> EdgeLMError { .invalidArgument("JSON Schema at \(path): \(message)") }

    // MARK: - Shared pieces

    private mutating func shared(_ name: String, _ make: (inout JSONSchemaCompiler) throws(EdgeLMError) -> [GrammarSymbol]) throws(EdgeLMError) -> [GrammarSymbol] {
        if let s = common[name] { return s }
        let id = b.declare(name)
        common[name] = [.rule(id)]
        try b.define(id, [try make(&self)])
        return [.rule(id)]
    }

    private mutating func ws() throws(EdgeLMError) -> [GrammarSymbol] {
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
    private mutating func stringChar(_ ranges: [ClosedRange<UInt32>]) throws(EdgeLMError) -> [GrammarSymbol] {
        let normal = GrammarBuilder.normalize(ranges)
        let raw = GrammarBuilder.normalize(normal.flatMap { r -> [ClosedRange<UInt32>] in
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

    private mutating func anyChar() throws(EdgeLMError) -> [GrammarSymbol] {
        try shared("char") { c throws(EdgeLMError) in try c.stringChar([0...0x10FFFF]) }
    }

    private mutating func anyString() throws(EdgeLMError) -> [GrammarSymbol] {
        try shared("string") { c throws(EdgeLMError) in
            GrammarBuilder.literal("\"") + (try c.b.repeated(try c.anyChar(), min: 0, max: nil, name: "chars")) + GrammarBuilder.literal("\"")
        }
    }

    /// A JSON string that is none of `names` (additional members may not reuse a declared member's name): a
    /// walk down the trie of the names that must leave it, or stop short of a name's end.
    private mutating func string(excluding names: [String]) throws(EdgeLMError) -> [GrammarSymbol] {
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

    private mutating func digits(min: Int) throws(EdgeLMError) -> [GrammarSymbol] {
        try b.repeated([.bytes(ByteSet(0x30...0x39))], min: min, max: nil, name: "digits")
    }

    private mutating func integerBody(negative: Bool) throws(EdgeLMError) -> [GrammarSymbol] {
        let magnitude = try b.choice([GrammarBuilder.literal("0"), [.bytes(ByteSet(0x31...0x39))] + (try digits(min: 0))], name: "int")
        return negative ? (try b.repeated(GrammarBuilder.literal("-"), min: 0, max: 1, name: "sign")) + magnitude : magnitude
    }

    private mutating func anyNumber(negative: Bool = true) throws(EdgeLMError) -> [GrammarSymbol] {
        try shared(negative ? "number" : "number-nonnegative") { c throws(EdgeLMError) in
            let fraction = try c.b.repeated(GrammarBuilder.literal(".") + (try c.digits(min: 1)), min: 0, max: 1, name: "fraction")
            var e = ByteSet(0x45...0x45); e.insert(0x65)
            var sign = ByteSet(0x2B...0x2B); sign.insert(0x2D)
            let exponent = try c.b.repeated([.bytes(e)] + (try c.b.repeated([.bytes(sign)], min: 0, max: 1)) + (try c.digits(min: 1)),
                                            min: 0, max: 1, name: "exponent")
            return (try c.integerBody(negative: negative)) + fraction + exponent
        }
    }

    private mutating func anyValue() throws(EdgeLMError) -> [GrammarSymbol] {
        if let s = common["value"] { return s }
        let id = b.declare("value")
        common["value"] = [.rule(id)]
        let ws = try ws()
        let value: [GrammarSymbol] = [.rule(id)]
        let member = (try anyString()) + ws + GrammarBuilder.literal(":") + ws + value + ws
        let object = GrammarBuilder.literal("{") + ws
            + (try b.repeated(member + (try b.repeated(GrammarBuilder.literal(",") + ws + member, min: 0, max: nil)), min: 0, max: 1))
            + GrammarBuilder.literal("}")
        let element = value + ws
        let array = GrammarBuilder.literal("[") + ws
            + (try b.repeated(element + (try b.repeated(GrammarBuilder.literal(",") + ws + element, min: 0, max: nil)), min: 0, max: 1))
            + GrammarBuilder.literal("]")
        try b.define(id, [object, array, try anyString(), try anyNumber(), GrammarBuilder.literal("true"),
                          GrammarBuilder.literal("false"), GrammarBuilder.literal("null")])
        return value
    }

    // MARK: - Schemas

    private mutating func value(_ schema: JSONValue, path: String, depth: Int) throws(EdgeLMError) -> [GrammarSymbol] {
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
                        throw error(path, "'oneOf' branches \(i) and \(j) may both match; exactly-one matching is not supported (it is supported when the branches differ in type, in const/enum values, or in a required property's const/enum values; use 'anyOf' if either may match)")
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
    private func typeList(_ schema: JSONValue, path: String) throws(EdgeLMError) -> [String] {
        if let t = schema["type"] {
            if let s = t.stringValue { return [s] }
            if let list = t.arrayValue, !list.isEmpty, list.allSatisfy({ $0.stringValue != nil }) { return list.map { $0.stringValue! } }
            throw error(path, "'type' must be a string or a non-empty array of strings")
        }
        if schema["const"] != nil || schema["enum"] != nil { return [] }
        let implied: [(String, [String])] = [("object", ["properties", "required", "additionalProperties", "minProperties", "maxProperties"]),
                                             ("array", ["items", "prefixItems", "additionalItems", "minItems", "maxItems"]),
                                             ("string", ["minLength", "maxLength", "pattern", "format"]),
                                             ("number", ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"])]
        let found = implied.filter { entry in entry.1.contains { schema[$0] != nil } }.map(\.0)
        if !found.isEmpty {
            // Keywords constrain only values of their type; other types stay valid.
            let others = ["string", "number", "boolean", "null", "object", "array"].filter { !found.contains($0) }
            return found + others
        }
        return ["string", "number", "boolean", "null", "object", "array"]
    }

    /// True when no value can match both schemas, judged by their types, their const/enum values, or the
    /// const/enum values of a property both require (a discriminator).
    private func disjoint(_ a: JSONValue, _ b: JSONValue, path: String) throws(EdgeLMError) -> Bool {
        let x = try resolved(a, path: path), y = try resolved(b, path: path)
        if let tx = kinds(x), let ty = kinds(y), tx.isDisjoint(with: ty) { return true }
        if let vx = values(x), let vy = values(y), !vx.contains(where: { v in vy.contains(v) }) { return true }
        let required = Set((x["required"]?.arrayValue ?? []).compactMap(\.stringValue)).intersection((y["required"]?.arrayValue ?? []).compactMap(\.stringValue))
        for name in required {
            guard let px = x["properties"]?[name], let py = y["properties"]?[name] else { continue }
            if let vx = values(try resolved(px, path: path)), let vy = values(try resolved(py, path: path)), !vx.contains(where: { v in vy.contains(v) }) { return true }
        }
        return false
    }

    /// The JSON types a schema's values may have ("integer" counted as "number"); nil when unrestricted.
    private func kinds(_ schema: JSONValue) -> Set<String>? {
        if schema == .bool(false) { return [] }
        func kind(_ v: JSONValue) -> String {
            switch v {
            case .null: return "null"
            case .bool: return "boolean"
            case .number: return "number"
            case .string: return "string"
            case .array: return "array"
            case .object: return "object"
            }
        }
        if let v = values(schema) { return Set(v.map(kind)) }
        if let t = schema["type"]?.stringValue { return [t == "integer" ? "number" : t] }
        if let list = schema["type"]?.arrayValue { return Set(list.compactMap(\.stringValue).map { $0 == "integer" ? "number" : $0 }) }
        return nil
    }

    /// A schema's const or enum values; nil when it has neither.
    private func values(_ schema: JSONValue) -> [JSONValue]? {
        if let c = schema["const"] { return [c] }
        return schema["enum"]?.arrayValue
    }

    private func hasValidation(_ schema: JSONValue) -> Bool {
        schema.objectValue?.contains { !Self.annotations.contains($0.0) && $0.0 != "$defs" && $0.0 != "definitions" } ?? false
    }

    /// `const` / `enum` values (of the allowed types, when `type` is given) as literal JSON texts.
    private mutating func literalChoice(_ values: [JSONValue], types: [String], path: String, keyword: String) throws(EdgeLMError) -> [GrammarSymbol] {
        let allowed = values.filter { v in
            types.isEmpty || types.contains { t in
                switch (t, v) {
                case ("string", .string), ("boolean", .bool), ("null", .null), ("object", .object), ("array", .array), ("number", .number): return true
                case let ("integer", .number(n)): return Double(n).map { $0 == $0.rounded() } ?? false
                default: return false
                }
            }
        }
        var alternatives: [[GrammarSymbol]] = []
        for v in allowed { alternatives.append(try constant(v)) }
        return try b.choice(alternatives, name: keyword)
    }

    /// The JSON texts equal to `value` as JSON Schema compares: numbers by value (an integral number also as
    /// `n.0`, with one zero), objects with their members in any order (up to 5 members; beyond that, as written), whitespace
    /// between tokens allowed.
    private mutating func constant(_ value: JSONValue) throws(EdgeLMError) -> [GrammarSymbol] {
        let ws = try ws()
        switch value {
        case let .number(n):
            guard let d = Double(n), d == d.rounded(), abs(d) <= 9.007_199_254_740_992e15 else { return GrammarBuilder.literal(n) }
            return GrammarBuilder.literal(d == 0 ? "0" : String(Int64(d))) + (try zeroFraction())
        case let .array(elements):
            var out = GrammarBuilder.literal("[") + ws
            for (i, e) in elements.enumerated() { out += (i > 0 ? GrammarBuilder.literal(",") + ws : []) + (try constant(e)) + ws }
            return out + GrammarBuilder.literal("]")
        case let .object(members):
            var kvs: [[GrammarSymbol]] = []
            for (k, v) in members { kvs.append(GrammarBuilder.literal(JSONValue.quote(k)) + ws + GrammarBuilder.literal(":") + ws + (try constant(v)) + ws) }
            let orders = kvs.count <= 5 ? Self.permutations(Array(kvs.indices)) : [Array(kvs.indices)]
            var alternatives: [[GrammarSymbol]] = []
            for order in orders {
                var out = GrammarBuilder.literal("{") + ws
                for (i, k) in order.enumerated() { out += (i > 0 ? GrammarBuilder.literal(",") + ws : []) + kvs[k] }
                alternatives.append(out + GrammarBuilder.literal("}"))
            }
            return try b.choice(alternatives, name: "const-object")
        default: return GrammarBuilder.literal(value.serialized)
        }
    }

    static func permutations(_ items: [Int]) -> [[Int]] {
        guard items.count > 1 else { return [items] }
        return items.indices.flatMap { i in permutations(Array(items[..<i] + items[(i + 1)...])).map { [items[i]] + $0 } }
    }

    /// The schema `$ref` points to, as a rule (created once, so recursive schemas work).
    private mutating func reference(_ target: String, path: String, depth: Int) throws(EdgeLMError) -> Int {
        if let id = refs[target] { return id }
        let schema = try pointer(target, path: path)
        let id = b.declare("ref " + target)
        refs[target] = id
        try b.define(id, [try value(schema, path: target, depth: depth + 1)])
        return id
    }

    private func pointer(_ target: String, path: String) throws(EdgeLMError) -> JSONValue {
        guard target.hasPrefix("#") else { throw error(path, "'$ref' \(target): references outside the schema are not supported") }
        guard target == "#" || target.hasPrefix("#/") else { throw error(path, "'$ref' \(target): anchors ('$anchor') are not supported") }
        var node = document
        for raw in target.dropFirst(2).split(separator: "/", omittingEmptySubsequences: false) where target != "#" {
            let key = raw.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            if let list = node.arrayValue, let i = Int(key), list.indices.contains(i) { node = list[i]; continue }
            guard let next = node[key.removingPercentEncoding ?? key] else { throw error(path, "'$ref' \(target) points to nothing") }
            node = next
        }
        return node
    }

    /// A schema with a `$ref` at its top replaced by its target (for merging).
    private func resolved(_ schema: JSONValue, path: String) throws(EdgeLMError) -> JSONValue {
        var s = schema
        for _ in 0..<Self.maxDepth {
            guard let ref = s["$ref"]?.stringValue else { return s }
            s = try pointer(ref, path: path)
        }
        throw error(path, "'$ref' chain longer than \(Self.maxDepth)")
    }

    /// Both schemas at once, when their keywords do not conflict (`properties` and `required` combine).
    private func merge(_ a: JSONValue, _ b: JSONValue, path: String) throws(EdgeLMError) -> JSONValue {
        if case .bool(true) = b { return a }
        guard var out = a.objectValue, let other = b.objectValue else { throw error(path, "'allOf' with a false or non-object schema is not supported") }
        if (a["additionalProperties"] != nil && b["properties"] != nil) || (b["additionalProperties"] != nil && a["properties"] != nil) {
            throw error(path, "'allOf' combining 'properties' with 'additionalProperties' is not supported (each part's additionalProperties sees only its own properties)")
        }
        for (key, value) in other {
            guard let i = out.firstIndex(where: { $0.0 == key }) else { out.append((key, value)); continue }
            switch key {
            case "properties":
                var props = out[i].1.objectValue ?? []
                for (name, schema) in value.objectValue ?? [] {
                    if let j = props.firstIndex(where: { $0.0 == name }) { props[j].1 = try merge(props[j].1, schema, path: "\(path)/properties/\(name)") } else { props.append((name, schema)) }
                }
                out[i].1 = .object(props)
            case "required":
                let names = (out[i].1.arrayValue ?? []) + (value.arrayValue ?? []).filter { !(out[i].1.arrayValue ?? []).contains($0) }
                out[i].1 = .array(names)
            default:
                guard out[i].1 == value || Self.annotations.contains(key) else { throw error(path, "combining schemas whose '\(key)' differ is not supported") }
            }
        }
        return .object(out)
    }

    private func integer(_ schema: JSONValue, _ key: String, path: String) throws(EdgeLMError) -> Double? {
        guard let v = schema[key] else { return nil }
        guard let d = v.doubleValue else { throw error(path, "'\(key)' must be a number") }
        return d
    }

    // MARK: - Types

    private mutating func stringGrammar(_ schema: JSONValue, path: String) throws(EdgeLMError) -> [GrammarSymbol] {
        let minLength = try count(schema, "minLength", path: path) ?? 0
        let maxLength = try count(schema, "maxLength", path: path)
        if let maxLength, maxLength < minLength { return [.rule(try b.add("never", []))] }
        let quote = GrammarBuilder.literal("\"")
        if let format = schema["format"] {
            guard schema["pattern"] == nil, minLength == 0, maxLength == nil else { throw error(path, "'format' together with 'pattern' or a length bound is not supported") }
            guard let name = format.stringValue, let regex = Self.formats[name] else {
                throw error(path, "format '\(format.stringValue ?? format.serialized)' is not supported (supported: \(Self.formats.keys.sorted().joined(separator: ", ")))")
            }
            return quote + (try lowerPattern(regex, fullMatch: true)) + quote
        }
        if let pattern = schema["pattern"] {
            guard minLength == 0, maxLength == nil else { throw error(path, "'pattern' together with 'minLength'/'maxLength' is not supported") }
            guard let regex = pattern.stringValue else { throw error(path, "'pattern' must be a string") }
            return quote + (try lowerPattern(regex, fullMatch: false)) + quote
        }
        if minLength == 0, maxLength == nil { return try anyString() }
        return quote + (try b.repeated(try anyChar(), min: minLength, max: maxLength, name: "chars")) + quote
    }

    private mutating func lowerPattern(_ regex: String, fullMatch: Bool) throws(EdgeLMError) -> [GrammarSymbol] {
        var builder = b
        defer { b = builder }
        var compiler = self
        let out = try RegexCompiler.lower(regex, fullMatch: fullMatch, into: &builder) { (inner: inout GrammarBuilder, ranges) throws(EdgeLMError) in
            compiler.b = inner
            let s = try compiler.stringChar(ranges)
            inner = compiler.b
            return s
        }
        return out
    }

    /// Shapes of the supported `format`s, as regular expressions over the string's characters.
    static let formats: [String: String] = [
        "date": #"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"#,
        "time": #"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"#,
        "date-time": #"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"#,
        "uuid": #"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"#,
        "email": #"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"#,
        "uri": #"[A-Za-z][A-Za-z0-9+.-]*:[^\s"<>\\^`{|}]*"#,
        "ipv4": #"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"#,
    ]

    private func count(_ schema: JSONValue, _ key: String, path: String) throws(EdgeLMError) -> Int? {
        guard let v = schema[key] else { return nil }
        guard let d = v.doubleValue, d >= 0, d == d.rounded(), d <= Double(RegexCompiler.maxCount) else {
            throw error(path, "'\(key)' must be a whole number from 0 to \(RegexCompiler.maxCount)")
        }
        return Int(d)
    }

    private mutating func numberGrammar(_ schema: JSONValue, path: String) throws(EdgeLMError) -> [GrammarSymbol] {
        for key in ["maximum", "exclusiveMaximum", "exclusiveMinimum"] where schema[key] != nil {
            throw error(path, "'\(key)' on a number that is not an integer is not supported (use \"type\": \"integer\")")
        }
        if let minimum = try integer(schema, "minimum", path: path) {
            guard minimum == 0 else { throw error(path, "'minimum' \(minimum) on a non-integer number is not supported (only 0)") }
            return try anyNumber(negative: false)
        }
        return try anyNumber()
    }

    private mutating func integerGrammar(_ schema: JSONValue, path: String) throws(EdgeLMError) -> [GrammarSymbol] {
        var lo: Double? = try integer(schema, "minimum", path: path).map { $0.rounded(.up) }
        var hi: Double? = try integer(schema, "maximum", path: path).map { $0.rounded(.down) }
        if let x = try integer(schema, "exclusiveMinimum", path: path) { lo = max(lo ?? -.infinity, x.rounded(.down) + 1) }
        if let x = try integer(schema, "exclusiveMaximum", path: path) { hi = min(hi ?? .infinity, x.rounded(.up) - 1) }
        let limit = 9.0e15
        guard abs(lo ?? 0) < limit, abs(hi ?? 0) < limit else { throw error(path, "integer bounds beyond ±9e15 are not supported") }
        let low = lo.map { Int64($0) }, high = hi.map { Int64($0) }
        if let low, let high, low > high { return [.rule(try b.add("never", []))] }
        if low == nil, high == nil { return try shared("integer") { c throws(EdgeLMError) in (try c.integerBody(negative: true)) + (try c.zeroFraction()) } }
        var alternatives: [[GrammarSymbol]] = []
        // Negative part: "-" and a magnitude in [max(1, -high), -low].
        if (low ?? -1) < 0 {
            let magLo = UInt64(max(1, -(min(high ?? -1, -1))))
            for alt in try IntegerRange.alternatives(lo: magLo, hi: low.map { UInt64(-$0) }, into: &b) { alternatives.append(GrammarBuilder.literal("-") + alt) }
        }
        if (high ?? 0) >= 0 {
            alternatives += try IntegerRange.alternatives(lo: UInt64(max(low ?? 0, 0)), hi: high.map { UInt64($0) }, into: &b)
        }
        return (try b.choice(alternatives, name: "integer-range")) + (try zeroFraction())
    }

    /// An optional `.0`: JSON Schema counts 1.0 as an integer. One zero only: a small model let free writes
    /// `1.000000...` until its token budget ends.
    private mutating func zeroFraction() throws(EdgeLMError) -> [GrammarSymbol] {
        try shared("zero-fraction") { c throws(EdgeLMError) in try c.b.repeated(GrammarBuilder.literal(".0"), min: 0, max: 1) }
    }

    private mutating func objectGrammar(_ schema: JSONValue, path: String, depth: Int) throws(EdgeLMError) -> [GrammarSymbol] {
        let ws = try ws()
        var declared: [(String, JSONValue)] = []
        if let p = schema["properties"] {
            guard let list = p.objectValue else { throw error(path, "'properties' must be an object") }
            declared = list
        }
        var required: [String] = []
        if let r = schema["required"] {
            guard let list = r.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else { throw error(path, "'required' must be an array of strings") }
            required = list.map { $0.stringValue! }
        }
        let additional = schema["additionalProperties"] ?? .bool(true)
        let allowsAdditional = additional != .bool(false)
        for name in required where !declared.contains(where: { $0.0 == name }) {
            // A required member without a declared schema takes the schema of additional members.
            declared.append((name, additional))
        }
        let minProperties = try count(schema, "minProperties", path: path) ?? 0
        let maxProperties = try count(schema, "maxProperties", path: path)
        // Members whose schema is false may not appear.
        let members = declared.filter { $0.1 != .bool(false) || required.contains($0.0) }
        var kvs: [[GrammarSymbol]] = []
        for (name, sub) in members {
            let v = try value(sub, path: "\(path)/properties/\(name)", depth: depth + 1)
            kvs.append(GrammarBuilder.literal(JSONValue.quote(name)) + ws + GrammarBuilder.literal(":") + ws + v + ws)
        }
        let additionalKV: [GrammarSymbol]? = allowsAdditional
            ? (try string(excluding: declared.map(\.0))) + ws + GrammarBuilder.literal(":") + ws + (try value(additional, path: "\(path)/additionalProperties", depth: depth + 1)) + ws
            : nil
        let comma = GrammarBuilder.literal(",") + ws
        if members.isEmpty {
            guard let additionalKV else {
                return minProperties > 0 ? [.rule(try b.add("never", []))] : GrammarBuilder.literal("{") + ws + GrammarBuilder.literal("}")
            }
            let more = try b.repeated(comma + additionalKV, min: max(0, minProperties - 1), max: maxProperties.map { max(0, $0 - 1) })
            let body = (maxProperties == 0) ? [] : try b.repeated(additionalKV + more, min: minProperties > 0 ? 1 : 0, max: 1)
            return GrammarBuilder.literal("{") + ws + body + GrammarBuilder.literal("}")
        }
        let requiredCount = members.filter { required.contains($0.0) }.count
        if minProperties > requiredCount || (maxProperties.map { $0 < members.count || allowsAdditional } ?? false) {
            if let maxProperties, maxProperties < requiredCount { return [.rule(try b.add("never", []))] }
            throw error(path, "'minProperties'/'maxProperties' together with 'properties' is supported only when the bounds follow from them")
        }
        if members.count <= Self.anyOrderLimit {
            return GrammarBuilder.literal("{") + ws + (try anyOrder(kvs, required: members.map { required.contains($0.0) },
                                                                    additionalKV: additionalKV)) + GrammarBuilder.literal("}")
        }
        // rest[i]: members from i on after one has been written; first[i]: the first member, at i or later.
        var rest: [GrammarSymbol] = []
        var first: [GrammarSymbol] = []
        if let additionalKV {
            let more = b.declare("more-members")
            try b.define(more, [comma + additionalKV + [.rule(more)], []])
            rest = [.rule(more)]
            first = try b.choice([additionalKV + rest, []], name: "first-member")
        }
        for i in stride(from: members.count - 1, through: 0, by: -1) {
            let isRequired = required.contains(members[i].0)
            let restRule = try b.add("members", [comma + kvs[i] + rest] + (isRequired ? [] : [rest]))
            let firstRule = try b.add("first-member", [kvs[i] + rest] + (isRequired ? [] : [first]))
            rest = [.rule(restRule)]
            first = [.rule(firstRule)]
        }
        return GrammarBuilder.literal("{") + ws + first + GrammarBuilder.literal("}")
    }

    /// Objects with at most this many declared members accept them in any order (one grammar rule per subset of
    /// members already written, 2^n rules); larger ones in the order of `properties`.
    static let anyOrderLimit = 6

    /// The members of an object in any order, each declared one at most once, every required one present, and
    /// additional members (when allowed) anywhere among them.
    private mutating func anyOrder(_ kvs: [[GrammarSymbol]], required: [Bool], additionalKV: [GrammarSymbol]?) throws(EdgeLMError) -> [GrammarSymbol] {
        let comma = GrammarBuilder.literal(",") + (try ws())
        let requiredMask = required.enumerated().reduce(0) { $0 | ($1.element ? 1 << $1.offset : 0) }
        var after: [Int: Int] = [:]
        // The members that may follow once those in `written` (not empty) are out.
        func rest(_ written: Int, _ c: inout JSONSchemaCompiler) throws(EdgeLMError) -> [GrammarSymbol] {
            if let id = after[written] { return [.rule(id)] }
            let id = c.b.declare("members")
            after[written] = id
            var alternatives: [[GrammarSymbol]] = []
            for i in kvs.indices where written & (1 << i) == 0 {
                alternatives.append(comma + kvs[i] + (try rest(written | 1 << i, &c)))
            }
            if let additionalKV { alternatives.append(comma + additionalKV + [.rule(id)]) }
            if written & requiredMask == requiredMask { alternatives.append([]) }
            try c.b.define(id, alternatives)
            return [.rule(id)]
        }
        var alternatives: [[GrammarSymbol]] = []
        for i in kvs.indices { alternatives.append(kvs[i] + (try rest(1 << i, &self))) }
        if let additionalKV { alternatives.append(additionalKV + (try rest(0, &self))) }
        if requiredMask == 0 { alternatives.append([]) }
        return try b.choice(alternatives, name: "first-member")
    }

    private mutating func arrayGrammar(_ schema: JSONValue, path: String, depth: Int) throws(EdgeLMError) -> [GrammarSymbol] {
        let ws = try ws()
        var prefix: [JSONValue] = []
        var items: JSONValue = .bool(true)
        if let p = schema["prefixItems"] {
            guard let list = p.arrayValue else { throw error(path, "'prefixItems' must be an array") }
            prefix = list
            items = schema["items"] ?? .bool(true)
        } else if let i = schema["items"] {
            if let list = i.arrayValue {
                prefix = list
                items = schema["additionalItems"] ?? .bool(true)
            } else {
                items = i
            }
        }
        let minItems = try count(schema, "minItems", path: path) ?? 0
        var maxItems = try count(schema, "maxItems", path: path)
        if items == .bool(false) { maxItems = min(maxItems ?? prefix.count, prefix.count) }
        if let maxItems, maxItems < minItems { return [.rule(try b.add("never", []))] }
        let comma = GrammarBuilder.literal(",") + ws
        var elements: [[GrammarSymbol]] = []
        for (i, p) in prefix.enumerated() { elements.append(try value(p, path: "\(path)/prefixItems/\(i)", depth: depth + 1) + ws) }
        let item = items == .bool(false) ? [] : try value(items, path: "\(path)/items", depth: depth + 1) + ws
        // after(j): what may follow once j elements are written (j >= 1).
        func after(_ j: Int, _ c: inout JSONSchemaCompiler) throws(EdgeLMError) -> [GrammarSymbol] {
            if j >= prefix.count {
                if items == .bool(false) { return [] }
                let more = try c.b.repeated(comma + item, min: max(0, minItems - j), max: maxItems.map { max(0, $0 - j) })
                return more
            }
            if let maxItems, j >= maxItems { return [] }
            let next = comma + elements[j] + (try after(j + 1, &c))
            return try c.b.choice([next] + (j >= minItems ? [[]] : []), name: "items")
        }
        let firstElement = prefix.isEmpty ? item : elements[0]
        var body: [GrammarSymbol] = []
        if maxItems != 0, !firstElement.isEmpty || !prefix.isEmpty {
            let nonEmpty = firstElement + (try after(1, &self))
            body = minItems > 0 ? nonEmpty : try b.choice([nonEmpty, []], name: "items")
        } else if minItems > 0 {
            return [.rule(try b.add("never", []))]
        }
        return GrammarBuilder.literal("[") + ws + body + GrammarBuilder.literal("]")
    }
}

/// Digit strings (no leading zeros) of the whole numbers in a range.
enum IntegerRange {
    /// Alternatives matching exactly the numbers in `lo...hi` (`hi` nil: no upper bound).
    static func alternatives(lo: UInt64, hi: UInt64?, into b: inout GrammarBuilder) throws(EdgeLMError) -> [[GrammarSymbol]] {
        let loDigits = String(lo).count
        var out: [[GrammarSymbol]] = []
        let topDigits = hi.map { String($0).count } ?? loDigits
        for d in loDigits...max(loDigits, topDigits) {
            let start = d == loDigits ? lo : pow10(d - 1)
            let end = min(hi ?? UInt64.max, pow10(d) - 1)
            if start > end { continue }
            out += sameLength(Array(String(start).utf8), Array(String(end).utf8))
        }
        if hi == nil {
            // Every number with more digits than `lo`.
            out.append([.bytes(ByteSet(0x31...0x39))] + Array(repeating: .bytes(ByteSet(0x30...0x39)), count: loDigits)
                       + (try b.repeated([.bytes(ByteSet(0x30...0x39))], min: 0, max: nil, name: "digits")))
        }
        return out
    }

    static func pow10(_ n: Int) -> UInt64 { (0..<n).reduce(1) { r, _ in r &* 10 } }

    /// Numbers between the digit strings `a` and `b` of equal length.
    static func sameLength(_ a: [UInt8], _ b: [UInt8]) -> [[GrammarSymbol]] {
        guard let a0 = a.first, let b0 = b.first else { return [[]] }
        let ra = Array(a.dropFirst()), rb = Array(b.dropFirst())
        if a0 == b0 { return sameLength(ra, rb).map { [.bytes(ByteSet(a0...a0))] + $0 } }
        let any = GrammarSymbol.bytes(ByteSet(0x30...0x39))
        if ra.allSatisfy({ $0 == 0x30 }), rb.allSatisfy({ $0 == 0x39 }) {
            return [[.bytes(ByteSet(a0...b0))] + Array(repeating: any, count: ra.count)]
        }
        var out = sameLength(ra, Array(repeating: 0x39, count: ra.count)).map { [.bytes(ByteSet(a0...a0))] + $0 }
        if a0 + 1 <= b0 - 1 { out.append([.bytes(ByteSet((a0 + 1)...(b0 - 1)))] + Array(repeating: any, count: ra.count)) }
        out += sameLength(Array(repeating: 0x30, count: rb.count), rb).map { [.bytes(ByteSet(b0...b0))] + $0 }
        return out
    }
}
