import Foundation
import Testing
@testable import EdgeLM

/// KV cache types: drift of each type alone against an f32 cache, sizes, rewinding, and the CLI options.
@Suite struct KVCacheTests {
    typealias Model = PerplexityTests.Model

    var present: Bool {
        Fixtures.available("text/tinystories-dev.txt") && Fixtures.available(Fixtures.stories + "stories260K.gguf")
            && Fixtures.available(Fixtures.tiny656k + "/model.safetensors")
    }

    /// Mean KLD of the f32 model with `key`/`value` caches against the same model with an f32 cache,
    /// over 40 windows of 256 tokens of the dev text.
    func kvDrift(_ model: Model, key: KVCacheType, value: KVCacheType, smoothing: Bool = true) throws -> PerplexityReport.ReferenceComparison {
        let lm = try LanguageModel(
            path: try model.converted("f32", ConversionOptions(type: .f32)), keyType: key, valueType: value,
            keySmoothing: smoothing)
        return try PerplexityTests().compare(lm, with: model, windows: 40)
    }

    struct Limit: Sendable, CustomTestStringConvertible {
        let model: Model
        let key: KVCacheType
        let value: KVCacheType
        /// The ceiling, and the measured mean KLD with a margin (the evaluation is deterministic).
        let ceiling: Double
        let measured: Double
        var testDescription: String { "\(model) K \(key) V \(value)" }
    }

    static let limits: [Limit] = [
        Limit(model: .stories260K, key: .f16, value: .f16, ceiling: 5e-5, measured: 1.17e-6),
        Limit(model: .stories260K, key: .q8, value: .q8, ceiling: 5e-4, measured: 2.17e-4),
        Limit(model: .stories260K, key: .f32, value: .q8, ceiling: 5e-4, measured: 7.6e-6),
        Limit(model: .tinyStories656K, key: .f16, value: .f16, ceiling: 5e-5, measured: 3.0e-7),
        Limit(model: .tinyStories656K, key: .q8, value: .q8, ceiling: 5e-4, measured: 1.21e-4),
        Limit(model: .tinyStories656K, key: .f32, value: .q8, ceiling: 5e-4, measured: 2.63e-5),
    ]

    @Test(arguments: limits)
    func driftOfTheCacheTypeAlone(limit: Limit) throws {
        guard present else { return }
        let d = try kvDrift(limit.model, key: limit.key, value: limit.value)
        print("KV \(limit.testDescription): mean KLD \(d.kldMean.value), same top-1 \(d.sameTop1)")
        #expect(d.kldMean.value <= limit.ceiling)
        #expect(d.kldMean.value <= limit.measured * 1.25)
        #expect(d.kldMean.value > 0, "a quantized cache that changes nothing was not used")
    }

    /// Without the key offset and channel scales, q8 keys break the limit on stories260K.
    @Test func unsmoothedQ8KeysFailTheLimit() throws {
        guard present else { return }
        let d = try kvDrift(.stories260K, key: .q8, value: .q8, smoothing: false)
        #expect(d.kldMean.value > 1e-3, "mean KLD \(d.kldMean.value)")
    }

    @Test func cacheBytesFollowTheType() {
        let c = ModelConfig(
            dim: 2048, layers: 22, heads: 32, kvHeads: 4, ffnDim: 5632, vocabSize: 32000, contextLength: 2048,
            ropeLayout: .interleaved, normEpsilon: 1e-5, tiedOutput: false)
        #expect(KVCacheType.f32.bytes(c, positions: 2048) == 2 * 22 * 4 * 2048 * 64 * 4)
        #expect(KVCacheType.f16.bytes(c, positions: 2048) == 2 * 22 * 4 * 2048 * 64 * 2)
        #expect(KVCacheType.q8.bytes(c, positions: 2048) == 2 * 22 * 4 * 2048 * (64 + 2 * 2))
        // Heads shorter than 32 are padded to one block.
        let tiny = ModelConfig(
            dim: 64, layers: 5, heads: 8, kvHeads: 4, ffnDim: 172, vocabSize: 512, contextLength: 512,
            ropeLayout: .interleaved, normEpsilon: 1e-5, tiedOutput: false)
        #expect(KVCacheType.q8.bytes(tiny, positions: 512) == 2 * 5 * 4 * 512 * (32 + 2))
    }

