import Foundation

/// What generated text must match. Decoding masks, at every step, each token that cannot continue a valid
/// output, and stops when the output is complete.
public enum OutputConstraint: Sendable, Equatable {
    /// A JSON value valid against this JSON Schema (see `JSONSchemaCompiler` for the supported keywords; any
    /// other keyword is refused by name).
    case jsonSchema(JSONValue)
    /// Any JSON object (OpenAI's `response_format` `json_object`).
    case jsonObject
    /// A grammar in llama.cpp's GBNF notation, starting at `root`.
    case grammar(String)
    /// Text matching this regular expression as a whole.
    case regex(String)
    /// A JSON value valid against the schema between `prefix` and `suffix` (several such, separated by a newline,
    /// when `repeated`): tool calls such as `<tool_call>\n{...}\n</tool_call>`.
    case taggedJSON(JSONValue, prefix: String, suffix: String, repeated: Bool)

    /// The byte grammar of the constraint (errors name the offending keyword, rule or character).
    public func grammar() throws(EdgeLMError) -> Grammar {
        switch self {
        case let .jsonSchema(schema): return try JSONSchemaCompiler.compile(schema)
        case let .taggedJSON(schema, prefix, suffix, repeated):
            return try JSONSchemaCompiler.compile(schema, prefix: prefix, suffix: suffix, repeated: repeated)
        case .jsonObject: return try JSONSchemaCompiler.anyObject()
        case let .grammar(text): return try GBNFParser.parse(text)
        case let .regex(pattern):
            var b = GrammarBuilder()
            let body = try RegexCompiler.lower(pattern, fullMatch: true, into: &b) { (inner: inout GrammarBuilder, ranges) throws(EdgeLMError) in
                try inner.scalar(in: ranges)
            }
            let root = try b.add("root", [body])
            return try b.build(root: root)
        }
    }
}

/// A constraint compiled against one tokenizer: which tokens may come next (a mask over the vocabulary) and
/// the state after each token. Masks are computed by walking a trie of every token's bytes against the grammar
/// automaton, pruning a whole subtree at the first byte the grammar refuses, and cached per automaton state.
/// Safe to share between threads (one lock); each generation keeps its own `State`.
public final class TokenConstraint: @unchecked Sendable {
    /// Where a generation stands in the constraint.
    public struct State: Sendable, Equatable {
        fileprivate var automaton: Int32
        fileprivate var atStart: Bool
    }

    /// The tokens allowed at one step.
    public struct Mask: Sendable {
        /// Bit `i` set: token `i` may come next.
        public let bits: [UInt64]
        /// True when the output so far is complete, so an end-of-generation token may come next.
        public let allowsEnd: Bool

        /// True when `token` may come next.
        @inline(__always) public func allows(_ token: Int) -> Bool {
            token >= 0 && token >> 6 < bits.count && bits[token >> 6] & (1 << UInt64(token & 63)) != 0
        }

        /// How many tokens are allowed.
        public var count: Int { bits.reduce(0) { $0 + $1.nonzeroBitCount } }
    }

    private let lock = NSLock()
    private let automaton: GrammarAutomaton
    private let trie: TokenTrie
    private let tokenBytes: [[UInt8]]
    private let stripsLeadingSpace: Bool
    private var masks: [Int64: Mask] = [:]
    /// The most masks kept (a 262K vocabulary's mask is 32 KiB).
    private static let maxCachedMasks = 4096

    /// The state before any generated token; `atSequenceStart` as for `StreamingDecoder` (a SentencePiece
    /// vocabulary drops the first token's leading space there, and the constraint sees the text without it).
    public func initialState(atSequenceStart: Bool) -> State {
        lock.withLock { State(automaton: automaton.initial, atStart: atSequenceStart && stripsLeadingSpace) }
    }

    /// Compiles `constraint` for `tokenizer`'s vocabulary.
    public convenience init(_ constraint: OutputConstraint, tokenizer: Tokenizer) throws(EdgeLMError) {
        self.init(grammar: try constraint.grammar(), tokenizer: tokenizer)
    }

