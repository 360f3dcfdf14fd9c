import EdgeLM
import Foundation

/// Writing to stderr, with a single-line progress bar when stderr is a terminal.
enum Terminal {
    static var isTTY: Bool { isatty(2) == 1 }

    /// Writes `s` to stderr without a newline.
    static func write(_ s: String) {
        var bytes = Array(s.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Foundation.write(2, $0.baseAddress! + done, $0.count - done) }
            if n <= 0 { return }
            done += n
        }
    }

    /// Writes a line to stderr.
    static func error(_ s: String) { write(s + "\n") }

    /// Redraws a progress bar in place.
    static func progress(_ done: Int, _ total: Int, _ label: String) {
        let width = 30
        let filled = total > 0 ? done * width / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        write("\r[\(bar)] \(done)/\(total) \(label.padding(toLength: 28))" + (done == total ? "\n" : ""))
    }

    /// Removes in-progress output files when the user interrupts.
    static func installInterruptCleanup() {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig) { s in
                TemporaryFiles.shared.removeAll()
                signal(s, SIG_DFL)
                raise(s)
            }
        }
    }
}

extension String {
    func padding(toLength n: Int) -> String {
        count >= n ? String(prefix(n)) : self + String(repeating: " ", count: n - count)
    }
}

/// The text of the file at `path` (`what` names it in errors: "the prompt file"); unreadable or not UTF-8 is an error.
func readText(_ path: String, what: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else { throw EdgeLMError.io(path: path, message: "cannot read \(what)") }
    guard let text = String(validating: data, as: UTF8.self) else { throw EdgeLMError.invalidInput("\(path): \(what) is not valid UTF-8") }
    return text
}

func format(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }

func formatBytes(_ n: Int) -> String {
    let d = Double(n)
    if n >= 1 << 30 { return format(d / Double(1 << 30), 2) + " GiB" }
    if n >= 1 << 20 { return format(d / Double(1 << 20), 2) + " MiB" }
    if n >= 1 << 10 { return format(d / Double(1 << 10), 1) + " KiB" }
    return "\(n) B"
}
