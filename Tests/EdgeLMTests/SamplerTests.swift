import Foundation
import Testing
@testable import EdgeLM

@Suite struct SamplerTests {
    func sample(_ logits: [Float], _ configure: (inout SamplingParameters) -> Void, history: [Int] = [], draws: Int = 2000) -> [Int: Int] {
        var p = SamplingParameters()
        p.seed = 42
        configure(&p)
        var sampler = Sampler(parameters: p)
        var counts: [Int: Int] = [:]
        logits.withUnsafeBufferPointer { buf in
            for _ in 0..<draws { counts[sampler.sample(buf, history: history), default: 0] += 1 }
        }
        return counts
    }

    let logits: [Float] = [1.0, 3.0, 2.9, -1.0, 0.5]

    @Test func greedyPicksTheArgmax() {
        #expect(sample(logits, { $0.temperature = 0 }) == [1: 2000])
        #expect(Sampler.argmax([2, 5, 5, 1] as [Float]) == 1)
        // The 16-wide pass finds what a plain scan finds: the first of the largest, NaN never winning, in slices too.
        var rng = TestRandom(seed: 9)
        for n in [1, 15, 16, 17, 33, 1000, 262_144] {
            var values = (0..<n).map { _ in Float(Int(rng.next() % 32)) }
            if n > 20 { values[n / 2] = .nan }
            var plain = 0
            for i in values.indices where values[i] > values[plain] { plain = i }
            #expect(Sampler.argmax(values) == plain, "n \(n)")
            let slice = values[(n / 3)...]
            var slicePlain = slice.startIndex
            for i in slice.indices where slice[i] > slice[slicePlain] { slicePlain = i }
            #expect(Sampler.argmax(slice) == slicePlain, "slice of \(n)")
        }
    }

    /// The one-pass top k is the full sort's first k, ties (by index) and repeated values included.
    @Test func topKSelectionIsTheSortedPrefix() {
        var rng = TestRandom(seed: 5)
        for n in [1, 7, 40, 1000, 262_144] {
            // Values on a coarse grid, so that many tie.
            let values = (0..<n).map { _ in Float(Int(rng.next() % 64)) / 8 }
            for k in [1, 2, 40, 999] where k < n {
                #expect(Sampler.topK(values, k) == Array(Sampler.sortedIndices(values).prefix(k)), "n \(n) k \(k)")
            }
        }
    }

