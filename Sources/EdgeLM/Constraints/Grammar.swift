/// A set of byte values.
public struct ByteSet: Hashable, Sendable {
    var words: SIMD4<UInt64> = .zero

    /// The empty set.
    public init() {}

    /// The bytes in `range`.
    public init(_ range: ClosedRange<UInt8>) {
        for b in range { insert(b) }
    }

    /// Adds `b`.
    public mutating func insert(_ b: UInt8) { words[Int(b >> 6)] |= 1 << UInt64(b & 63) }

    /// True when `b` is in the set.
    @inline(__always) public func contains(_ b: UInt8) -> Bool { words[Int(b >> 6)] & (1 << UInt64(b & 63)) != 0 }

    /// How many bytes are in the set.
    public var count: Int { (0..<4).reduce(0) { $0 + words[$1].nonzeroBitCount } }

    /// True when no byte is in the set.
    public var isEmpty: Bool { words == .zero }

    /// The union of two sets.
    public func union(_ other: ByteSet) -> ByteSet { var s = self; s.words |= other.words; return s }
}

/// A symbol of a grammar rule's alternative: one byte from a set, or a rule.
public enum GrammarSymbol: Hashable, Sendable {
    case bytes(ByteSet)
    case rule(Int)
}

/// A context-free grammar over bytes, compiled for matching: the form every constraint (GBNF text, a regular
/// expression, a JSON Schema) is lowered to. Characters are UTF-8 byte sequences, so a token that ends inside a
/// character is matched exactly like one that ends between characters.
public struct Grammar: Sendable, CustomStringConvertible {
    /// The end of an alternative in `elements`.
    static let end = Int32.min
    /// Flat alternatives: a byte-set index (>= 0), a rule (-(rule + 1)), `end` after each alternative.
    let elements: [Int32]
    /// Per rule, the start of each alternative in `elements`.
    let alternatives: [[Int32]]
    /// Byte sets referenced by `elements`.
    let sets: [ByteSet]
    /// The start rule.
    let root: Int
    /// Rule names, for error messages.
    let names: [String]

    /// Number of symbols, a measure of the grammar's size.
    public var size: Int { elements.count }

    public var description: String { "Grammar(\(alternatives.count) rules, \(elements.count) symbols, root '\(names[root])')" }
}

/// Builds a `Grammar` rule by rule, with helpers for literals, Unicode character classes and repetition;
/// `build` checks it (every rule defined, no left recursion, something derivable) and drops alternatives
/// that can never complete.
public struct GrammarBuilder: Sendable {
    /// The most symbols a grammar may hold (a huge `enum`, or repetition counts that multiply, stop here).
    public static let maxSymbols = 1_000_000

    private(set) var names: [String] = []
    private var rules: [[[GrammarSymbol]]?] = []
    private var symbols = 0
    private var classRules: [[ClosedRange<UInt32>]: Int] = [:]

    /// An empty grammar.
    public init() {}

    /// Reserves a rule named `name` (defined later by `define`, so rules can refer to each other).
    public mutating func declare(_ name: String) -> Int {
        names.append(name)
        rules.append(nil)
        return names.count - 1
    }

    /// Sets the alternatives of a declared rule.
    public mutating func define(_ rule: Int, _ alternatives: [[GrammarSymbol]]) throws(EdgeLMError) {
        symbols += alternatives.reduce(alternatives.count) { $0 + $1.count }
        guard symbols <= Self.maxSymbols else {
            throw .invalidArgument("the constraint is too large: more than \(Self.maxSymbols) grammar symbols")
        }
        rules[rule] = alternatives
    }

    /// Declares and defines a rule.
    public mutating func add(_ name: String, _ alternatives: [[GrammarSymbol]]) throws(EdgeLMError) -> Int {
        let id = declare(name)
        try define(id, alternatives)
        return id
    }

    /// One of several sequences (a new rule unless there is only one).
    public mutating func choice(_ alternatives: [[GrammarSymbol]], name: String = "choice") throws(EdgeLMError) -> [GrammarSymbol] {
        if alternatives.count == 1 { return alternatives[0] }
        return [.rule(try add(name, alternatives))]
    }

    /// The bytes of `text`.
    public static func literal(_ text: String) -> [GrammarSymbol] { text.utf8.map { .bytes(ByteSet($0...$0)) } }

