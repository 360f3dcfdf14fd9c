// The grammar of each JSON type under its schema keywords (`JSONSchemaCompiler`), and integer ranges as digit strings.

extension JSONSchemaCompiler {
    mutating func stringGrammar(_ schema: JSONValue, path: String) throws(EdgeLMError) -> [GrammarSymbol] {
        let minLength = try count(schema, "minLength", path: path) ?? 0
        let maxLength = try count(schema, "maxLength", path: path)
        if let maxLength, maxLength < minLength { return [.rule(try b.add("never", []))] }
        let quote = GrammarBuilder.literal("\"")
        if let format = schema["format"] {
            guard schema["pattern"] == nil, minLength == 0, maxLength == nil else {
                throw error(path, "'format' together with 'pattern' or a length bound is not supported")
            }
            guard let name = format.stringValue, let regex = Self.formats[name] else {
                throw error(
                    path,
                    "format '\(format.stringValue ?? format.serialized)' is not supported (supported: \(Self.formats.keys.sorted().joined(separator: ", ")))")
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

    mutating func lowerPattern(_ regex: String, fullMatch: Bool) throws(EdgeLMError) -> [GrammarSymbol] {
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
        "date-time":
            #"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"#,
        "uuid": #"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"#,
        "email":
            #"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"#,
        "uri": #"[A-Za-z][A-Za-z0-9+.-]*:[^\s"<>\\^`{|}]*"#,
        "ipv4": #"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"#,
    ]

    func count(_ schema: JSONValue, _ key: String, path: String) throws(EdgeLMError) -> Int? {
        guard let v = schema[key] else { return nil }
        guard let d = v.doubleValue, d >= 0, d == d.rounded(), d <= Double(RegexCompiler.maxCount) else {
            throw error(path, "'\(key)' must be a whole number from 0 to \(RegexCompiler.maxCount)")
        }
        return Int(d)
    }

    mutating func numberGrammar(_ schema: JSONValue, path: String) throws(EdgeLMError) -> [GrammarSymbol] {
        for key in ["maximum", "exclusiveMaximum", "exclusiveMinimum"] where schema[key] != nil {
            throw error(path, "'\(key)' on a number that is not an integer is not supported (use \"type\": \"integer\")")
        }
        if let minimum = try integer(schema, "minimum", path: path) {
            guard minimum == 0 else { throw error(path, "'minimum' \(minimum) on a non-integer number is not supported (only 0)") }
            return try anyNumber(negative: false)
        }
        return try anyNumber()
    }

    mutating func integerGrammar(_ schema: JSONValue, path: String) throws(EdgeLMError) -> [GrammarSymbol] {
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
            for alt in try IntegerRange.alternatives(lo: magLo, hi: low.map { UInt64(-$0) }, into: &b) {
                alternatives.append(GrammarBuilder.literal("-") + alt)
            }
        }
        if (high ?? 0) >= 0 {
            alternatives += try IntegerRange.alternatives(lo: UInt64(max(low ?? 0, 0)), hi: high.map { UInt64($0) }, into: &b)
        }
        return (try b.choice(alternatives, name: "integer-range")) + (try zeroFraction())
    }

    /// An optional `.0`: JSON Schema counts 1.0 as an integer. One zero only: a small model let free writes
    /// `1.000000...` until its token budget ends.
    mutating func zeroFraction() throws(EdgeLMError) -> [GrammarSymbol] {
        try shared("zero-fraction") { c throws(EdgeLMError) in try c.b.repeated(GrammarBuilder.literal(".0"), min: 0, max: 1) }
    }

    mutating func objectGrammar(_ schema: JSONValue, path: String, depth: Int) throws(EdgeLMError) -> [GrammarSymbol] {
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
        let additionalKV: [GrammarSymbol]? =
            allowsAdditional
            ? (try string(excluding: declared.map(\.0))) + ws + GrammarBuilder.literal(":") + ws
                + (try value(additional, path: "\(path)/additionalProperties", depth: depth + 1)) + ws
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
            return GrammarBuilder.literal("{") + ws
                + (try anyOrder(
                    kvs, required: members.map { required.contains($0.0) },
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
    mutating func anyOrder(_ kvs: [[GrammarSymbol]], required: [Bool], additionalKV: [GrammarSymbol]?) throws(EdgeLMError) -> [GrammarSymbol] {
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

    mutating func arrayGrammar(_ schema: JSONValue, path: String, depth: Int) throws(EdgeLMError) -> [GrammarSymbol] {
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
            out.append(
                [.bytes(ByteSet(0x31...0x39))] + Array(repeating: .bytes(ByteSet(0x30...0x39)), count: loDigits)
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