    @Test func sessionSizesItsCacheByTypeAndContext() throws {
        guard Fixtures.available(Fixtures.stories + "stories260K.gguf") else { return }
        let path = try ConvertedModels.stories("q8", ConversionOptions(type: .q8))
        for (key, value) in [(KVCacheType.f32, KVCacheType.f32), (.f16, .q8), (.q8, .q8)] {
            let lm = try LanguageModel(path: path, keyType: key, valueType: value, contextLength: 100)
            #expect(lm.session.contextLength == 100)
            #expect(lm.session.kvCacheBytes == (key.bytes(lm.config, positions: 100) + value.bytes(lm.config, positions: 100)) / 2)
            #expect(lm.session.kvTypeName == (key == value ? key.rawValue : "\(key)/\(value)"))
            #expect(throws: EdgeLMError.invalidInput("101 tokens exceed the context length 100")) {
                try lm.session.forward([Int](repeating: 5, count: 101))
            }
        }
    }

    /// Rewinding keeps the prefix: continuing from it gives the same logits as the first time.
    @Test(arguments: [KVCacheType.f32, .q8])
    func rewindContinuesFromThePrefix(type: KVCacheType) throws {
        guard Fixtures.available(Fixtures.stories + "stories260K.gguf") else { return }
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), keyType: type, valueType: type)
        let tokens = lm.encode("Once upon a time there was a little girl who liked to play in the park with her dog")
        let session = lm.session
        session.reset()
        _ = try session.forward(Array(tokens[..<10]))
        let first = Array(try session.forward(Array(tokens[10...])))
        try session.rewind(to: 10)
        #expect(session.position == 10)
        let again = Array(try session.forward(Array(tokens[10...])))
        #expect(first == again)
        #expect(throws: EdgeLMError.self) { try session.rewind(to: session.position + 1) }
    }

    @Test func cliReportsTheCacheAndBenchesAtDepth() throws {
        guard Fixtures.available(Fixtures.stories + "stories260K.gguf") else { return }
        let m = try ConvertedModels.stories("q8", ConversionOptions(type: .q8))
        let b = try CLITests.sh("\"$EDGELM\" bench -m '\(m)' -p 8 -n 4 -r 1 --depth 100 --k-type f16 --json")
        let j = try JSONSerialization.jsonObject(with: Data(b.stdout.utf8)) as? [String: Any]
        #expect(((j?["results"] as? [[String: Any]]) ?? []).map { $0["test"] as? String } == ["pp8 @ d100", "tg4 @ d100"], "\(b.stderr)")
        #expect(j?["kv_type"] as? String == "f16/q8" && j?["depth"] as? Int == 100 && j?["context"] as? Int == 512)
        let deep = try CLITests.sh("\"$EDGELM\" bench -m '\(m)' -p 8 -n 4 -r 1 --depth 510")
        #expect(deep.status != 0 && deep.stderr.contains("needs 518 positions, more than the context of 512 (set --ctx 518)"), "\(deep.stderr)")
        let wide = try CLITests.sh("\"$EDGELM\" bench -m '\(m)' -p 8 -n 4 -r 1 --depth 510 --ctx 518 --json")
        #expect(wide.status == 0 && wide.stderr.contains("beyond the model's trained context of 512"), "\(wide.stderr)")
        let g = try CLITests.sh("\"$EDGELM\" generate -m '\(m)' -p 'Once' -n 4 --kv-type f16 --ctx 64")
        #expect(g.stderr.contains("KV cache f16, 64 positions"), "\(g.stderr)")
        let bad = try CLITests.sh("\"$EDGELM\" generate -m '\(m)' -p 'Once' -n 4 --kv-type q4")
        #expect(bad.status != 0 && bad.stderr.contains("q4"), "\(bad.stderr)")
        let zero = try CLITests.sh("\"$EDGELM\" generate -m '\(m)' -p 'Once' -n 4 --ctx 0")
        #expect(zero.status != 0 && zero.stderr.contains("--ctx 0: must be at least 1"), "\(zero.stderr)")
    }
}
