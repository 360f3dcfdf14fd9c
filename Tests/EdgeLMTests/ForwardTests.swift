import Foundation
import CEdgeKernels
import Testing
@testable import EdgeLM

/// The forward pass against the independent float64 reference in shared/fixtures/forward-stories260K.json.
@Suite struct ForwardTests {
    var fixturesPresent: Bool { Fixtures.available("fixtures/forward-stories260K.json") && Fixtures.available(Fixtures.stories + "stories260K.gguf") }

    func golden() throws -> GoldenForward { try GoldenForward("fixtures/forward-stories260K.json") }

    @Test func f32MatchesGoldenGreedyAndLogits() throws {
        guard fixturesPresent else { return }
        let g = try golden()
        let m = try g.measure(try ConvertedModels.stories("f32", ConversionOptions(type: .f32)))
        #expect(m.ids == g.greedy)
        print("stories260K f32: max relative logit error \(m.relativeError)")
        #expect(m.relativeError <= 1e-4, "max relative logit error \(m.relativeError)")
        #expect(m.logsumexpError <= 1e-4)
        #expect(m.top10Matches)
    }

    @Test func f16FileMatchesGoldenGreedy() throws {
        guard fixturesPresent else { return }
        let m = try golden().measure(try ConvertedModels.stories("f16", ConversionOptions(type: .f16)))
        #expect(m.agreement == 48)
        #expect(m.relativeError < 2e-3)
    }

    /// Quantized agreement with the float reference (logits compared on the golden sequence). Measured:
    /// q8 per-channel 48/48 tokens, max |Δlogit| 0.0196 of max |logit|; q4 g32 23/48 tokens, 0.203.
    @Test(arguments: [("q8", TensorScheme.q8, 48, Float(0.025)), ("q4", .q4, 20, Float(0.25))])
    func quantizedAgreement(key: String, scheme: TensorScheme, minAgreement: Int, maxError: Float) throws {
        guard fixturesPresent else { return }
        let m = try golden().measure(try ConvertedModels.stories(key, ConversionOptions(type: scheme)))
        print("\(key): greedy agreement \(m.agreement)/48, max relative logit error \(m.relativeError)")
        #expect(m.agreement >= minAgreement)
        #expect(m.relativeError <= maxError)
    }

    /// Token-at-a-time decoding, batched prompt processing and any thread count give the same logits.
    @Test(arguments: ["f32", "q8", "q4"])
    func incrementalEqualsBatched(key: String) throws {
        guard fixturesPresent else { return }
        let scheme = TensorScheme(rawValue: key)!
        let path = try ConvertedModels.stories(key, ConversionOptions(type: scheme))
        let tokens = [1, 403, 407, 261, 378, 432, 383, 286, 261]
        let batched = try LanguageModel(path: path, threads: 2, keyType: .f32, valueType: .f32)
        let all = Array(try batched.session.forward(tokens, logits: .all))
        let single = try LanguageModel(path: path, threads: 1, keyType: .f32, valueType: .f32)
        for (t, token) in tokens.enumerated() {
            let row = Array(try single.session.forward([token]))
            let ref = Array(all[(t * 512)..<((t + 1) * 512)])
            #expect(zip(row, ref).map { abs($0 - $1) }.max()! <= 1e-4, "token \(t)")
        }
    }