    @Test func topKOneIsGreedy() {
        #expect(
            sample(
                logits,
                {
                    $0.topK = 1; $0.temperature = 5
                }) == [1: 2000])
    }

    @Test func topKRestrictsTheSupport() {
        let counts = sample(
            logits,
            {
                $0.topK = 2; $0.topP = 1; $0.minP = 0; $0.temperature = 1
            })
        #expect(Set(counts.keys) == [1, 2])
        // p(1) / p(2) = e^0.1 = 1.105
        let ratio = Double(counts[1]!) / Double(counts[2]!)
        #expect(ratio > 0.95 && ratio < 1.3)
    }

    @Test func topPKeepsTheSmallestNucleus() {
        // Softmax at T=1: [0.063, 0.467, 0.423, 0.009, 0.038]; 0.467 + 0.423 = 0.890 >= 0.85, + 0.063 = 0.953 >= 0.95.
        let counts = sample(
            logits,
            {
                $0.topK = 0; $0.minP = 0; $0.topP = 0.85; $0.temperature = 1
            })
        #expect(Set(counts.keys) == [1, 2])
        let wider = sample(
            logits,
            {
                $0.topK = 0; $0.minP = 0; $0.topP = 0.95; $0.temperature = 1
            })
        #expect(Set(wider.keys) == [0, 1, 2])
    }

    @Test func minPDropsUnlikelyTokens() {
        // p(0)/p(1) = e^-2 = 0.135: kept at min-p 0.1, dropped at 0.2.
        #expect(
            Set(
                sample(
                    logits,
                    {
                        $0.topK = 0; $0.topP = 1; $0.minP = 0.1; $0.temperature = 1
                    }
                ).keys) == [0, 1, 2])
        #expect(
            Set(
                sample(
                    logits,
                    {
                        $0.topK = 0; $0.topP = 1; $0.minP = 0.2; $0.temperature = 1
                    }
                ).keys) == [1, 2])
    }

    @Test func temperatureSharpens() {
        // At T = 0.05, p(1) = 1 / (1 + e^-2 + ...) = 0.881; at T = 1 it is 0.467.
        let cold = sample(
            logits,
            {
                $0.topK = 0; $0.topP = 1; $0.minP = 0; $0.temperature = 0.05
            })
        #expect(cold[1, default: 0] > 1700 && cold[1, default: 0] < 1830)
        let warm = sample(
            logits,
            {
                $0.topK = 0; $0.topP = 1; $0.minP = 0; $0.temperature = 1
            })
        #expect(warm[1, default: 0] > 850 && warm[1, default: 0] < 1020)
    }

    @Test func repetitionPenaltyDemotesRecentTokens() {
        #expect(
            sample(
                logits,
                {
                    $0.temperature = 0; $0.repetitionPenalty = 1.5
                }, history: [1]) == [2: 2000])
        // Outside the window the penalty no longer applies.
        #expect(
            sample(
                logits,
                {
                    $0.temperature = 0; $0.repetitionPenalty = 1.5; $0.repetitionWindow = 2
                }, history: [1, 0, 0]) == [1: 2000])
        // Negative logits are pushed further down, not up.
        #expect(
            sample(
                [-1, -2],
                {
                    $0.temperature = 0; $0.repetitionPenalty = 3
                }, history: [0]) == [1: 2000])
    }

    @Test func seedMakesRunsReproducible() {
        let a = sample(
            logits,
            {
                $0.temperature = 1; $0.seed = 7
            }, draws: 50)
        let b = sample(
            logits,
            {
                $0.temperature = 1; $0.seed = 7
            }, draws: 50)
        #expect(a == b)
    }

    @Test func invalidParametersAreRejected() {
        var p = SamplingParameters()
        p.temperature = -1
        #expect(throws: EdgeLMError.self) { try p.validate() }
        p = SamplingParameters()
        p.topP = 1.5
        #expect(throws: EdgeLMError.self) { try p.validate() }
        p = SamplingParameters()
        p.minP = 1
        #expect(throws: EdgeLMError.self) { try p.validate() }
        #expect(throws: Never.self) { try SamplingParameters().validate() }
    }
}

/// Log-probabilities, penalties and logit bias as `TokenStream` applies them.
struct LogprobsTests {
    @Test func logprobsAreTheLogSoftmaxOfWhatTheSamplerSaw() throws {
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 2)
        let prompt = lm.encode("Once upon a time")
        let logits = Array(try lm.session.prefill(prompt).logits)
        var params = GenerateParameters.greedy(maxTokens: 4)
        params.logprobs = 5
        params.sampling.logitBias = [logits.indices.max { logits[$0] < logits[$1] }!: -100]
        params.sampling.presencePenalty = 0.5
        params.sampling.frequencyPenalty = 0.25
        var stream = TokenStream(tokenizer: lm.tokenizer, prompt: prompt, parameters: params)
        let step = logits.withUnsafeBufferPointer { stream.next($0) }
        let l = try #require(step.logprobs)
        // The reference: penalties over the prompt window, the bias, then log-softmax in f64.
        var adjusted = logits.map(Double.init)
        var counts: [Int: Int] = [:]
        for id in prompt { counts[id, default: 0] += 1 }
        for (id, n) in counts { adjusted[id] -= 0.5 + 0.25 * Double(n) }
        for (id, b) in params.sampling.logitBias { adjusted[id] += Double(b) }
        let m = adjusted.max()!
        let lse = m + log(adjusted.reduce(0) { $0 + exp($1 - m) })
        let order = adjusted.indices.sorted { adjusted[$0] > adjusted[$1] }
        #expect(l.token == order[0], "greedy takes the best adjusted token, not the biased-away one")
        #expect(abs(l.logprob - (adjusted[l.token] - lse)) < 1e-4)
        #expect(l.top.map(\.token) == Array(order.prefix(5)))
        for t in l.top { #expect(abs(t.logprob - (adjusted[t.token] - lse)) < 1e-4) }
    }

    @Test func badSamplingSettingsAreRefused() {
        for change in [
            { (p: inout SamplingParameters) in p.presencePenalty = 3 }, { $0.frequencyPenalty = .nan }, { $0.logitBias = [5: 101] }, { $0.logitBias = [-1: 1] },
        ] {
            var p = SamplingParameters()
            change(&p)
            #expect(throws: EdgeLMError.self) { try p.validate() }
        }
    }
}
