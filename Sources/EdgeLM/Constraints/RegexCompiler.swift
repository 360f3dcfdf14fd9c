/// A regular expression (the ECMA-262 subset JSON Schema's `pattern` uses) lowered into grammar rules.
/// Supported: literals, escapes (`\d \w \s` and negations, `\n \t \r \f \v \0 \xHH \uHHHH \u{H..}`, escaped
/// punctuation), classes with ranges and negation, `.`, groups (capturing, `(?:`, named), alternation, the
/// quantifiers `* + ? {n} {n,} {n,m}` (lazy forms match the same strings), `^` and `$` at the ends of a branch.
/// Backreferences, lookaround, word boundaries and Unicode property escapes are refused by name. Matching is by
/// the grammar automaton (sets of states, no backtracking), so no pattern can take exponential time.
struct RegexCompiler {
    /// A parsed expression.
    indirect enum Node {
        case chars([ClosedRange<UInt32>])
        case sequence([Node])
        case alternation([Node])
        case repeated(Node, min: Int, max: Int?)
    }

    /// One top-level branch with its anchors.
    struct Branch {
        var node: Node
        var anchoredStart: Bool
        var anchoredEnd: Bool
    }

    private let scalars: [UInt32]
    private var at = 0
    private let source: String

    /// The most repetitions a quantifier may ask for.
    static let maxCount = 10_000

    private init(_ pattern: String) {
        source = pattern
        scalars = pattern.unicodeScalars.map(\.value)
    }

    /// Parses `pattern` into its top-level branches.
    static func parse(_ pattern: String) throws(EdgeLMError) -> [Branch] {
        var p = RegexCompiler(pattern)
        var branches: [Branch] = []
        while true {
            var start = false
            if p.peek == 0x5E { p.at += 1; start = true }
            var items = try p.sequence(topLevel: true)
            var end = false
            if p.peek == 0x24 { p.at += 1; end = true }
            if case let .sequence(s) = items, s.isEmpty { items = .sequence([]) }
            branches.append(Branch(node: items, anchoredStart: start, anchoredEnd: end))
            guard let c = p.peek else { break }
            guard c == 0x7C else { throw p.error("unexpected '\(Character(Unicode.Scalar(c)!))'") }
            p.at += 1
        }
        return branches
    }

    /// Lowers `pattern` into grammar symbols matching whole strings (`fullMatch`) or, as JSON Schema's `pattern`
    /// means, strings that contain a match (unanchored ends accept any text there). `char` turns a set of code
    /// points into symbols (plain UTF-8, or JSON string characters with escapes).
    static func lower(
        _ pattern: String, fullMatch: Bool, into b: inout GrammarBuilder,
        char: (inout GrammarBuilder, [ClosedRange<UInt32>]) throws(EdgeLMError) -> [GrammarSymbol]
    ) throws(EdgeLMError) -> [GrammarSymbol] {
        let branches = try parse(pattern)
        var alternatives: [[GrammarSymbol]] = []
        for branch in branches {
            var seq = try lower(branch.node, into: &b, char: char)
            if !fullMatch {
                let any = try b.repeated(try char(&b, [0...0x10FFFF]), min: 0, max: nil, name: "pattern-any")
                if !branch.anchoredStart { seq = any + seq }
                if !branch.anchoredEnd { seq += any }
            }
            alternatives.append(seq)
        }
        return try b.choice(alternatives, name: "pattern")
    }

    private static func lower(
        _ node: Node, into b: inout GrammarBuilder,
        char: (inout GrammarBuilder, [ClosedRange<UInt32>]) throws(EdgeLMError) -> [GrammarSymbol]
    ) throws(EdgeLMError) -> [GrammarSymbol] {
        switch node {
        case let .chars(ranges): return try char(&b, ranges)
        case let .sequence(items):
            var out: [GrammarSymbol] = []
            for item in items { out += try lower(item, into: &b, char: char) }
            return out
        case let .alternation(options):
            var alts: [[GrammarSymbol]] = []
            for o in options { alts.append(try lower(o, into: &b, char: char)) }
            return try b.choice(alts, name: "group")
        case let .repeated(inner, min, max):
            let body = try lower(inner, into: &b, char: char)
            // Repeat a rule, not its expansion, so nested quantifiers stay small.
            let unit = body.count == 1 ? body : [.rule(try b.add("group", [body]))]
            return try b.repeated(unit, min: min, max: max)
        }
    }

