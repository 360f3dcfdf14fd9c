import Foundation

/// BPE tokenizer over a model's vocabulary, compatible with sentencepiece (score-ordered merges) and with
/// Hugging Face `tokenizers` (rank-ordered merge lists, with SentencePiece-style or byte-level input).
///
/// Encoding: optional special-token matching, then normalisation (SentencePiece: optional whitespace
/// clean-up, spaces to U+2581, a dummy-prefix U+2581; byte-level: a regex split and the GPT-2 byte-to-unicode
/// mapping), then repeatedly merging the best adjacent pair (highest piece score, or lowest merge rank;
/// leftmost on ties). Symbols that are not pieces become `<0xXX>` byte tokens, or unk (fused when asked).
public struct Tokenizer: Sendable {
    /// The vocabulary data.
    public let data: TokenizerData
    private let pieceIDs: [String: Int]
    private let mergeRanks: [String: Int]  // "left right" -> rank (merges-BPE)
    private let byteIDs: [Int?]  // [256]
    private let pieceBytes: [[UInt8]]  // decoded bytes of each id
    private let specialTokens: [(text: String, id: Int)]
    private let splitter: ByteLevelSplitter?
    /// Structures derived from the vocabulary on first use (shared by copies of this tokenizer).
    let derived = TokenizerDerivedData()

    /// Builds lookup tables from `data`.
    public init(data: TokenizerData) throws(EdgeLMError) {
        self.data = data
        let byteLevel = data.preTokenizer != nil
        var ids: [String: Int] = [:]
        var bytes = [Int?](repeating: nil, count: 256)
        var decoded: [[UInt8]] = []
        var specials: [(String, Int)] = []
        for (i, piece) in data.pieces.enumerated() {
            switch data.types[i] {
            case .normal, .userDefined:
                if ids[piece] == nil { ids[piece] = i }
                decoded.append(byteLevel ? ByteLevelSplitter.bytes(of: piece) : Array(piece.replacingOccurrences(of: "\u{2581}", with: " ").utf8))
            case .byte:
                if let value = piece.byteTokenValue {
                    if bytes[Int(value)] == nil { bytes[Int(value)] = i }
                    decoded.append([value])
                } else {
                    decoded.append([])
                }
            case .control, .unused:
                if data.types[i] == .control, !piece.isEmpty { specials.append((piece, i)) }
                // Hugging Face tokenizers render special tokens as their text; SentencePiece renders nothing.
                decoded.append(data.types[i] == .control && data.matchesSpecialTokens == true ? Array(piece.utf8) : [])
            case .unknown:
                if data.kind == .mergesBPE { ids[piece] = ids[piece] ?? i }
                decoded.append(Array(" \u{2047} ".utf8))
            }
        }
        var ranks: [String: Int] = [:]
        if data.kind == .mergesBPE {
            for (rank, merge) in (data.merges ?? []).enumerated() where ranks[merge] == nil { ranks[merge] = rank }
        }
        pieceIDs = ids
        mergeRanks = ranks
        byteIDs = bytes
        pieceBytes = decoded
        specialTokens = data.matchesSpecialTokens == true ? specials.sorted { $0.0.utf8.count > $1.0.utf8.count } : []
        splitter = try data.preTokenizer.map { (p) throws(EdgeLMError) in try ByteLevelSplitter(p) }
    }

    /// Vocabulary size.
    public var vocabSize: Int { data.pieces.count }
    /// Beginning-of-sequence id.
    public var bos: Int? { data.bos }
    /// End-of-sequence id.
    public var eos: Int? { data.eos }

