import Testing
@testable import EdgeLM

/// The chat's line editor, fed the bytes a terminal in raw mode sends.
struct LineEditorTests {
    /// Feeds `input`; returns the events in order.
    static func type(_ input: String, into editor: inout LineEditor) -> [LineEditor.Event] {
        input.utf8.compactMap { editor.feed($0) }
    }

    @Test func editingKeysChangeTheLineWhereTheCursorIs() {
        var e = LineEditor()
        let left = "\u{1B}[D", right = "\u{1B}[C", home = "\u{1B}[H", end = "\u{1B}OF", delete = "\u{1B}[3~"
        #expect(Self.type("Helo" + left + "l" + "\r", into: &e) == [.submit("Hello")])
        #expect(Self.type("world" + home + "X" + end + "!" + "\r", into: &e) == [.submit("Xworld!")])
        #expect(Self.type("abc" + left + left + delete + right + "d\u{7F}e\n", into: &e) == [.submit("ace")])
        // Ctrl-A / Ctrl-E, Ctrl-K cuts to the end, Ctrl-U to the start, Ctrl-W a word; Ctrl-B / Ctrl-F move.
        #expect(Self.type("one two three\u{17}\u{17}four\r", into: &e) == [.submit("one four")])
        #expect(Self.type("abcdef\u{01}\u{06}\u{06}\u{0B}\u{05}X\u{02}\u{02}\u{15}\r", into: &e) == [.submit("bX")])
        // UTF-8 characters stay whole; Backspace removes one character, not one byte.
        #expect(Self.type("né€😀\u{7F}\u{7F}s\r", into: &e) == [.submit("nés")])
        #expect(e.text.isEmpty && e.cursor == 0)
        // Unknown escape sequences and control bytes are ignored, not inserted.
        #expect(Self.type("a\u{1B}[15~\u{1B}[1;5Cb\u{07}\r", into: &e) == [.submit("ab")])
    }

    @Test func historyRecallsEarlierLinesAndKeepsTheDraft() {
        var e = LineEditor()
        let up = "\u{1B}[A", down = "\u{1B}[B"
        _ = Self.type("first\rsecond\rsecond\r   \r", into: &e)
        #expect(e.history == ["first", "second"])
        #expect(Self.type("dra" + up + up + up + "!\r", into: &e) == [.submit("first!")])
        _ = Self.type("typed" + up, into: &e)
        #expect(String(e.text) == "first!")
        _ = Self.type(down, into: &e)
        #expect(String(e.text) == "typed" && e.cursor == 5)
        #expect(Self.type("\r", into: &e) == [.submit("typed")])
        #expect(e.render(prompt: "> ") == "\r> \u{1B}[K")
        _ = Self.type("abc\u{1B}[D\u{1B}[D", into: &e)
        #expect(e.render(prompt: "> ") == "\r> abc\u{1B}[K\u{1B}[2D")
    }

    @Test func controlKeysEndInput() {
        var e = LineEditor()
        #expect(Self.type("\u{04}", into: &e) == [.endOfInput])
        // Ctrl-D on a line deletes under the cursor instead.
        #expect(Self.type("ab\u{01}\u{04}\r", into: &e) == [.submit("b")])
        #expect(Self.type("x\u{03}", into: &e) == [.interrupt])
        for _ in 0..<(LineEditor.historyLimit + 10) { _ = e.feed(UInt8(ascii: "z")); _ = Self.type("\(e.history.count)\r", into: &e) }
        #expect(e.history.count == LineEditor.historyLimit)
    }
}
