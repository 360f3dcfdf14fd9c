// The keyword work of `JSONSchemaCompiler`: what schemas imply about each other (disjoint types, merges),
// literal values, references.

extension JSONSchemaCompiler {
    /// True when no value can match both schemas, judged by their types, their const/enum values, or the
    /// const/enum values of a property both require (a discriminator).
    func disjoint(_ a: JSONValue, _ b: JSONValue, path: String) throws(EdgeLMError) -> Bool {
        let x = try resolved(a, path: path), y = try resolved(b, path: path)
        if let tx = kinds(x), let ty = kinds(y), tx.isDisjoint(with: ty) { return true }
        if let vx = values(x), let vy = values(y), !vx.contains(where: { v in vy.contains(v) }) { return true }
        let required = Set((x["required"]?.arrayValue ?? []).compactMap(\.stringValue)).intersection(
            (y["required"]?.arrayValue ?? []).compactMap(\.stringValue))
        for name in required {
            guard let px = x["properties"]?[name], let py = y["properties"]?[name] else { continue }
            if let vx = values(try resolved(px, path: path)), let vy = values(try resolved(py, path: path)), !vx.contains(where: { v in vy.contains(v) }) {
                return true
            }
        }
        return false
    }

    /// The JSON types a schema's values may have ("integer" counted as "number"); nil when unrestricted.
    func kinds(_ schema: JSONValue) -> Set<String>? {
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
    func values(_ schema: JSONValue) -> [JSONValue]? {
        if let c = schema["const"] { return [c] }
        return schema["enum"]?.arrayValue
    }

    func hasValidation(_ schema: JSONValue) -> Bool {
        schema.objectValue?.contains { !Self.annotations.contains($0.0) && $0.0 != "$defs" && $0.0 != "definitions" } ?? false
    }

    /// `const` / `enum` values (of the allowed types, when `type` is given) as literal JSON texts.
    mutating func literalChoice(_ values: [JSONValue], types: [String], path: String, keyword: String) throws(EdgeLMError) -> [GrammarSymbol] {
        let allowed = values.filter { v in
            types.isEmpty
                || types.contains { t in
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
    mutating func constant(_ value: JSONValue) throws(EdgeLMError) -> [GrammarSymbol] {
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
    mutating func reference(_ target: String, path: String, depth: Int) throws(EdgeLMError) -> Int {
        if let id = refs[target] { return id }
        let schema = try pointer(target, path: path)
        let id = b.declare("ref " + target)
        refs[target] = id
        try b.define(id, [try value(schema, path: target, depth: depth + 1)])
        return id
    }

    func pointer(_ target: String, path: String) throws(EdgeLMError) -> JSONValue {
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
    func resolved(_ schema: JSONValue, path: String) throws(EdgeLMError) -> JSONValue {
        var s = schema
        for _ in 0..<Self.maxDepth {
            guard let ref = s["$ref"]?.stringValue else { return s }
            s = try pointer(ref, path: path)
        }
        throw error(path, "'$ref' chain longer than \(Self.maxDepth)")
    }

    /// Both schemas at once, when their keywords do not conflict (`properties` and `required` combine).
    func merge(_ a: JSONValue, _ b: JSONValue, path: String) throws(EdgeLMError) -> JSONValue {
        if case .bool(true) = b { return a }
        guard var out = a.objectValue, let other = b.objectValue else { throw error(path, "'allOf' with a false or non-object schema is not supported") }
        if (a["additionalProperties"] != nil && b["properties"] != nil) || (b["additionalProperties"] != nil && a["properties"] != nil) {
            throw error(
                path,
                "'allOf' combining 'properties' with 'additionalProperties' is not supported (each part's additionalProperties sees only its own properties)")
        }
        for (key, value) in other {
            guard let i = out.firstIndex(where: { $0.0 == key }) else { out.append((key, value)); continue }
            switch key {
            case "properties":
                var props = out[i].1.objectValue ?? []
                for (name, schema) in value.objectValue ?? [] {
                    if let j = props.firstIndex(where: { $0.0 == name }) {
                        props[j].1 = try merge(props[j].1, schema, path: "\(path)/properties/\(name)")
                    } else {
                        props.append((name, schema))
                    }
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

    func integer(_ schema: JSONValue, _ key: String, path: String) throws(EdgeLMError) -> Double? {
        guard let v = schema[key] else { return nil }
        guard let d = v.doubleValue else { throw error(path, "'\(key)' must be a number") }
        return d
    }
}