    /// Encodes `text` (without BOS/EOS).
    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        for segment in splitSpecialTokens(text) {
            switch segment {
            case let .special(id): ids.append(id)
            case let .text(t): ids += encodeSegment(t)
            }
        }
        return ids
    }

    private enum Segment {
        case text(String)
        case special(Int)
    }

    /// Splits out literal special tokens (only when the vocabulary asks for it).
    private func splitSpecialTokens(_ text: String) -> [Segment] {
        guard !specialTokens.isEmpty else { return [.text(text)] }
        var segments: [Segment] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            var earliest: (range: Range<Substring.Index>, id: Int)?
            for (token, id) in specialTokens {
                if let r = rest.range(of: token), r.lowerBound < (earliest?.range.lowerBound ?? rest.endIndex) { earliest = (r, id) }
            }
            guard let found = earliest else {
                segments.append(.text(String(rest)))
                break
            }
            if found.range.lowerBound > rest.startIndex { segments.append(.text(String(rest[..<found.range.lowerBound]))) }
            segments.append(.special(found.id))
            rest = rest[found.range.upperBound...]
        }
        return segments
    }

    private func encodeSegment(_ text: String) -> [Int] {
        if let splitter {
            return splitter.words(text).flatMap { merge($0.map { String($0) }) }
        }
        var normalized = text
        if data.removeExtraWhitespaces {
            normalized = text.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        }
        guard !normalized.isEmpty else { return [] }
        let marker = "\u{2581}"
        var chars: [String] = data.addDummyPrefix ? [marker] : []
        chars.reserveCapacity(normalized.unicodeScalars.count + 1)
        for scalar in normalized.unicodeScalars { chars.append(scalar == " " ? marker : String(scalar)) }
        return merge(chars)
    }

    /// Priority of merging `left` and `right` (higher first), or nil when they do not merge.
    private func priority(_ left: String, _ right: String) -> Float? {
        if data.kind == .mergesBPE {
            guard let rank = mergeRanks[left + " " + right], pieceIDs[left + right] != nil else { return nil }
            return -Float(rank)
        }
        guard let id = pieceIDs[left + right] else { return nil }
        return data.scores[id]
    }

    /// Merges symbols with a priority queue of candidate pairs (priority desc, position asc).
    private func merge(_ initial: [String]) -> [Int] {
        var text = initial
        let n = text.count
        guard n > 0 else { return [] }
        var prev = Array(-1..<(n - 1)), next = Array(1...n)
        var alive = [Bool](repeating: true, count: n)
        var heap = PairHeap()
        func consider(_ left: Int, _ right: Int) {
            guard left >= 0, right < n, let p = priority(text[left], text[right]) else { return }
            heap.push(PairCandidate(score: p, left: left, right: right, length: text[left].utf8.count + text[right].utf8.count))
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
        var previousWasUnknown = false
        var i = 0
        while i < n {
            let symbol = text[i]
            if let id = pieceIDs[symbol] {
                ids.append(id)
                previousWasUnknown = false
            } else if data.byteFallback, symbol.utf8.allSatisfy({ byteIDs[Int($0)] != nil }) {
                for byte in symbol.utf8 { ids.append(byteIDs[Int(byte)]!) }
                previousWasUnknown = false
            } else if let unk = data.unk {
                if !(previousWasUnknown && data.fuseUnknown == true) { ids.append(unk) }
                previousWasUnknown = true
            }
            i = next[i]
        }
        return ids
    }

    /// The bytes a token stands for (spaces for U+2581, the byte of a byte token, nothing for control tokens).
    public func bytes(of id: Int) -> [UInt8] {
        (0..<pieceBytes.count).contains(id) ? pieceBytes[id] : []
    }

    /// True when decoding drops one leading space of a sequence (the SentencePiece dummy prefix).
    var stripsLeadingSpace: Bool { data.preTokenizer == nil && data.addDummyPrefix }

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
            if tokenizer.stripsLeadingSpace, bytes.first == 0x20 { bytes.removeFirst() }
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

/// GPT-2 style byte-level pre-tokenization: regex split, then bytes mapped to printable characters.
struct ByteLevelSplitter: @unchecked Sendable {
    private let regex: NSRegularExpression
    private let isolate: NSRegularExpression?
    private let addPrefixSpace: Bool

    init(_ p: PreTokenizer) throws(EdgeLMError) {
        func compile(_ pattern: String) throws(EdgeLMError) -> NSRegularExpression {
            do { return try NSRegularExpression(pattern: pattern) } catch {
                throw .invalidField(path: "tokenizer", field: "pre-tokenizer pattern", message: "not a valid regular expression: \(pattern)")
            }
        }
        regex = try compile(p.pattern)
        isolate = try p.isolate.map { (s) throws(EdgeLMError) in try compile(s) }
        addPrefixSpace = p.addPrefixSpace
    }

    /// The GPT-2 table: printable bytes map to themselves, the rest to U+0100 onwards.
    static let byteToChar: [Character] = {
        var table = [Character](repeating: " ", count: 256)
        var extra = 0
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            table[b] = Character(Unicode.Scalar(UInt32(printable ? b : 256 + extra))!)
            if !printable { extra += 1 }
        }
        return table
    }()

    static let charToByte: [Character: UInt8] = {
        var map: [Character: UInt8] = [:]
        for (b, c) in byteToChar.enumerated() { map[c] = UInt8(b) }
        return map
    }()

    /// The bytes a byte-level piece stands for.
    static func bytes(of piece: String) -> [UInt8] { piece.compactMap { charToByte[$0] } }

    /// Splits `text` into words, each as its byte-mapped characters.
    func words(_ text: String) -> [[Character]] {
        let input = addPrefixSpace && !text.hasPrefix(" ") ? " " + text : text
        let ns = input as NSString
        // (range, true when an isolated match that is a word as it is)
        var pieces: [(NSRange, Bool)] = []
        if let isolate {
            var at = 0
            for m in isolate.matches(in: input, range: NSRange(location: 0, length: ns.length)) where m.range.length > 0 {
                if m.range.location > at { pieces.append((NSRange(location: at, length: m.range.location - at), false)) }
                pieces.append((m.range, true))
                at = m.range.location + m.range.length
            }
            if at < ns.length { pieces.append((NSRange(location: at, length: ns.length - at), false)) }
        } else {
            pieces = [(NSRange(location: 0, length: ns.length), false)]
        }
        let words = pieces.flatMap { piece, isolated in isolated ? [piece] : regex.matches(in: input, range: piece).map(\.range) }
        return words.map { ns.substring(with: $0).utf8.map { Self.byteToChar[Int($0)] } }
    }
}