    @Test func rejectsBadRequests() throws {
        guard fixturesPresent else { return }
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 1, keyType: .f32, valueType: .f32)
        #expect(throws: EdgeLMError.self) { try lm.session.forward([]) }
        #expect(throws: EdgeLMError.self) { try lm.session.forward([512]) }
        let long = [Int](repeating: 1, count: 513)
        #expect { try lm.generate(promptTokens: long, parameters: .greedy(maxTokens: 1)) { _, _ in true } } throws: {
            ($0 as? EdgeLMError)?.description.contains("longer than the context of 512") ?? false
        }
        var bad = GenerateParameters.greedy(maxTokens: 4)
        bad.sampling.topP = 0
        #expect(throws: EdgeLMError.self) { try lm.generate(promptTokens: [1], parameters: bad) { _, _ in true } }
        #expect(throws: EdgeLMError.self) { try LanguageModel(path: "/nonexistent.edgelm", keyType: .f32, valueType: .f32) }
        #expect(throws: EdgeLMError.self) {
            try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 0, keyType: .f32, valueType: .f32)
        }
    }

    @Test func stopsAtContextAndAtZeroTokens() throws {
        guard fixturesPresent else { return }
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 1, keyType: .f32, valueType: .f32)
        let full = try lm.generate(promptTokens: [Int](repeating: 1, count: 510), parameters: .greedy(maxTokens: 10)) { _, _ in true }
        // 510 + 2 fill the cache; the third token is predicted from the full context, then there is no room.
        #expect(full.generatedTokens == 3 && full.stopReason == .contextFull)
        let none = try lm.generate(promptTokens: [1, 403], parameters: .greedy(maxTokens: 0)) { _, _ in true }
        #expect(none.generatedTokens == 0 && none.stopReason == .maxTokens)
    }

    @Test func asyncStreamYieldsTextThenInfoAndStopsOnCancel() async throws {
        guard fixturesPresent else { return }
        let lm = try LanguageModel(path: try ConvertedModels.stories("f32", ConversionOptions(type: .f32)), threads: 1, keyType: .f32, valueType: .f32)
        var text = ""
        var info: GenerationInfo?
        for try await event in lm.generate(prompt: "Once upon a time", parameters: .greedy(maxTokens: 48)) {
            switch event {
            case let .text(piece): text += piece
            case let .info(i): info = i
            }
        }
        let g = try golden()
        #expect("Once upon a time" + text == g.text)
        #expect(info?.tokens == g.greedy)
        // Breaking out of the loop cancels generation.
        var pieces = 0
        for try await event in lm.generate(prompt: "Once", parameters: .greedy(maxTokens: 400)) {
            if case .text = event { pieces += 1 }
            if pieces == 3 { break }
        }
        let after = try lm.generate(promptTokens: [1], parameters: .greedy(maxTokens: 1)) { _, _ in true }
        #expect(after.generatedTokens == 1)
    }

    /// Generating 64 tokens from a raw q8 file grows anonymous memory by no more than the session's
    /// buffers (KV cache and scratch), the packed copies of the matrices (whose mapped pages are released) plus
    /// 4 MiB; without packing, the weights stay file-backed.
    @Test(arguments: [true, false])
    func memoryStaysFileBackedOrPacked(pack: Bool) throws {
        guard fixturesPresent, !Fixtures.underSanitizer, let before = MemoryUsage.current() else { return }
        let path = try ConvertedModels.stories("q8", ConversionOptions(type: .q8))
        let model = try TransformerModel(path: path, level: .detected, pack: pack)
        let session = try InferenceSession(model: model, threads: 2, keyType: .f32, valueType: .f32)
        _ = try session.forward([1, 403, 407])
        for token in 0..<64 { _ = try session.forward([token + 300]) }
        let after = MemoryUsage.current()!
        #expect(model.decodedBytes == 0)
        #expect(model.packedBytes == (pack ? packedSize(model) : 0))
        #expect(!pack || KernelLevel.detected != .avx512vnni || model.packedBytes > 0)
        #expect(after.anonymousBytes - before.anonymousBytes <= session.allocatedBytes + model.packedBytes + 4 << 20)
    }

    /// `EDGELM_PACK`: unset, empty or 1 packs, 0 keeps the mapped layout, anything else is refused by name.
    @Test func packingSettingIsHonouredOrRefused() throws {
        #expect(try TransformerModel.packingSelected(environment: [:]))
        #expect(try TransformerModel.packingSelected(environment: ["EDGELM_PACK": "1"]))
        #expect(try !TransformerModel.packingSelected(environment: ["EDGELM_PACK": "0"]))
        #expect(throws: EdgeLMError.invalidArgument("EDGELM_PACK: expected 0 or 1, got 'yes'")) {
            try TransformerModel.packingSelected(environment: ["EDGELM_PACK": "yes"])
        }
    }

    /// What the packed copies of every product's matrix take at `level` (the untied embedding table is not one).
    private func packedSize(_ model: TransformerModel, level: KernelLevel = .detected) -> Int {
        let layers = model.layers.flatMap { [$0.wq, $0.wk, $0.wv, $0.wo, $0.gate, $0.up, $0.down] }
        return (layers + [model.output]).reduce(0) { $0 + ($1.packedByteCount(for: level) ?? 0) }
    }

    /// Packed matrices compute what the row-major ones do, for q8 per channel, q4 per group of 32 and of 64, and q4o, at
    /// every x86 level that packs them (AVX-512 VNNI, AVX-VNNI, AVX2's q4), and the packed model decodes token by token
    /// what it computes in a prompt batch.
    /// Each matrix agrees to float rounding (the C kernel test checks that bit for bit against a scalar reference);
    /// through the model a one-ulp difference can move an activation across a rounding boundary of its int8 code
    /// (the q4 g64 file's fifth token: 0.13 of 19.5), so the whole model is held to 2% of the largest logit and the
    /// same greedy token at every position.
    @Test(arguments: [
        ("q8", ConversionOptions(type: .q8)), ("q4", ConversionOptions(type: .q4)), ("q4g64", ConversionOptions(type: .q4, groupSize: 64)),
        ("q4o", ConversionOptions(type: .q4o)),
    ])
    func packedMatricesComputeWhatRowMajorOnesDo(key: String, options: ConversionOptions) throws {
        guard fixturesPresent else { return }
        let path = try ConvertedModels.stories(key, options)
        for level in KernelLevel.supported where level.rawValue > KernelLevel.generic.rawValue {
            try expectPackedMatchesRowMajor(path: path, key: "\(key) at \(level)", level: level)
        }
    }

    private func expectPackedMatchesRowMajor(path: String, key: String, level: KernelLevel) throws {
        let vocab = 512, tokens = [1, 403, 407, 261, 378, 432, 383, 286, 261]
        let packedModel = try TransformerModel(path: path, level: level, pack: true)
        #expect(packedModel.packedBytes == packedSize(packedModel, level: level), "\(key)")
        guard packedModel.packedBytes > 0 else { return }  // the level keeps these rows row-major
        let rowMajorModel = try TransformerModel(path: path, level: level, pack: false)
        #expect(rowMajorModel.packedBytes == 0, "\(key)")
        var logits: [[Float]] = []
        for model in [packedModel, rowMajorModel] {
            let session = try InferenceSession(model: model, threads: 2, level: level, keyType: .f32, valueType: .f32)
            logits.append(Array(try session.forward(tokens, logits: .all)))
        }
        let single = try InferenceSession(model: packedModel, threads: 1, level: level, keyType: .f32, valueType: .f32)
        for (t, token) in tokens.enumerated() {
            let row = Array(try single.forward([token])), batched = Array(logits[0][(t * vocab)..<((t + 1) * vocab)])
            #expect(zip(row, batched).map { abs($0 - $1) }.max()! <= 1e-4, "\(key) token \(t)")
        }
        let scale = logits[1].map(abs).max()!
        for t in tokens.indices {
            let packed = logits[0][(t * vocab)..<((t + 1) * vocab)], rowMajor = logits[1][(t * vocab)..<((t + 1) * vocab)]
            let difference = zip(packed, rowMajor).map { abs($0 - $1) }.max()!
            #expect(difference <= 0.02 * scale, "\(key) token \(t): max |Δlogit| \(difference) of \(scale)")
            #expect(packed.firstIndex(of: packed.max()!) == rowMajor.firstIndex(of: rowMajor.max()!), "\(key) token \(t)")
        }
    }
}