    /// `sequence` repeated between `min` and `max` times (nil: unbounded).
    public mutating func repeated(_ sequence: [GrammarSymbol], min: Int, max: Int?, name: String = "repeat") throws(EdgeLMError) -> [GrammarSymbol] {
        guard min >= 0, max.map({ $0 >= min }) ?? true else { throw .invalidArgument("repetition {\(min),\(max.map(String.init) ?? "")}: invalid bounds") }
        let needed = sequence.count * Swift.max(min, max ?? min)
        guard needed <= Self.maxSymbols - symbols else {
            throw .invalidArgument("the constraint is too large: a repetition of \(max ?? min) needs more than \(Self.maxSymbols) grammar symbols")
        }
        var out: [GrammarSymbol] = []
        for _ in 0..<min { out += sequence }
        if let max {
            guard max > min else { return out }
            // opt_k ::= sequence opt_(k-1) | empty, nested so at most max - min more copies follow.
            var tail: [GrammarSymbol] = []
            for _ in 0..<(max - min) {
                tail = [.rule(try add(name, [sequence + tail, []]))]
            }
            return out + tail
        }
        let star = declare(name)
        try define(star, [sequence + [.rule(star)], []])
        return out + [.rule(star)]
    }

    /// One Unicode scalar from `ranges` (code points; surrogates are never matched), as UTF-8 bytes.
    public mutating func scalar(in ranges: [ClosedRange<UInt32>]) throws(EdgeLMError) -> [GrammarSymbol] {
        let normal = Self.normalize(ranges)
        if let last = normal.last, last.upperBound < 0x80 {
            var set = ByteSet()
            for r in normal { set = set.union(ByteSet(UInt8(r.lowerBound)...UInt8(r.upperBound))) }
            return [.bytes(set)]
        }
        if let rule = classRules[normal] { return [.rule(rule)] }
        var sequences: [[GrammarSymbol]] = []
        for r in normal {
            for seq in UTF8Ranges.split(r) { sequences.append(seq.map { .bytes(ByteSet($0)) }) }
        }
        // One-byte alternatives merge into a single set.
        var ascii = ByteSet()
        var rest: [[GrammarSymbol]] = []
        for s in sequences {
            if s.count == 1, case let .bytes(b) = s[0] { ascii = ascii.union(b) } else { rest.append(s) }
        }
        let alternatives = (ascii.isEmpty ? [] : [[GrammarSymbol.bytes(ascii)]]) + rest
        let rule = try add("char", alternatives)
        classRules[normal] = rule
        return [.rule(rule)]
    }