    /// Prepares `grammar` for `tokenizer`'s vocabulary.
    public init(grammar: Grammar, tokenizer: Tokenizer) {
        automaton = GrammarAutomaton(grammar: grammar)
        tokenBytes = (0..<tokenizer.vocabSize).map { id in
            tokenizer.data.types[id] == .control ? [] : tokenizer.bytes(of: id)
        }
        trie = TokenTrie.shared(for: tokenizer, bytes: tokenBytes)
        stripsLeadingSpace = tokenizer.stripsLeadingSpace
    }

    /// The tokens that may follow in `state`.
    public func mask(_ state: State) -> Mask {
        lock.withLock {
            let key = Int64(state.automaton) << 1 | (state.atStart ? 1 : 0)
            if let m = masks[key] { return m }
            let m = Mask(
                bits: trie.walk(from: state.automaton, automaton: automaton, skippingFirstSpace: state.atStart),
                allowsEnd: automaton.isAccepting(state.automaton))
            if masks.count >= Self.maxCachedMasks { masks.removeAll(keepingCapacity: true) }
            masks[key] = m
            return m
        }
    }

    private let prefetcher = DispatchQueue(label: "edgelm.constraint-mask")

    /// Starts computing the mask of `state` on a background thread, so that it is ready (or nearly) when the
    /// forward pass of the token that led there ends; `mask` waits for it through the lock.
    public func prefetch(_ state: State) {
        prefetcher.async { _ = self.mask(state) }
    }

    /// The one token that may come next in `state`, when the constraint leaves exactly one and the output may not
    /// end there (fast-forward: it needs no sample). Only a state with a single possible next byte can force a token,
    /// so other states are answered without computing their mask.
    public func forcedToken(_ state: State) -> Int? {
        let single = lock.withLock { !automaton.isAccepting(state.automaton) && automaton.nextBytes(state.automaton).count == 1 }
        guard single, !state.atStart else { return nil }
        let m = mask(state)
        guard let w = m.bits.firstIndex(where: { $0 != 0 }), m.bits[w].nonzeroBitCount == 1,
            m.bits[(w + 1)...].allSatisfy({ $0 == 0 })
        else { return nil }
        return w << 6 | m.bits[w].trailingZeroBitCount
    }

    /// The state after `token`, nil when the token may not come next.
    public func advance(_ state: State, token: Int) -> State? {
        guard tokenBytes.indices.contains(token) else { return nil }
        var bytes = tokenBytes[token]
        guard !bytes.isEmpty else { return nil }
        var atStart = state.atStart
        if atStart {
            if bytes.first == 0x20 { bytes.removeFirst() }
            atStart = false
        }
        return lock.withLock {
            let s = automaton.next(state.automaton, bytes: bytes)
            return s == GrammarAutomaton.dead ? nil : State(automaton: s, atStart: atStart)
        }
    }

    /// True when the output is complete and nothing may follow it.
    public func isComplete(_ state: State) -> Bool { lock.withLock { automaton.isComplete(state.automaton) } }

    /// True when `text` is a complete output (for tests and validation).
    public static func matches(_ grammar: Grammar, _ text: String) -> Bool {
        let a = GrammarAutomaton(grammar: grammar)
        let s = a.next(a.initial, bytes: Array(text.utf8))
        return s != GrammarAutomaton.dead && a.isAccepting(s)
    }
}

/// Every token's bytes in a trie laid out in depth-first order, so a node's subtree is the run of nodes up to
/// `subtreeEnd`: a mask is one forward scan that jumps over the subtree of every refused byte.
final class TokenTrie: Sendable {
    let byte: [UInt8]
    let depth: [Int32]
    let subtreeEnd: [Int32]
    /// Tokens ending at node i: `tokens[tokenStart[i]..<tokenStart[i + 1]]`.
    let tokenStart: [Int32]
    let tokens: [Int32]
    let vocabSize: Int
    let maxDepth: Int

