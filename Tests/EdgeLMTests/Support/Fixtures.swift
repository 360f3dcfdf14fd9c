import EdgeLM
import Foundation
import Testing

/// Locates `../shared` (or `$EDGELM_SHARED`) and the files in it. In CI (`CI=true`) a missing fixture is a
/// test failure, never a silent skip.
enum Fixtures {
    static let shared: String = {
        if let env = ProcessInfo.processInfo.environment["EDGELM_SHARED"], !env.isEmpty { return env }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return root.deletingLastPathComponent().appendingPathComponent("shared").path
    }()

    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// True under AddressSanitizer or ThreadSanitizer, whose shadow memory and quarantine make RSS meaningless.
    static var underSanitizer: Bool {
        let handle = dlopen(nil, RTLD_NOW)
        defer { if let handle { dlclose(handle) } }
        return dlsym(handle, "__asan_init") != nil || dlsym(handle, "__tsan_init") != nil
    }

    static func path(_ relative: String) -> String { shared + "/" + relative }

    /// True when the file exists; otherwise records a failure in CI.
    static func available(_ relative: String) -> Bool {
        let exists = FileManager.default.fileExists(atPath: path(relative))
        if !exists, isCI { Issue.record("fixture \(path(relative)) is missing (CI=true: real-model tests must not skip)") }
        return exists
    }

    static let stories = "models/stories260K/"
    static var storiesGGUF: String { path(stories + "stories260K.gguf") }
    static let tiny656k = "models/tinystories-656k"

    static func json(_ relative: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path(relative))))
    }
}

/// A scratch directory removed at deinit.
final class TemporaryDirectory: Sendable {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "edgelm-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Converted stories260K files shared by the tests of one process (conversion is deterministic).
enum ConvertedModels {
    nonisolated(unsafe) private static var cache: [String: String] = [:]
    private static let lock = NSLock()
    private static let directory = TemporaryDirectory()

    /// Path of stories260K converted with `options` (keyed by `key`).
    static func stories(_ key: String, _ options: ConversionOptions) throws -> String {
        try convert(Fixtures.storiesGGUF, key: "stories-" + key, options)
    }

    /// Path of TinyStories-656K converted with `options` (keyed by `key`).
    static func tiny656k(_ key: String, _ options: ConversionOptions) throws -> String {
        try convert(Fixtures.path(Fixtures.tiny656k), key: "656k-" + key, options)
    }

    static func convert(_ source: String, key: String, _ options: ConversionOptions) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let p = cache[key] { return p }
        let checkpoint = try Checkpoint.open(path: source, tokenizerPath: nil)
        let out = directory.file("\(key).edgelm")
        _ = try Converter.convert(checkpoint, to: out, options: options)
        cache[key] = out
        return out
    }
}

/// Deterministic pseudo-random numbers for tests.
struct TestRandom {
    var state: UInt64

    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        var z = state
        z = (z ^ (z >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        return z ^ (z >> 33)
    }

    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }

    /// Standard normal (Box-Muller).
    mutating func normal() -> Float {
        let u1 = max(uniform(), 1e-7), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }

    mutating func normals(_ n: Int, std: Float = 1) -> [Float] { (0..<n).map { _ in normal() * std } }
}
