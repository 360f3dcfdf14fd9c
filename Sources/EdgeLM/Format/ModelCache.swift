import Foundation

/// A GGUF given where an EdgeLM file is expected (`generate`, `chat`, `serve`, `bench`, `perplexity`): it is
/// converted once with `--type keep` (every tensor in the scheme that holds it, no second rounding where one
/// exists) into a cache folder, and the cached file is used while the GGUF's path, size and modification
/// time are unchanged.
public enum ModelCache {
    /// `$EDGELM_CACHE`, else `$XDG_CACHE_HOME/edgelm`, else `~/.cache/edgelm`.
    public static var directory: String {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["EDGELM_CACHE"], !dir.isEmpty { return dir }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return xdg + "/edgelm" }
        return NSHomeDirectory() + "/.cache/edgelm"
    }

    /// The EdgeLM file to open for `path`: `path` itself unless it is a GGUF, else its cached conversion,
    /// made now when there is none for this size and modification time (older ones of the same GGUF are
    /// removed). `note` is told which it was.
    public static func resolve(_ path: String, note: (String) -> Void = { _ in }) throws(EdgeLMError) -> String {
        guard isGGUF(path) else { return path }
        let attributes: [FileAttributeKey: Any]
        do { attributes = try FileManager.default.attributesOfItem(atPath: path) } catch {
            throw .io(path: path, message: "cannot read its size and time: \(error)")
        }
        let size = (attributes[.size] as? Int) ?? 0
        let mtime = Int(((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0) * 1e6)
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let stem = ((absolute as NSString).lastPathComponent as NSString).deletingPathExtension
        let prefix = "\(stem)-\(String(fnv1a(absolute), radix: 16))-"
        let dir = directory
        let cached = "\(dir)/\(prefix)\(size)-\(mtime).edgelm"
        if FileManager.default.fileExists(atPath: cached) {
            note("using \(cached), converted from \(path) earlier")
            return cached
        }
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw .io(path: dir, message: "cannot create the model cache folder (set EDGELM_CACHE to another): \(error)")
        }
        for old in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where old.hasPrefix(prefix) && old.hasSuffix(".edgelm") {
            try? FileManager.default.removeItem(atPath: "\(dir)/\(old)")
        }
        note("converting \(path) once (--type keep) into \(cached)")
        let checkpoint = try Checkpoint.open(path: path, tokenizerPath: nil)
        var options = ConversionOptions(type: .f32, overwrite: true)
        options.keepSource = true
        let report = try Converter.convert(checkpoint, to: cached, options: options)
        note(String(format: "converted in %.2f s: %.3f bits/weight in attention+FFN matrices", report.seconds, report.matrixBitsPerWeight))
        return cached
    }

    /// True when the file at `path` starts with GGUF's magic bytes.
    static func isGGUF(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    /// 64-bit FNV-1a of a string's UTF-8 bytes (names the cache entry of a path).
    private static func fnv1a(_ s: String) -> UInt64 {
        s.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
}
