import Foundation
import Testing
@testable import EdgeLM

@Suite struct SpeculationTests {
    /// A prompt whose continuation repeats it (stories260K continues a repeated story by repeating it), so that prompt
    /// lookup has matches to draft from.
    static let repetitive = String(repeating: "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ", count: 3)

    func generate(
        _ lm: LanguageModel, _ prompt: String, tokens: Int, speculation: SpeculationParameters?,
        sampling: SamplingParameters? = nil
    ) throws -> GenerationInfo {
        var p = GenerateParameters.greedy(maxTokens: tokens)
        if let sampling { p.sampling = sampling }
        p.stopAtEOS = false
        p.speculation = speculation
        lm.session.reset()
        return try lm.generate(promptTokens: lm.encode(prompt), parameters: p) { _, _ in true }
    }

    /// Greedy output with prompt lookup is plain decoding's, token for token, for the schemes with token-wise kernels
    /// (q8, q4, q4a, q4o), one that goes row chunk by row chunk (q5o) and float weights; drafts are made and kept.
    @Test(arguments: [TensorScheme.q8, .q4, .q4a, .q4o, .q5o, .f32])
    func lookupKeepsGreedyOutput(scheme: TensorScheme) throws {
        let lm = try LanguageModel(path: try ConvertedModels.stories("\(scheme)", ConversionOptions(type: scheme)), threads: 2)
        let plain = try generate(lm, Self.repetitive, tokens: 96, speculation: nil)
        let fast = try generate(lm, Self.repetitive, tokens: 96, speculation: .always(.lookup))
        #expect(fast.tokens == plain.tokens)
        #expect(fast.tokens.count == 96)
        #expect(fast.draftedTokens > 0)
        #expect(fast.acceptedTokens > 0 && fast.acceptedTokens <= fast.draftedTokens)
        #expect(plain.draftedTokens == 0)
    }

    /// The speculative bench times the tokens generation gives: a run ends at the model's end of turn as generation
    /// does (SmolLM2 answers this question in 7 tokens), or with `ignoreEOS` after every requested token; it reports
    /// the generated text.
    @Test func speculativeBenchEndsWhereGenerationEnds() throws {
        guard let lm = try RealModelTests.keptLanguageModel() else { return }
        let prompt = lm.encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
        lm.session.reset()
        var text = ""
        let plain = try lm.generate(promptTokens: prompt, parameters: .greedy(maxTokens: 100)) { _, piece in
            text += piece
            return true
        }
        #expect(plain.stopReason == .endOfSequence && plain.generatedTokens < 100 && text.contains("Paris"))
        let lookup = SpeculationParameters.always(.lookup)
        let ended = try Benchmark.speculative(lm, prompt: prompt, tokens: 100, speculation: lookup, repetitions: 1)
        #expect(ended.tokens == plain.generatedTokens && ended.identical && ended.output == text)
        let all = try Benchmark.speculative(lm, prompt: prompt, tokens: 100, speculation: lookup, repetitions: 1, ignoreEOS: true)
        #expect(all.tokens == 100 && all.identical && all.drafted > 0)
    }

