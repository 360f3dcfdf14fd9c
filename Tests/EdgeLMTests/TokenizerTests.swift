import Foundation
import Testing
@testable import EdgeLM

@Suite struct TokenizerTests {
    struct Case {
        let text: String
        let ids: [Int]
        let llamacpp: [Int]?
        let decoded: String
    }

    func cases() throws -> [Case] {
        let list = try Fixtures.json("fixtures/tokenizer-stories260K.json") as! [[String: Any]]
        return list.dropFirst().map {
            Case(text: $0["text"] as! String, ids: $0["ids"] as! [Int], llamacpp: $0["ids_llamacpp"] as? [Int], decoded: $0["decoded"] as! String)
        }
    }

    func storiesTokenizer(collapseSpaces: Bool) throws -> Tokenizer {
        var data = try Checkpoint.open(path: Fixtures.storiesGGUF, tokenizerPath: nil).tokenizer
        data.removeExtraWhitespaces = collapseSpaces
        return try Tokenizer(data: data)
    }

    /// With the GGUF's settings (as llama.cpp: no whitespace collapsing) ids match llama.cpp where the
    /// fixture records its ids, and sentencepiece everywhere else.
    @Test func matchesFixtureWithGGUFSettings() throws {
        guard Fixtures.available("fixtures/tokenizer-stories260K.json"), Fixtures.available(Fixtures.stories + "stories260K.gguf") else { return }
        let tok = try storiesTokenizer(collapseSpaces: false)
        let all = try cases()
        #expect(all.count == 28)
        for c in all { #expect(tok.encode(c.text) == (c.llamacpp ?? c.ids), "\(c.text.debugDescription)") }
    }

    /// With sentencepiece's remove_extra_whitespaces (tok512.model's setting) ids match sentencepiece exactly.
    @Test func matchesSentencePieceWithWhitespaceCollapsing() throws {
        guard Fixtures.available("fixtures/tokenizer-stories260K.json"), Fixtures.available(Fixtures.stories + "stories260K.gguf") else { return }
        let tok = try storiesTokenizer(collapseSpaces: true)
        for c in try cases() {
            #expect(tok.encode(c.text) == c.ids, "\(c.text.debugDescription)")
            #expect(tok.decode(c.ids) == c.decoded, "\(c.text.debugDescription)")
        }
    }

    /// Streaming never emits half a character: feeding the byte tokens of multi-byte characters one at a time.
    @Test func streamingDecodeHoldsIncompleteCharacters() throws {
        guard Fixtures.available(Fixtures.stories + "stories260K.gguf") else { return }
        let tok = try storiesTokenizer(collapseSpaces: true)
        for text in ["🙂", "你好", "naïve café", "Ünïcödé ß ø"] {
            var decoder = StreamingDecoder(tokenizer: tok)
            var pieces: [String] = []
            for id in tok.encode(text) { pieces.append(decoder.append(id)) }
            pieces.append(decoder.flush())
            #expect(pieces.joined() == text)
            #expect(!pieces.joined().contains("\u{FFFD}"))
        }
        // The 4 byte tokens of 🙂 (after the ▁): nothing until the last byte.
        var decoder = StreamingDecoder(tokenizer: tok, atSequenceStart: false)
        #expect([243, 162, 156].map { decoder.append($0) } == ["", "", ""])
        #expect(decoder.append(133) == "🙂")
        // An invalid sequence is replaced, not held forever.
        #expect(decoder.append(243) == "")
        #expect(decoder.append(261) == "\u{FFFD} a")
    }

    @Test func completePrefixLength() {
        #expect(StreamingDecoder.completePrefixLength([0x61, 0xF0, 0x9F]) == 1)
        #expect(StreamingDecoder.completePrefixLength([0xF0, 0x9F, 0x99, 0x82]) == 4)
        #expect(StreamingDecoder.completePrefixLength([0xC3]) == 0)
        #expect(StreamingDecoder.completePrefixLength([0x80, 0x80]) == 2)
        #expect(StreamingDecoder.completePrefixLength([]) == 0)
    }

    @Test func wholeTextMatchesPerplexityFixtureTokens() throws {
        guard Fixtures.available("fixtures/perplexity-stories260K.json"), Fixtures.available("text/tinystories-dev.txt"),
            Fixtures.available(Fixtures.stories + "stories260K.gguf")
        else { return }
        let fixture = try Fixtures.json("fixtures/perplexity-stories260K.json") as! [String: Any]
        let scored = fixture["scored_text_token_ids"] as! [Int]
        let text = try String(contentsOfFile: Fixtures.path("text/tinystories-dev.txt"), encoding: .utf8)
        let ids = try storiesTokenizer(collapseSpaces: true).encode(text)
        #expect(ids.count == 234_791)
        #expect(Array(ids.prefix(255)) == Array(scored.prefix(255)))
        let windows = scored.count / 255
        for w in 0..<windows { #expect(Array(ids[(255 * w)..<(255 * w + 255)]) == Array(scored[(255 * w)..<(255 * w + 255)]), "window \(w)") }
    }
}
