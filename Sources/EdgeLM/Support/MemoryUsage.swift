import Foundation

/// Resident memory of this process, split into anonymous (heap, KV cache, decoded weights) and
/// file-backed (memory-mapped weights) pages. Read from `/proc/self/status` on Linux; nil elsewhere.
public struct MemoryUsage: Sendable, Equatable {
    /// Resident anonymous bytes (RssAnon).
    public let anonymousBytes: Int
    /// Resident file-backed bytes (RssFile + RssShmem).
    public let fileBackedBytes: Int

    /// The most memory EdgeLM lets one file or session claim: 80% of physical memory. Decoded zstd
    /// payloads and session buffers above it are rejected before anything is allocated.
    public static var budgetBytes: Int { Int(Double(ProcessInfo.processInfo.physicalMemory) * 0.8) }

    /// The current usage, or nil where `/proc/self/status` is unavailable.
    public static func current() -> MemoryUsage? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        var fields: [String: Int] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("Rss") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " || $0 == "\t" })
            if parts.count >= 2, let kb = Int(parts[1]) { fields[String(parts[0])] = kb * 1024 }
        }
        guard let anon = fields["RssAnon"] else { return nil }
        return MemoryUsage(anonymousBytes: anon, fileBackedBytes: (fields["RssFile"] ?? 0) + (fields["RssShmem"] ?? 0))
    }
}