    // MARK: - Parsing

    private var peek: UInt32? { at < scalars.count ? scalars[at] : nil }

    private func error(_ message: String) -> EdgeLMError {
        .invalidArgument("regular expression '\(source)' at character \(at): \(message)")
    }

    /// alternation := sequence ('|' sequence)*, inside a group.
    private mutating func alternation() throws(EdgeLMError) -> Node {
        var options = [try sequence(topLevel: false)]
        while peek == 0x7C {
            at += 1
            options.append(try sequence(topLevel: false))
        }
        return options.count == 1 ? options[0] : .alternation(options)
    }

    private mutating func sequence(topLevel: Bool) throws(EdgeLMError) -> Node {
        var items: [Node] = []
        while let c = peek, c != 0x7C, c != 0x29 {
            if c == 0x24 {
                // '$' ends a top-level branch; anywhere else it is refused.
                guard topLevel, at + 1 == scalars.count || scalars[at + 1] == 0x7C else {
                    throw error("'$' is supported only at the end of the pattern or of a top-level alternative")
                }
                break
            }
            if c == 0x5E { throw error("'^' is supported only at the start of the pattern or of a top-level alternative") }
            var atom = try self.atom()
            atom = try quantified(atom)
            items.append(atom)
        }
        if topLevel, peek == 0x29 { throw error("unbalanced ')'") }
        return items.count == 1 ? items[0] : .sequence(items)
    }

    private mutating func quantified(_ atom: Node) throws(EdgeLMError) -> Node {
        var node = atom
        while let c = peek {
            var range: (Int, Int?)
            switch c {
            case 0x2A: at += 1; range = (0, nil)
            case 0x2B: at += 1; range = (1, nil)
            case 0x3F: at += 1; range = (0, 1)
            case 0x7B:
                guard let r = try braces() else { return node }
                range = r
            default: return node
            }
            if peek == 0x3F { at += 1 } else if peek == 0x2B { throw error("possessive quantifiers are not supported") }
            node = .repeated(node, min: range.0, max: range.1)
        }
        return node
    }

    /// `{n}`, `{n,}`, `{n,m}`; nil (and nothing consumed) when the brace is a literal.
    private mutating func braces() throws(EdgeLMError) -> (Int, Int?)? {
        let save = at
        at += 1
        func number(_ p: inout RegexCompiler) -> Int? {
            var v = 0, any = false
            while let c = p.peek, (0x30...0x39).contains(c) {
                v = min(v * 10 + Int(c - 0x30), Int(Int32.max))
                any = true
                p.at += 1
            }
            return any ? v : nil
        }
        guard let lo = number(&self) else { at = save; return nil }
        var hi: Int? = lo
        if peek == 0x2C {
            at += 1
            hi = number(&self)
        }
        guard peek == 0x7D else { at = save; return nil }
        at += 1
        guard lo <= Self.maxCount, (hi ?? 0) <= Self.maxCount else { throw error("a repetition count above \(Self.maxCount)") }
        if let hi, hi < lo { throw error("{\(lo),\(hi)}: the maximum is below the minimum") }
        return (lo, hi)
    }

    private mutating func atom() throws(EdgeLMError) -> Node {
        let c = scalars[at]
        at += 1
        switch c {
        case 0x28:
            if peek == 0x3F {
                at += 1
                switch peek {
                case 0x3A: at += 1
                case 0x3C where at + 1 < scalars.count && scalars[at + 1] != 0x3D && scalars[at + 1] != 0x21:
                    while let n = peek, n != 0x3E { at += 1 }
                    at += 1
                default: throw error("lookaround and inline flags are not supported")
                }
            }
            let inner = try alternation()
            guard peek == 0x29 else { throw error("missing ')'") }
            at += 1
            return inner
        case 0x5B: return .chars(try characterClass())
        case 0x2E: return .chars(GrammarBuilder.complement([0x0A...0x0A, 0x0D...0x0D, 0x2028...0x2029]))
        case 0x5C: return .chars(try escape(inClass: false))
        case 0x2A, 0x2B, 0x3F: throw error("a quantifier with nothing to repeat")
        default: return .chars([c...c])
        }
    }

