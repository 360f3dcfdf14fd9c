/// Parses grammars in llama.cpp's GBNF notation: `name ::= alternatives`, with `|`, grouping, `"literals"`,
/// `[classes]` (ranges, `^` negation), `.` (any character), the quantifiers `* + ? {n} {n,} {n,m}`, and `#`
/// comments. A rule ends where the next `name ::=` begins. Generation starts at `root`.
struct GBNFParser {
    private let scalars: [UInt32]
    private var at = 0
    private var line = 1
    private var builder = GrammarBuilder()
    private var ruleIDs: [String: Int] = [:]
    private var definedRules = Set<String>()

    private init(_ text: String) { scalars = text.unicodeScalars.map(\.value) }

    /// The grammar `text` defines.
    static func parse(_ text: String) throws(EdgeLMError) -> Grammar {
        var p = GBNFParser(text)
        p.skip()
        while p.peek != nil {
            let name = try p.name()
            p.skip()
            guard p.consume("::=") else { throw p.error("expected '::=' after rule name '\(name)'") }
            guard p.definedRules.insert(name).inserted else { throw p.error("rule '\(name)' is defined twice") }
            let alternatives = try p.alternatives()
            try p.builder.define(p.rule(name), alternatives)
        }
        guard let root = p.ruleIDs["root"], p.definedRules.contains("root") else {
            throw .invalidArgument("grammar: no 'root' rule (generation starts at root)")
        }
        return try p.builder.build(root: root)
    }

    private var peek: UInt32? { at < scalars.count ? scalars[at] : nil }

    private func error(_ message: String) -> EdgeLMError { .invalidArgument("grammar line \(line): \(message)") }

    private mutating func rule(_ name: String) -> Int {
        if let id = ruleIDs[name] { return id }
        let id = builder.declare(name)
        ruleIDs[name] = id
        return id
    }

    /// Skips spaces, newlines and comments.
    private mutating func skip() {
        while let c = peek {
            if c == 0x23 {
                while let d = peek, d != 0x0A { at += 1; _ = d }
            } else if c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0A {
                if c == 0x0A { line += 1 }
                at += 1
            } else {
                return
            }
        }
    }

    private mutating func consume(_ s: String) -> Bool {
        let u = s.unicodeScalars.map(\.value)
        guard at + u.count <= scalars.count, Array(scalars[at..<(at + u.count)]) == u else { return false }
        at += u.count
        return true
    }