    /// `verify` returns, bit for bit, the logits one `forward` per token gives, and leaves the cache as they do.
    @Test func verifyEqualsOneForwardPerToken() throws {
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 2)
        let prompt = lm.encode(Self.repetitive), tokens = Array(prompt[5..<17]), vocab = lm.config.vocabSize
        _ = try lm.session.prefill(prompt)
        let base = lm.session.position
        var alone: [Float] = []
        for t in tokens { alone += Array(try lm.session.forward([t])) }
        try lm.session.rewind(to: base)
        let batched = Array(try lm.session.verify(tokens))
        #expect(batched.count == tokens.count * vocab)
        #expect(batched == alone)
        #expect(lm.session.position == base + tokens.count)
        #expect(lm.session.tokens.suffix(tokens.count) == ArraySlice(tokens))
        #expect(throws: EdgeLMError.self) { try lm.session.verify(Array(repeating: 5, count: lm.session.maxBatch + 1)) }
    }

    /// The same checkpoint at 4 bits drafting for its 8-bit file: the q8 file's greedy output (stories260K keeps 46% of the drafts).
    @Test func draftModelKeepsGreedyOutput() throws {
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 2)
        try lm.loadDraft(path: try ConvertedModels.stories("q4", ConversionOptions(type: .q4)))
        let prompt = "Tom had a red ball. He liked to"
        let plain = try generate(lm, prompt, tokens: 64, speculation: nil)
        let fast = try generate(lm, prompt, tokens: 64, speculation: .always(.model))
        #expect(fast.tokens == plain.tokens)
        #expect(fast.draftedTokens > 0)
        #expect(Double(fast.acceptedTokens) > 0.3 * Double(fast.draftedTokens))
    }

    /// A draft model with another vocabulary, a draft model not loaded and out-of-range lengths are refused by name.
    @Test func badSpeculationIsRefused() throws {
        let dir = TemporaryDirectory()
        let tiny = dir.file("tiny.gguf"), tinyModel = dir.file("tiny.edgelm")
        try TinyModel.gguf().write(to: tiny)
        _ = try Converter.convert(try Checkpoint.open(path: tiny, tokenizerPath: nil), to: tinyModel, options: ConversionOptions(type: .q8))
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 1)
        #expect { try lm.loadDraft(path: tinyModel) } throws: { "\($0)".contains("vocabulary") }
        #expect { try generate(lm, "Once", tokens: 4, speculation: SpeculationParameters(source: .model)) } throws: { "\($0)".contains("--draft") }
        var spec = SpeculationParameters(source: .lookup)
        spec.maxDraft = 64
        #expect { try spec.validate() } throws: { "\($0)".contains("--draft-max") }
        spec.maxDraft = 8
        spec.ngram = 0...2
        #expect { try spec.validate() } throws: { "\($0)".contains("--lookup-min") }
    }

    /// Sampling with speculation keeps the target's distribution: on a toy vocabulary of 5 tokens, whose next-token
    /// logits depend on the previous token (a bigram model), 3-token continuations drawn through `TokenStream.verify`
    /// with drafts from another distribution (and with prompt-lookup-like fixed drafts) have the frequencies of
    /// plain sampling and of the exact probabilities: chi-square over the 125 sequences below the 0.1% critical
    /// value (df 124: 177.3), fixed seeds.
    @Test func speculativeSamplingKeepsTheDistribution() throws {
        let vocab = 5, trials = 12_000
        var random = TestRandom(seed: 3)
        let target = (0..<vocab).map { _ in random.normals(vocab, std: 1.2) }
        let drafter = (0..<vocab).map { _ in random.normals(vocab, std: 1.2) }
        var sampling = SamplingParameters()
        (sampling.temperature, sampling.topK, sampling.topP, sampling.minP) = (0.9, 0, 1, 0)
        let tokenizer = try Tokenizer(data: TinyModel.tokenizer)
        func candidates(_ table: [[Float]], after token: Int, _ sampler: Sampler) -> Candidates {
            table[token].withUnsafeBufferPointer { sampler.candidates($0, history: []) }
        }
        // The exact probability of each 3-token continuation of token 0.
        let probe = Sampler(parameters: sampling)
        var exact = [Double](repeating: 0, count: vocab * vocab * vocab)
        for a in 0..<vocab {
            for b in 0..<vocab {
                for c in 0..<vocab {
                    exact[(a * vocab + b) * vocab + c] =
                        Double(candidates(target, after: 0, probe).probability(of: a))
                        * Double(candidates(target, after: a, probe).probability(of: b)) * Double(candidates(target, after: b, probe).probability(of: c))
                }
            }
        }
        func run(_ mode: Int) -> [Int] {
            var counts = [Int](repeating: 0, count: exact.count)
            for trial in 0..<trials {
                var params = GenerateParameters()
                params.maxTokens = 3
                params.stopAtEOS = false
                params.sampling = sampling
                params.sampling.seed = UInt64(trial) &* 7919 &+ UInt64(mode)
                var stream = TokenStream(tokenizer: tokenizer, prompt: [0], parameters: params)
                var draftSampler = Sampler(parameters: SamplingParameters(seed: UInt64(trial) &+ 1_000_003, from: sampling))
                var last = 0
                while stream.finished == nil {
                    if mode == 0 {
                        last = target[last].withUnsafeBufferPointer { stream.next($0).token! }
                        continue
                    }
                    // Drafts: two tokens drawn from the drafter's bigrams (mode 1), or a fixed guess (mode 2).
                    var draft = Draft(tokens: [], proposals: mode == 1 ? [] : nil)
                    var previous = last
                    for _ in 0..<2 {
                        let q = candidates(drafter, after: previous, draftSampler)
                        let token = mode == 1 ? draftSampler.draw(from: q) : (previous + 1) % vocab
                        draft.tokens.append(token)
                        draft.proposals?.append(q)
                        previous = token
                    }
                    let rows = ([last] + draft.tokens).flatMap { target[$0] }
                    let steps = rows.withUnsafeBufferPointer { stream.verify($0, vocab: vocab, draft: draft).steps }
                    last = steps.last!.token!
                }
                let g = stream.generated
                counts[(g[0] * vocab + g[1]) * vocab + g[2]] += 1
            }
            return counts
        }
        let plain = run(0), drafted = run(1), fixed = run(2)
        func chiSquare(_ counts: [Int]) -> Double {
            zip(counts, exact).reduce(0) { sum, pair in
                let expected = pair.1 * Double(trials)
                return sum + (Double(pair.0) - expected) * (Double(pair.0) - expected) / expected
            }
        }
        #expect(chiSquare(plain) < 177.3)
        #expect(chiSquare(drafted) < 177.3)
        #expect(chiSquare(fixed) < 177.3)
        // Two-sample: speculative against plain frequencies.
        let twoSample = zip(plain, drafted).reduce(0.0) { sum, pair in
            let total = Double(pair.0 + pair.1)
            return total > 0 ? sum + Double((pair.0 - pair.1) * (pair.0 - pair.1)) / total : sum
        }
        #expect(twoSample < 177.3)
    }

    /// Prompt lookup proposes what followed the latest earlier occurrence of the longest matching suffix.
    /// Drafting starts with a plain step, pauses while speculative passes cost more time per token than plain steps
    /// (4 passes, then 8 while it keeps losing) and goes on while they cost less; not adaptive, it drafts every pass.
    @Test func draftingPausesWhileItCostsMoreThanPlainSteps() throws {
        var s = Speculator(drafter: PromptLookup(ngram: 2...2), parameters: SpeculationParameters(source: .lookup), sampling: SamplingParameters())
        let history = [1, 2, 3, 4, 1, 2]
        func plainSteps() throws -> Int {
            var n = 0
            while try s.draft(after: history, limit: 4).tokens.isEmpty { n += 1 }
            return n
        }
        #expect(try plainSteps() == 1)
        s.recordPlain(seconds: 1)
        s.record(drafted: 2, kept: 0, seconds: 3)  // 3 s per token against 1
        #expect(try plainSteps() == 4)
        s.record(drafted: 2, kept: 0, seconds: 3)
        #expect(try plainSteps() == 8)
        s.record(drafted: 2, kept: 2, seconds: 1.5)  // 0.5 s per token
        #expect(try plainSteps() == 0)
        s.record(drafted: 2, kept: 0, seconds: 3)  // smoothed 1.25 s per token: a pause of 4 again
        #expect(try plainSteps() == 4)
        #expect(s.drafted == 8 && s.accepted == 2)
        var always = Speculator(drafter: PromptLookup(ngram: 2...2), parameters: .always(.lookup), sampling: SamplingParameters())
        always.recordPlain(seconds: 1)
        for _ in 0..<3 {
            #expect(try !always.draft(after: history, limit: 4).tokens.isEmpty)
            always.record(drafted: 4, kept: 0, seconds: 9)
        }
    }

    @Test func promptLookupFindsTheLatestMatch() {
        var sampler = Sampler(parameters: SamplingParameters())
        let lookup = PromptLookup(ngram: 2...3)
        #expect(lookup.draft(after: [1, 2, 3, 9, 1, 2, 3, 7, 8, 4, 2, 3], count: 4, sampler: &sampler).tokens == [7, 8, 4, 2])
        #expect(lookup.draft(after: [5, 6, 1, 2, 7, 1, 2], count: 2, sampler: &sampler).tokens == [7, 1])
        #expect(lookup.draft(after: [1, 2, 3, 4], count: 4, sampler: &sampler).tokens.isEmpty)
        #expect(lookup.draft(after: [1, 2, 1, 2], count: 0, sampler: &sampler).tokens.isEmpty)
    }
}

extension SpeculationParameters {
    /// Speculation from `source` that drafts every pass (tests of verification, whatever the timings).
    static func always(_ source: Source) -> SpeculationParameters {
        var p = SpeculationParameters(source: source)
        p.adaptive = false
        return p
    }
}

extension SamplingParameters {
    /// `base` with another seed.
    init(seed: UInt64, from base: SamplingParameters) {
        self = base
        self.seed = seed
    }
}
