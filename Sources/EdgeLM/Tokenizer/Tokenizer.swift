/// SentencePiece-compatible BPE tokenizer over a model's vocabulary.
///
/// Encoding follows sentencepiece's BPE model: optional whitespace clean-up, spaces to U+2581, a dummy-prefix
/// U+2581, then repeatedly merging the adjacent pair whose concatenation is the highest-scoring vocabulary
/// piece (leftmost first on ties). Symbols left that are not pieces become `<0xXX>` byte tokens (or unk).
/// Control, unknown and byte pieces are never produced by merging, so "<s>" in text is ordinary text.
public struct Tokenizer: Sendable {
    /// The vocabulary data.
    public let data: TokenizerData
    private let pieceIDs: [String: Int]
    private let byteIDs: [Int?]  // [256]
    private let pieceBytes: [[UInt8]]  // decoded bytes of each id

    /// Builds lookup tables from `data`.
    public init(data: TokenizerData) throws(EdgeLMError) {
        guard data.kind == .sentencePieceBPE else {
            throw .invalidArgument("tokenizer kind \(data.kind.rawValue) is not supported by this build")
        }
        self.data = data
        var ids: [String: Int] = [:]
        var bytes = [Int?](repeating: nil, count: 256)
        var decoded: [[UInt8]] = []
        for (i, piece) in data.pieces.enumerated() {
            switch data.types[i] {
            case .normal, .userDefined:
                if ids[piece] == nil { ids[piece] = i }
                decoded.append(Array(piece.replacingOccurrences(of: "\u{2581}", with: " ").utf8))
            case .byte:
                let value = piece.isByteToken ? UInt8(String(piece.dropFirst(3).prefix(2)), radix: 16) : nil
                if let value {
                    if bytes[Int(value)] == nil { bytes[Int(value)] = i }
                    decoded.append([value])
                } else {
                    decoded.append([])
                }
            case .control, .unused:
                decoded.append([])
            case .unknown:
                decoded.append(Array(" \u{2047} ".utf8))
            }
        }
        pieceIDs = ids
        byteIDs = bytes
        pieceBytes = decoded
    }

    /// Vocabulary size.
    public var vocabSize: Int { data.pieces.count }
    /// Beginning-of-sequence id.
    public var bos: Int? { data.bos }
    /// End-of-sequence id.
    public var eos: Int? { data.eos }

    /// Encodes `text` (without BOS/EOS).
    public func encode(_ text: String) -> [Int] {
        var normalized = text
        if data.removeExtraWhitespaces {
            normalized = text.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        }
        guard !normalized.isEmpty else { return [] }
        let marker: Character = "\u{2581}"
        var chars: [String] = data.addDummyPrefix ? [String(marker)] : []
        chars.reserveCapacity(normalized.unicodeScalars.count + 1)
        for scalar in normalized.unicodeScalars { chars.append(scalar == " " ? String(marker) : String(scalar)) }
        return merge(chars)
    }

    /// Merges symbols with a priority queue of candidate pairs (score desc, position asc).
    private func merge(_ initial: [String]) -> [Int] {
        var text = initial
        let n = text.count
        var prev = Array(-1..<(n - 1)), next = Array(1...n)
        var alive = [Bool](repeating: true, count: n)
        var heap = PairHeap()
        func consider(_ left: Int, _ right: Int) {
            guard left >= 0, right < n else { return }
            let merged = text[left] + text[right]
            if let id = pieceIDs[merged] {
                heap.push(PairCandidate(score: data.scores[id], left: left, right: right, length: merged.utf8.count))
            }
        }
        for i in 0..<(n - 1) { consider(i, i + 1) }
        while let top = heap.pop() {
            let l = top.left, r = top.right
            guard alive[l], alive[r], next[l] == r, text[l].utf8.count + text[r].utf8.count == top.length else { continue }
            text[l] += text[r]
            alive[r] = false
            text[r] = ""
            next[l] = next[r]
            if next[r] < n { prev[next[r]] = l }
            consider(prev[l], l)
            consider(l, next[l])
        }
        var ids: [Int] = []
        var i = 0
        while i < n {
            let symbol = text[i]
            if let id = pieceIDs[symbol] {
                ids.append(id)
            } else if data.byteFallback, symbol.utf8.allSatisfy({ byteIDs[Int($0)] != nil }) {
                for byte in symbol.utf8 { ids.append(byteIDs[Int(byte)]!) }
            } else if let unk = data.unk {
                ids.append(unk)
            }
            i = next[i]
        }
        return ids
    }

    /// The bytes a token stands for (spaces for U+2581, the byte of a byte token, nothing for control tokens).
    public func bytes(of id: Int) -> [UInt8] {
        (0..<pieceBytes.count).contains(id) ? pieceBytes[id] : []
    }

    /// Decodes `ids` to text; the dummy-prefix space of the first token is removed, invalid UTF-8 becomes U+FFFD.
    public func decode(_ ids: [Int]) -> String {
        var decoder = StreamingDecoder(tokenizer: self)
        var s = ""
        for id in ids { s += decoder.append(id) }
        return s + decoder.flush()
    }
}

/// Turns a stream of token ids into text pieces that never split a UTF-8 character: bytes of an
/// incomplete character are held back until the character is complete.
public struct StreamingDecoder: Sendable {
    private let tokenizer: Tokenizer
    private var pending: [UInt8] = []
    private var atStart: Bool

    /// A decoder at the start of a sequence (whose first space is the dummy prefix) or in its middle.
    public init(tokenizer: Tokenizer, atSequenceStart: Bool = true) {
        self.tokenizer = tokenizer
        atStart = atSequenceStart
    }

    /// Adds a token; returns the text that became complete.
    public mutating func append(_ id: Int) -> String {
        var bytes = tokenizer.bytes(of: id)
        if atStart, !bytes.isEmpty {
            if tokenizer.data.addDummyPrefix, bytes.first == 0x20 { bytes.removeFirst() }
            atStart = false
        }
        pending += bytes
        let complete = Self.completePrefixLength(pending)
        let text = String(decoding: pending[0..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Returns whatever is held back (an incomplete character becomes U+FFFD).
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the prefix of `bytes` that does not end inside a possibly valid, incomplete character.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        var i = n - 1
        var continuation = 0
        while i >= 0, i >= n - 4, bytes[i] & 0xC0 == 0x80 {
            continuation += 1
            i -= 1
        }
        guard i >= 0, i >= n - 4 else { return n }
        let lead = bytes[i]
        let needed: Int
        if lead & 0xE0 == 0xC0 { needed = 1 } else if lead & 0xF0 == 0xE0 { needed = 2 } else if lead & 0xF8 == 0xF0 { needed = 3 } else { return n }
        return continuation < needed ? i : n
    }
}

/// A candidate merge of two adjacent symbols.
struct PairCandidate {
    let score: Float
    let left: Int
    let right: Int
    let length: Int

    /// True when `self` should merge before `other`.
    func precedes(_ other: PairCandidate) -> Bool {
        score != other.score ? score > other.score : left < other.left
    }
}

/// A binary max-heap of merge candidates.
struct PairHeap {
    private var items: [PairCandidate] = []

    mutating func push(_ c: PairCandidate) {
        items.append(c)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].precedes(items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> PairCandidate? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < items.count, items[l].precedes(items[best]) { best = l }
                if r < items.count, items[r].precedes(items[best]) { best = r }
                if best == i { break }
                items.swapAt(i, best)
                i = best
            }
        }
        return top
    }
}