    private static func isNameChar(_ c: UInt32) -> Bool {
        (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || c == 0x2D || c == 0x5F
    }

    private mutating func name() throws(EdgeLMError) -> String {
        let start = at
        while let c = peek, Self.isNameChar(c) { at += 1 }
        guard at > start else { throw error("expected a rule name") }
        return String(String.UnicodeScalarView(scalars[start..<at].compactMap(Unicode.Scalar.init)))
    }

    /// True when a `name ::=` starts here (the end of the current rule).
    private func atRuleStart() -> Bool {
        var i = at
        while i < scalars.count, Self.isNameChar(scalars[i]) { i += 1 }
        guard i > at else { return false }
        while i < scalars.count, [0x20, 0x09, 0x0D, 0x0A].contains(scalars[i]) { i += 1 }
        return i + 3 <= scalars.count && Array(scalars[i..<(i + 3)]) == [0x3A, 0x3A, 0x3D]
    }

    private mutating func alternatives() throws(EdgeLMError) -> [[GrammarSymbol]] {
        var out = [try sequence()]
        while peek == 0x7C {
            at += 1
            out.append(try sequence())
        }
        return out
    }

    private mutating func sequence() throws(EdgeLMError) -> [GrammarSymbol] {
        var out: [GrammarSymbol] = []
        while true {
            skip()
            guard let c = peek, c != 0x7C, c != 0x29, !atRuleStart() else { return out }
            var item: [GrammarSymbol]
            switch c {
            case 0x22:
                at += 1
                item = []
                while true {
                    guard let d = peek else { throw error("unterminated string") }
                    if d == 0x22 { at += 1; break }
                    let v =
                        d == 0x5C
                        ? try escape()
                        : {
                            at += 1; return d
                        }()
                    item += GrammarBuilder.literal(String(Character(Unicode.Scalar(v)!)))
                }
            case 0x5B:
                at += 1
                item = try builder.scalar(in: try characterClass())
            case 0x2E:
                at += 1
                item = try builder.scalar(in: [0...0x10FFFF])
            case 0x28:
                at += 1
                let inner = try alternatives()
                skip()
                guard peek == 0x29 else { throw error("missing ')'") }
                at += 1
                item = [.rule(try builder.add("group", inner))]
            default:
                let n = try name()
                item = [.rule(rule(n))]
            }
            out += try quantifier(item)
        }
    }

    private mutating func quantifier(_ item: [GrammarSymbol]) throws(EdgeLMError) -> [GrammarSymbol] {
        let unit = item.count == 1 ? item : [.rule(try builder.add("group", [item]))]
        switch peek {
        case 0x2A: at += 1; return try builder.repeated(unit, min: 0, max: nil)
        case 0x2B: at += 1; return try builder.repeated(unit, min: 1, max: nil)
        case 0x3F: at += 1; return try builder.repeated(unit, min: 0, max: 1)
        case 0x7B:
            at += 1
            skip()
            let lo = try count()
            skip()
            var hi: Int? = lo
            if peek == 0x2C {
                at += 1
                skip()
                hi = peek == 0x7D ? nil : try count()
                skip()
            }
            guard peek == 0x7D else { throw error("expected '}'") }
            at += 1
            return try builder.repeated(unit, min: lo, max: hi)
        default: return item
        }
    }

    private mutating func count() throws(EdgeLMError) -> Int {
        var v = 0, any = false
        while let c = peek, (0x30...0x39).contains(c) {
            v = v * 10 + Int(c - 0x30)
            guard v <= RegexCompiler.maxCount else { throw error("a repetition count above \(RegexCompiler.maxCount)") }
            any = true
            at += 1
        }
        guard any else { throw error("expected a number") }
        return v
    }

    private mutating func characterClass() throws(EdgeLMError) -> [ClosedRange<UInt32>] {
        var negated = false
        if peek == 0x5E { negated = true; at += 1 }
        var ranges: [ClosedRange<UInt32>] = []
        while true {
            guard let c = peek else { throw error("missing ']'") }
            if c == 0x5D { at += 1; break }
            let lo =
                c == 0x5C
                ? try escape()
                : {
                    at += 1; return c
                }()
            var hi = lo
            if peek == 0x2D, at + 1 < scalars.count, scalars[at + 1] != 0x5D {
                at += 1
                let h = scalars[at]
                hi =
                    h == 0x5C
                    ? try escape()
                    : {
                        at += 1; return h
                    }()
                guard lo <= hi else { throw error("a range out of order") }
            }
            ranges.append(lo...hi)
        }
        return negated ? GrammarBuilder.complement(ranges) : GrammarBuilder.normalize(ranges)
    }

    /// After a backslash (consumed here): the code point it stands for.
    private mutating func escape() throws(EdgeLMError) -> UInt32 {
        at += 1
        guard let c = peek else { throw error("a grammar ending in '\\'") }
        at += 1
        switch c {
        case 0x6E: return 0x0A
        case 0x74: return 0x09
        case 0x72: return 0x0D
        case 0x78: return try hex(2)
        case 0x75: return try hex(4)
        case 0x55: return try hex(8)
        default: return c
        }
    }

    private mutating func hex(_ count: Int) throws(EdgeLMError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<count {
            guard let h = peek, let d = Character(Unicode.Scalar(h)!).hexDigitValue else { throw error("an invalid hexadecimal escape") }
            v = v * 16 + UInt32(d)
            at += 1
        }
        guard v <= 0x10FFFF, !(0xD800...0xDFFF).contains(v) else { throw error("an escape outside Unicode") }
        return v
    }
}