    init(bytes: [[UInt8]]) {
        let order = bytes.indices.filter { !bytes[$0].isEmpty }.sorted { bytes[$0].lexicographicallyPrecedes(bytes[$1]) }
        var byte: [UInt8] = [0], depth: [Int32] = [0], ends: [[Int32]] = [[]]
        var path: [Int] = [0]  // node at each depth of the current path
        var previous: [UInt8] = []
        for id in order {
            let b = bytes[id]
            var common = 0
            while common < min(b.count, previous.count), b[common] == previous[common] { common += 1 }
            path.removeSubrange((common + 1)...)
            for d in common..<b.count {
                byte.append(b[d])
                depth.append(Int32(d + 1))
                ends.append([])
                path.append(byte.count - 1)
            }
            ends[path[b.count]].append(Int32(id))
            previous = b
        }
        var subtreeEnd = [Int32](repeating: Int32(byte.count), count: byte.count)
        var open: [Int] = []
        for i in byte.indices {
            while let last = open.last, depth[last] >= depth[i] { subtreeEnd[last] = Int32(i); open.removeLast() }
            open.append(i)
        }
        var tokenStart: [Int32] = [0]
        var tokens: [Int32] = []
        for e in ends { tokens += e; tokenStart.append(Int32(tokens.count)) }
        self.byte = byte
        self.depth = depth
        self.subtreeEnd = subtreeEnd
        self.tokenStart = tokenStart
        self.tokens = tokens
        vocabSize = bytes.count
        maxDepth = Int(depth.max() ?? 0)
    }

    /// The trie of a vocabulary, built once per tokenizer.
    static func shared(for tokenizer: Tokenizer, bytes: [[UInt8]]) -> TokenTrie {
        tokenizer.derived.lock.withLock {
            if let t = tokenizer.derived.trie { return t }
            let t = TokenTrie(bytes: bytes)
            tokenizer.derived.trie = t
            return t
        }
    }

    /// The mask of tokens whose bytes the automaton accepts from `start` (with the first space of a token
    /// skipped when `skippingFirstSpace`).
    func walk(from start: Int32, automaton: GrammarAutomaton, skippingFirstSpace: Bool) -> [UInt64] {
        var bits = [UInt64](repeating: 0, count: (vocabSize + 63) / 64)
        var states = [Int32](repeating: 0, count: maxDepth + 1)
        let n = byte.count
        bits.withUnsafeMutableBufferPointer { bits in
            states.withUnsafeMutableBufferPointer { states in
                byte.withUnsafeBufferPointer { byte in
                    depth.withUnsafeBufferPointer { depth in
                        subtreeEnd.withUnsafeBufferPointer { subtreeEnd in
                            tokenStart.withUnsafeBufferPointer { tokenStart in
                                tokens.withUnsafeBufferPointer { tokens in
                                    states[0] = start
                                    // The transition table, read directly; computing a missing entry may move it.
                                    var table = automaton.transitions
                                    var i = 1
                                    while i < n {
                                        let d = Int(depth[i])
                                        let parent = states[d - 1], b = byte[i]
                                        var t: Int32
                                        if skippingFirstSpace, d == 1, b == 0x20 {
                                            t = parent
                                        } else {
                                            t = table[Int(parent) &* 256 &+ Int(b)]
                                            if t == GrammarAutomaton.unknown {
                                                t = automaton.next(parent, b)
                                                table = automaton.transitions
                                            }
                                        }
                                        if t < 0 {
                                            i = Int(subtreeEnd[i])
                                            continue
                                        }
                                        states[d] = t
                                        var k = Int(tokenStart[i])
                                        let end = Int(tokenStart[i + 1])
                                        while k < end {
                                            let id = Int(tokens[k])
                                            bits[id >> 6] |= 1 << UInt64(id & 63)
                                            k += 1
                                        }
                                        i += 1
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return bits
    }
}

/// Lazily built, per-vocabulary structures a `Tokenizer` carries for constrained decoding.
final class TokenizerDerivedData: @unchecked Sendable {
    let lock = NSLock()
    var trie: TokenTrie?
}