    private mutating func characterClass() throws(EdgeLMError) -> [ClosedRange<UInt32>] {
        var negated = false
        if peek == 0x5E { negated = true; at += 1 }
        var ranges: [ClosedRange<UInt32>] = []
        while true {
            guard let c = peek else { throw error("missing ']'") }
            at += 1
            if c == 0x5D { break }
            var lo: [ClosedRange<UInt32>] = c == 0x5C ? try escape(inClass: true) : [c...c]
            if peek == 0x2D, at + 1 < scalars.count, scalars[at + 1] != 0x5D, lo.count == 1, lo[0].count == 1 {
                at += 1
                let h = scalars[at]
                at += 1
                let hi: [ClosedRange<UInt32>] = h == 0x5C ? try escape(inClass: true) : [h...h]
                guard hi.count == 1, hi[0].count == 1 else { throw error("a range ending in a class escape") }
                guard lo[0].lowerBound <= hi[0].lowerBound else { throw error("a range out of order") }
                lo = [lo[0].lowerBound...hi[0].lowerBound]
            }
            ranges += lo
        }
        return negated ? GrammarBuilder.complement(ranges) : GrammarBuilder.normalize(ranges)
    }

    static let space: [ClosedRange<UInt32>] = [
        0x09...0x0D, 0x20...0x20, 0xA0...0xA0, 0x1680...0x1680, 0x2000...0x200A,
        0x2028...0x2029, 0x202F...0x202F, 0x205F...0x205F, 0x3000...0x3000, 0xFEFF...0xFEFF,
    ]
    static let word: [ClosedRange<UInt32>] = [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A]

    /// After a backslash: the code points the escape stands for.
    private mutating func escape(inClass: Bool) throws(EdgeLMError) -> [ClosedRange<UInt32>] {
        guard let c = peek else { throw error("a pattern ending in '\\'") }
        at += 1
        switch Character(Unicode.Scalar(c)!) {
        case "d": return [0x30...0x39]
        case "D": return GrammarBuilder.complement([0x30...0x39])
        case "w": return Self.word
        case "W": return GrammarBuilder.complement(Self.word)
        case "s": return Self.space
        case "S": return GrammarBuilder.complement(Self.space)
        case "n": return [0x0A...0x0A]
        case "t": return [0x09...0x09]
        case "r": return [0x0D...0x0D]
        case "f": return [0x0C...0x0C]
        case "v": return [0x0B...0x0B]
        case "0": return [0...0]
        case "b" where inClass: return [0x08...0x08]
        case "x":
            let v = try hex(count: 2)
            return [v...v]
        case "u":
            if peek == 0x7B {
                at += 1
                var v: UInt32 = 0
                while let h = peek, h != 0x7D {
                    guard let d = Character(Unicode.Scalar(h)!).hexDigitValue, v < 0x110000 else { throw error("an invalid \\u{...} escape") }
                    v = v * 16 + UInt32(d)
                    at += 1
                }
                at += 1
                return [v...v]
            }
            let v = try hex(count: 4)
            return [v...v]
        case "b", "B": throw error("word boundaries (\\b, \\B) are not supported")
        case "p", "P": throw error("Unicode property escapes (\\p, \\P) are not supported")
        case "1", "2", "3", "4", "5", "6", "7", "8", "9", "k": throw error("backreferences are not supported")
        default:
            guard c < 0x80, !Character(Unicode.Scalar(c)!).isLetter else { throw error("unknown escape '\\\(Character(Unicode.Scalar(c)!))'") }
            return [c...c]
        }
    }

    private mutating func hex(count: Int) throws(EdgeLMError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<count {
            guard let h = peek, let d = Character(Unicode.Scalar(h)!).hexDigitValue else { throw error("an invalid hexadecimal escape") }
            v = v * 16 + UInt32(d)
            at += 1
        }
        return v
    }
}
