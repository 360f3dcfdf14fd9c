import EdgeLM
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads the chat's input lines: on a terminal with `LineEditor` (cursor keys, editing keys, history), otherwise
/// (a pipe, a file) plain lines.
final class LineReader {
    /// What the user gave.
    enum Input {
        case line(String)
        case end
        case interrupt
    }

    private var editor = LineEditor()
    private let interactive = isatty(0) == 1 && isatty(1) == 1

    /// The next line after showing `prompt`. The terminal is in raw mode only while the line is edited, so Ctrl-C
    /// during an answer is still a signal.
    func read(prompt: String) -> Input {
        var saved = termios()
        guard interactive, tcgetattr(0, &saved) == 0 else {
            FileHandle.standardOutput.write(Data(prompt.utf8))
            return readLine().map { .line($0) } ?? .end
        }
        var raw = saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG | IEXTEN)
        raw.c_iflag &= ~tcflag_t(IXON | ICRNL)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        // TCSANOW: lines typed ahead while an answer streamed stay in the input.
        tcsetattr(0, TCSANOW, &raw)
        defer { tcsetattr(0, TCSANOW, &saved) }
        let out = FileHandle.standardOutput
        out.write(Data(editor.render(prompt: prompt).utf8))
        while true {
            var byte: UInt8 = 0
            guard Foundation.read(0, &byte, 1) == 1 else { return .end }
            if let event = editor.feed(byte) {
                out.write(Data("\r\n".utf8))
                switch event {
                case .submit(let line): return .line(line)
                case .endOfInput: return .end
                case .interrupt: return .interrupt
                }
            }
            out.write(Data(editor.render(prompt: prompt).utf8))
        }
    }
}