    /// Sorted, merged ranges within 0...0x10FFFF.
    static func normalize(_ ranges: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var out: [ClosedRange<UInt32>] = []
        for r in ranges.filter({ $0.lowerBound <= 0x10FFFF }).map({ $0.lowerBound...Swift.min($0.upperBound, 0x10FFFF) })
            .sorted(by: { $0.lowerBound < $1.lowerBound })
        {
            if let last = out.last, r.lowerBound <= last.upperBound &+ 1 {
                out[out.count - 1] = last.lowerBound...Swift.max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// Every code point not in `ranges`.
    static func complement(_ ranges: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var out: [ClosedRange<UInt32>] = []
        var next: UInt32 = 0
        for r in normalize(ranges) {
            if r.lowerBound > next { out.append(next...(r.lowerBound - 1)) }
            next = r.upperBound + 1
        }
        if next <= 0x10FFFF { out.append(next...0x10FFFF) }
        return out
    }

    /// The checked grammar starting at `root`.
    public func build(root: Int) throws(EdgeLMError) -> Grammar {
        var defined: [[[GrammarSymbol]]] = []
        for (i, r) in rules.enumerated() {
            guard let r else { throw .invalidArgument("grammar: rule '\(names[i])' is used but never defined") }
            defined.append(r)
        }
        // Productive rules derive at least one finite string; alternatives using others can never complete.
        var productive = [Bool](repeating: false, count: defined.count)
        func symbolOK(_ s: GrammarSymbol) -> Bool {
            switch s {
            case let .bytes(b): return !b.isEmpty
            case let .rule(r): return productive[r]
            }
        }
        var changed = true
        while changed {
            changed = false
            for (r, alts) in defined.enumerated() where !productive[r] && alts.contains(where: { $0.allSatisfy(symbolOK) }) {
                productive[r] = true
                changed = true
            }
        }
        guard productive[root] else { throw .invalidArgument("the constraint cannot be satisfied: no output matches it") }
        let pruned = defined.map { $0.filter { $0.allSatisfy(symbolOK) } }
        try Self.checkLeftRecursion(pruned, names: names)

        var elements: [Int32] = []
        var starts: [[Int32]] = []
        var sets: [ByteSet] = []
        var setIndex: [ByteSet: Int32] = [:]
        for alts in pruned {
            var ruleStarts: [Int32] = []
            for alt in alts {
                ruleStarts.append(Int32(elements.count))
                for s in alt {
                    switch s {
                    case let .bytes(b):
                        if let i = setIndex[b] {
                            elements.append(i)
                        } else {
                            setIndex[b] = Int32(sets.count)
                            elements.append(Int32(sets.count))
                            sets.append(b)
                        }
                    case let .rule(r): elements.append(-Int32(r) - 1)
                    }
                }
                elements.append(Grammar.end)
            }
            starts.append(ruleStarts)
        }
        return Grammar(elements: elements, alternatives: starts, sets: sets, root: root, names: names)
    }

    /// Refuses a rule that can reach itself without consuming a byte (matching would never advance).
    static func checkLeftRecursion(_ rules: [[[GrammarSymbol]]], names: [String]) throws(EdgeLMError) {
        var nullable = [Bool](repeating: false, count: rules.count)
        var changed = true
        while changed {
            changed = false
            for (r, alts) in rules.enumerated() where !nullable[r] {
                if alts.contains(where: {
                    $0.allSatisfy {
                        if case let .rule(x) = $0 { return nullable[x] }; return false
                    }
                }) {
                    nullable[r] = true
                    changed = true
                }
            }
        }
        // Edges to the rules that can come first.
        let firsts: [[Int]] = rules.map { alts in
            var out: [Int] = []
            for alt in alts {
                for s in alt {
                    guard case let .rule(x) = s else { break }
                    out.append(x)
                    if !nullable[x] { break }
                }
            }
            return out
        }
        var color = [UInt8](repeating: 0, count: rules.count)  // 0 new, 1 on the path, 2 done
        for start in rules.indices where color[start] == 0 {
            var stack: [(Int, Int)] = [(start, 0)]
            color[start] = 1
            while let (r, i) = stack.last {
                if i < firsts[r].count {
                    stack[stack.count - 1].1 += 1
                    let x = firsts[r][i]
                    if color[x] == 1 { throw .invalidArgument("grammar: rule '\(names[x])' is left-recursive (it can reach itself before matching any text)") }
                    if color[x] == 0 { color[x] = 1; stack.append((x, 0)) }
                } else {
                    color[r] = 2
                    stack.removeLast()
                }
            }
        }
    }
}

/// Splits code-point ranges into UTF-8 byte-range sequences (each sequence matches exactly the encodings of
/// the code points of one sub-range).
enum UTF8Ranges {
    static func split(_ r: ClosedRange<UInt32>) -> [[ClosedRange<UInt8>]] {
        var out: [[ClosedRange<UInt8>]] = []
        // Surrogates have no encoding.
        var pieces: [ClosedRange<UInt32>] = []
        if r.lowerBound <= 0xD7FF { pieces.append(r.lowerBound...min(r.upperBound, 0xD7FF)) }
        if r.upperBound >= 0xE000 { pieces.append(max(r.lowerBound, 0xE000)...r.upperBound) }
        let lengths: [ClosedRange<UInt32>] = [0...0x7F, 0x80...0x7FF, 0x800...0xFFFF, 0x10000...0x10FFFF]
        for piece in pieces {
            for length in lengths {
                let lo = max(piece.lowerBound, length.lowerBound), hi = min(piece.upperBound, length.upperBound)
                if lo <= hi { sameLength(lo, hi, into: &out) }
            }
        }
        return out
    }

    private static func sameLength(_ lo: UInt32, _ hi: UInt32, into out: inout [[ClosedRange<UInt8>]]) {
        let n = encode(lo).count
        for i in 1..<max(n, 1) {
            let m: UInt32 = (1 << (6 * UInt32(i))) - 1
            if lo & ~m != hi & ~m {
                if lo & m != 0 {
                    sameLength(lo, lo | m, into: &out)
                    sameLength((lo | m) + 1, hi, into: &out)
                    return
                }
                if hi & m != m {
                    sameLength(lo, (hi & ~m) - 1, into: &out)
                    sameLength(hi & ~m, hi, into: &out)
                    return
                }
            }
        }
        let a = encode(lo), b = encode(hi)
        out.append(zip(a, b).map { $0...$1 })
    }

    static func encode(_ c: UInt32) -> [UInt8] { Array(String(Character(Unicode.Scalar(c)!)).utf8) }
}
