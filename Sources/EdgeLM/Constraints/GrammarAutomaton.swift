/// Matches bytes against a `Grammar` as a pushdown automaton whose configurations (sets of parse stacks) are
/// interned and whose transitions are cached: once a configuration has been seen, advancing it by a byte is one
/// array read. Stacks are persistent (shared tails, hash-consed), and a rule called last in an alternative does
/// not grow the stack, so loops such as the characters of a string return to the same configuration.
/// Not thread-safe: `TokenConstraint` serialises access.
final class GrammarAutomaton {
    /// A configuration from which no byte is accepted (the input so far does not continue any valid output).
    static let dead: Int32 = -1
    /// A transition not computed yet.
    static let unknown: Int32 = -2
    /// In a configuration's stacks: the root rule has been completed.
    private static let accepted = Int32.max

    let grammar: Grammar
    private var nodePos: [Int32] = []
    private var nodeParent: [Int32] = []
    private var nodeIndex: [UInt64: Int32] = [:]
    private var stacks: [[Int32]] = []
    private var stateIndex: [[Int32]: Int32] = [:]
    /// state * 256 + byte -> next state (`unknown` until computed), `capacity` states long. A raw buffer: the
    /// mask walk reads it once per trie node.
    private(set) var transitions: UnsafeMutablePointer<Int32>
    private var capacity = 64
    /// The configuration before any byte.
    private(set) var initial: Int32 = 0

    init(grammar: Grammar) {
        self.grammar = grammar
        transitions = .allocate(capacity: capacity * 256)
        initial = intern(start())
    }

    deinit { transitions.deallocate() }

    /// True when the bytes so far form a complete output.
    func isAccepting(_ state: Int32) -> Bool { state >= 0 && stacks[Int(state)].last == Self.accepted }

    /// True when the output is complete and nothing may follow.
    func isComplete(_ state: Int32) -> Bool { state >= 0 && stacks[Int(state)] == [Self.accepted] }

    /// The bytes that may come next in `state` (from the stacks' tops, without computing any transition).
    func nextBytes(_ state: Int32) -> ByteSet {
        guard state >= 0 else { return ByteSet() }
        var out = ByteSet()
        for top in stacks[Int(state)] where top != Self.accepted {
            out = out.union(grammar.sets[Int(grammar.elements[Int(nodePos[Int(top)])])])
        }
        return out
    }

    /// The configuration after `byte` (`dead` if the byte cannot come next).
    @inline(__always) func next(_ state: Int32, _ byte: UInt8) -> Int32 {
        let t = transitions[Int(state) &* 256 &+ Int(byte)]
        return t != Self.unknown ? t : compute(state, byte)
    }

    /// Advances through `bytes`.
    func next(_ state: Int32, bytes: [UInt8]) -> Int32 {
        var s = state
        for b in bytes where s != Self.dead { s = next(s, b) }
        return s
    }

    // MARK: - Stacks

    private func start() -> [Int32] {
        var out: [Int32] = []
        var seen: [UInt64] = []
        for a in grammar.alternatives[grammar.root] { expand(a, parent: -1, into: &out, seen: &seen) }
        return out
    }

    private func node(_ pos: Int32, _ parent: Int32) -> Int32 {
        let key = UInt64(UInt32(bitPattern: pos)) << 32 | UInt64(UInt32(bitPattern: parent))
        if let n = nodeIndex[key] { return n }
        let n = Int32(nodePos.count)
        nodePos.append(pos)
        nodeParent.append(parent)
        nodeIndex[key] = n
        return n
    }

    /// Adds the stacks that continue at element `pos` with return stack `parent`, each ending at a byte set.
    /// `seen` (the expansions already made for this step) is a plain array: a step expands a handful.
    private func expand(_ pos: Int32, parent: Int32, into out: inout [Int32], seen: inout [UInt64]) {
        let key = UInt64(UInt32(bitPattern: pos)) << 32 | UInt64(UInt32(bitPattern: parent))
        guard !seen.contains(key) else { return }
        seen.append(key)
        let e = grammar.elements[Int(pos)]
        if e == Grammar.end {
            if parent < 0 {
                out.append(Self.accepted)
            } else {
                expand(nodePos[Int(parent)], parent: nodeParent[Int(parent)], into: &out, seen: &seen)
            }
        } else if e >= 0 {
            out.append(node(pos, parent))
        } else {
            let rule = Int(-(e + 1))
            // A call in last position returns straight to the caller's continuation.
            let ret = grammar.elements[Int(pos) + 1] == Grammar.end ? parent : node(pos + 1, parent)
            for a in grammar.alternatives[rule] { expand(a, parent: ret, into: &out, seen: &seen) }
        }
    }

    /// Fills `state`'s whole transition row at once: bytes accepted by the same subset of its stacks lead to the
    /// same configuration, so each subset is expanded and interned once (a string's characters are one subset).
    private func compute(_ state: Int32, _ byte: UInt8) -> Int32 {
        let live = stacks[Int(state)].filter { $0 != Self.accepted }
        let sets = live.map { grammar.sets[Int(grammar.elements[Int(nodePos[Int($0)])])] }
        let words = (live.count + 63) / 64
        var patterns = [[UInt64]](repeating: [UInt64](repeating: 0, count: words), count: 256)
        for (i, set) in sets.enumerated() {
            for b in 0..<256 where set.contains(UInt8(b)) { patterns[b][i >> 6] |= 1 << UInt64(i & 63) }
        }
        var results: [[UInt64]: Int32] = [:]
        var row = [Int32](repeating: Self.dead, count: 256)
        for b in 0..<256 where patterns[b].contains(where: { $0 != 0 }) {
            if let t = results[patterns[b]] { row[b] = t; continue }
            var out: [Int32] = []
            var seen: [UInt64] = []
            for (i, s) in live.enumerated() where patterns[b][i >> 6] & (1 << UInt64(i & 63)) != 0 {
                expand(nodePos[Int(s)] + 1, parent: nodeParent[Int(s)], into: &out, seen: &seen)
            }
            let t = out.isEmpty ? Self.dead : intern(out)
            results[patterns[b]] = t
            row[b] = t
        }
        // After interning: `transitions` may have moved.
        row.withUnsafeBufferPointer { (transitions + Int(state) * 256).update(from: $0.baseAddress!, count: 256) }
        return row[Int(byte)]
    }

    private func intern(_ list: [Int32]) -> Int32 {
        var key = list
        if key.count > 1 {
            key.sort()
            var n = 1
            for i in 1..<key.count where key[i] != key[n - 1] {
                key[n] = key[i]
                n += 1
            }
            key.removeLast(key.count - n)
        }
        if let s = stateIndex[key] { return s }
        let s = Int32(stacks.count)
        stacks.append(key)
        stateIndex[key] = s
        if stacks.count > capacity {
            let grown = UnsafeMutablePointer<Int32>.allocate(capacity: capacity * 2 * 256)
            grown.update(from: transitions, count: capacity * 256)
            transitions.deallocate()
            transitions = grown
            capacity *= 2
        }
        (transitions + Int(s) * 256).initialize(repeating: Self.unknown, count: 256)
        return s
    }
}
