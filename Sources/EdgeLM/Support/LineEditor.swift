import Foundation

/// The editing state of one input line in a terminal, fed byte by byte (the bytes a terminal in raw mode sends):
/// insertion at the cursor, Left/Right, Home/End (also Ctrl-A/Ctrl-E), Backspace, Delete, Ctrl-K/Ctrl-U (cut to the
/// end / start), Ctrl-W (cut a word), Up/Down through the history of submitted lines. Ctrl-D on an empty line is the
/// end of input, Ctrl-C an interrupt. Characters are UTF-8, kept whole; the screen is redrawn by `render`.
package struct LineEditor {
    /// What a byte completed.
    package enum Event: Equatable {
        case submit(String)
        case endOfInput
        case interrupt
    }

    /// The line being edited.
    package private(set) var text: [Character] = []
    /// Characters before the cursor.
    package private(set) var cursor = 0
    /// Submitted lines, oldest first (blank lines and repeats of the last one are not kept).
    package private(set) var history: [String] = []
    private var browsing: Int?
    private var draft: [Character] = []
    private var escape: [UInt8]?
    private var utf8: [UInt8] = []
    /// The most lines kept in `history`.
    package static let historyLimit = 500

    package init() {}

    /// Takes one byte of input; returns the event it completes, if any.
    package mutating func feed(_ byte: UInt8) -> Event? {
        if var sequence = escape {
            sequence.append(byte)
            escape = sequence
            // ESC [ or ESC O, then parameters up to a final byte in 0x40...0x7E.
            if sequence.count == 1 { if byte != UInt8(ascii: "[") && byte != UInt8(ascii: "O") { escape = nil }; return nil }
            guard (0x40...0x7E).contains(byte) else { return nil }
            escape = nil
            apply(sequence)
            return nil
        }
        if !utf8.isEmpty || byte >= 0x80 {
            utf8.append(byte)
            let expected = utf8[0] >= 0xF0 ? 4 : utf8[0] >= 0xE0 ? 3 : utf8[0] >= 0xC0 ? 2 : 1
            guard utf8.count >= expected else { return nil }
            defer { utf8 = [] }
            guard let s = String(validating: utf8, as: UTF8.self) else { return nil }
            insert(s)
            return nil
        }
        switch byte {
        case 0x0D, 0x0A:
            let line = String(text)
            if !line.trimmingCharacters(in: .whitespaces).isEmpty, history.last != line {
                history.append(line)
                if history.count > Self.historyLimit { history.removeFirst() }
            }
            text = []
            cursor = 0
            browsing = nil
            return .submit(line)
        case 0x03: return .interrupt
        case 0x04:
            if text.isEmpty { return .endOfInput }
            delete(at: cursor)
        case 0x01: cursor = 0
        case 0x05: cursor = text.count
        case 0x02: cursor = max(0, cursor - 1)
        case 0x06: cursor = min(text.count, cursor + 1)
        case 0x7F, 0x08:
            if cursor > 0 { cursor -= 1; delete(at: cursor) }
        case 0x0B: text.removeSubrange(cursor...)
        case 0x15:
            text.removeSubrange(..<cursor)
            cursor = 0
        case 0x17:
            var start = cursor
            while start > 0, text[start - 1] == " " { start -= 1 }
            while start > 0, text[start - 1] != " " { start -= 1 }
            text.removeSubrange(start..<cursor)
            cursor = start
        case 0x1B: escape = []
        case 0x20...0x7E: insert(String(UnicodeScalar(byte)))
        default: break
        }
        return nil
    }

    /// What redraws the line after `prompt` at the start of the terminal row, leaving the cursor in place.
    package func render(prompt: String) -> String {
        let back = text.count - cursor
        return "\r" + prompt + String(text) + "\u{1B}[K" + (back > 0 ? "\u{1B}[\(back)D" : "")
    }

    private mutating func insert(_ s: String) {
        let chars = Array(s)
        text.insert(contentsOf: chars, at: cursor)
        cursor += chars.count
    }

    private mutating func delete(at i: Int) {
        if i < text.count { text.remove(at: i) }
    }

    /// A complete escape sequence (after ESC): cursor keys, Home/End, Delete.
    private mutating func apply(_ sequence: [UInt8]) {
        let body = String(decoding: sequence, as: UTF8.self)
        switch body {
        case "[D", "OD": cursor = max(0, cursor - 1)
        case "[C", "OC": cursor = min(text.count, cursor + 1)
        case "[H", "OH", "[1~", "[7~": cursor = 0
        case "[F", "OF", "[4~", "[8~": cursor = text.count
        case "[3~": delete(at: cursor)
        case "[A", "OA": recall(-1)
        case "[B", "OB": recall(1)
        default: break
        }
    }

    /// Moves through the history by `step` (-1 older, +1 newer); past the newest line comes back what was typed.
    private mutating func recall(_ step: Int) {
        guard !history.isEmpty else { return }
        let current = browsing ?? history.count
        let next = max(0, min(history.count, current + step))
        guard next != current else { return }
        if browsing == nil { draft = text }
        browsing = next == history.count ? nil : next
        text = next == history.count ? draft : Array(history[next])
        cursor = text.count
    }
}
