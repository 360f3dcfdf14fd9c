import CEdgeKernels
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Options for choosing the next token, as `GenerateParameters` carries them.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax).
    public var temperature: Float = 0.8
    /// Keep only the k most likely tokens (0: off).
    public var topK: Int = 40
    /// Keep the smallest set of tokens whose probability reaches p (1: off).
    public var topP: Float = 0.95
    /// Drop tokens less likely than minP times the most likely one (0: off).
    public var minP: Float = 0.05
    /// Divide positive logits (multiply negative ones) of recently seen tokens by this (1: off).
    public var repetitionPenalty: Float = 1.0
    /// How many recent tokens the repetition, presence and frequency penalties look at.
    public var repetitionWindow: Int = 64
    /// Subtracted from the logit of every token present in the window (OpenAI's `presence_penalty`; 0: off).
    public var presencePenalty: Float = 0
    /// Subtracted from a token's logit once per occurrence in the window (OpenAI's `frequency_penalty`; 0: off).
    public var frequencyPenalty: Float = 0
    /// Added to the logits of these tokens (OpenAI's `logit_bias`; -100 bans a token, +100 forces it).
    public var logitBias: [Int: Float] = [:]
    /// Seed of the random generator, for reproducible runs.
    public var seed: UInt64 = 0

    /// Default sampling.
    public init() {}

    /// Checks the ranges; the error names the option.
    public func validate() throws(EdgeLMError) {
        guard temperature.isFinite, temperature >= 0 else { throw .invalidArgument("--temperature \(temperature): must be >= 0 (0 = greedy)") }
        guard topK >= 0 else { throw .invalidArgument("--top-k \(topK): must be >= 0 (0 = off)") }
        guard topP > 0, topP <= 1 else { throw .invalidArgument("--top-p \(topP): must be in (0, 1]") }
        guard minP >= 0, minP < 1 else { throw .invalidArgument("--min-p \(minP): must be in [0, 1)") }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else {
            throw .invalidArgument("--repeat-penalty \(repetitionPenalty): must be > 0 (1 = off)")
        }
        guard repetitionWindow >= 0 else { throw .invalidArgument("--repeat-window \(repetitionWindow): must be >= 0") }
        guard presencePenalty.isFinite, abs(presencePenalty) <= 2 else { throw .invalidArgument("--presence-penalty \(presencePenalty): must be in [-2, 2]") }
        guard frequencyPenalty.isFinite, abs(frequencyPenalty) <= 2 else {
            throw .invalidArgument("--frequency-penalty \(frequencyPenalty): must be in [-2, 2]")
        }
        for (id, bias) in logitBias where !(bias.isFinite && abs(bias) <= 100) || id < 0 {
            throw .invalidArgument("logit bias \(bias) for token \(id): the token must be >= 0 and the bias in [-100, 100]")
        }
    }
}

/// Chooses tokens from logits. A value type: copying a sampler copies its random state.
public struct Sampler: Sendable {
    /// The options.
    public let parameters: SamplingParameters
    private var rng: SplitMix64

    /// A sampler seeded from `parameters.seed`.
    public init(parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SplitMix64(seed: parameters.seed)
    }

    /// Picks the next token from `logits`, given the tokens so far (for the repetition penalty).
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>, history: [Int]) -> Int {
        draw(from: candidates(logits, history: history))
    }

    /// The distribution `sample` draws from: the tokens left after the penalty, temperature and the top-k, min-p and
    /// top-p filters, with their probabilities (one token of probability 1 when greedy).
    public func candidates(_ logits: UnsafeBufferPointer<Float>, history: [Int]) -> Candidates {
        // The logits are copied only when a penalty or bias changes them (a copy of 262,144 logits costs more than
        // the top-k pass).
        guard adjusts(history: history) else { return filtered(logits) }
        return adjusted(logits, history: history).withUnsafeBufferPointer { filtered($0) }
    }

    /// Whether the penalties or the logit bias change any logit after `history`.
    private func adjusts(history: [Int]) -> Bool {
        let p = parameters
        let penalties = p.repetitionWindow > 0 && !history.isEmpty && (p.repetitionPenalty != 1 || p.presencePenalty != 0 || p.frequencyPenalty != 0)
        return penalties || !p.logitBias.isEmpty
    }

    /// `candidates` of logits already adjusted.
    private func filtered(_ values: UnsafeBufferPointer<Float>) -> Candidates {
        let p = parameters
        if p.temperature == 0 { return Candidates(ids: [Self.argmax(values)], weights: [1], mass: 1) }
        // Candidates sorted by logit, descending (ties by id): the top k by one pass over the vocabulary when k is
        // set (262,144 logits: 0.6 ms instead of a 60 ms sort), else all of them sorted.
        let order = p.topK > 0 && p.topK < values.count ? Self.topK(values, p.topK) : Self.sortedIndices(values)
        let top = values[order[0]]
        var probs = order.map { expf((values[$0] - top) / p.temperature) }
        let total = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= total }
        var keep = probs.count
        if p.minP > 0 {
            let floor = probs[0] * p.minP
            keep = max(1, probs.firstIndex { $0 < floor } ?? probs.count)
        }
        if p.topP < 1 {
            var cumulative: Float = 0
            for i in 0..<keep {
                cumulative += probs[i]
                if cumulative >= p.topP {
                    keep = i + 1
                    break
                }
            }
        }
        return Candidates(ids: Array(order[0..<keep]), weights: Array(probs[0..<keep]), mass: probs[0..<keep].reduce(0, +))
    }

    /// The logits after the repetition, presence and frequency penalties (over the last `repetitionWindow` tokens
    /// of `history`) and the logit bias: what temperature and the filters then work on.
    public func adjusted(_ logits: UnsafeBufferPointer<Float>, history: [Int]) -> [Float] {
        var values = Array(logits)
        let p = parameters
        if p.repetitionWindow > 0, p.repetitionPenalty != 1 || p.presencePenalty != 0 || p.frequencyPenalty != 0 {
            var counts: [Int: Int] = [:]
            for id in history.suffix(p.repetitionWindow) { counts[id, default: 0] += 1 }
            for (id, n) in counts where values.indices.contains(id) {
                var v = values[id]
                if p.repetitionPenalty != 1 { v = v > 0 ? v / p.repetitionPenalty : v * p.repetitionPenalty }
                values[id] = v - p.presencePenalty - p.frequencyPenalty * Float(n)
            }
        }
        for (id, bias) in p.logitBias where values.indices.contains(id) { values[id] += bias }
        return values
    }

    /// The log-probability of `token` and of the `top` most likely tokens under `values` (log-softmax, no
    /// temperature): OpenAI's `logprobs` of the distribution the sampler works on.
    public static func logprobs(_ values: [Float], token: Int, top: Int) -> TokenLogprobs {
        let m = values.max() ?? 0
        var sum: Double = 0
        for v in values where v > -.infinity { sum += exp(Double(v - m)) }
        let lse = Double(m) + log(sum)
        let best = top > 0 ? topK(values, min(top, values.count)) : []
        return TokenLogprobs(
            token: token, logprob: Double(values[token]) - lse,
            top: best.map { ($0, Double(values[$0]) - lse) })
    }

    /// Draws one token of `candidates` by their probabilities.
    public mutating func draw(from candidates: Candidates) -> Int {
        var r = rng.nextUnitFloat() * candidates.mass
        for (id, w) in zip(candidates.ids, candidates.weights) {
            r -= w
            if r < 0 { return id }
        }
        return candidates.ids[candidates.ids.count - 1]
    }

    /// The token to keep at a position where a drafter proposed `draft`, drawn from `candidates` (the target's
    /// distribution there) so that the kept token follows that distribution whatever the drafter did: the draft is
    /// kept with probability min(1, p(draft) / q(draft)), else a token is drawn from max(0, p - q), renormalised
    /// (speculative sampling, Leviathan et al. 2023). `proposal` is q, the distribution the draft was drawn from;
    /// nil for a deterministic drafter (q puts all its mass on the draft). Greedy candidates keep the draft exactly
    /// when it is the argmax.
    public mutating func verify(draft: Int, candidates p: Candidates, proposal q: Candidates?) -> Int {
        if p.ids.count == 1 { return p.ids[0] }
        let pd = p.probability(of: draft), qd = q?.probability(of: draft) ?? 1
        if pd > 0, rng.nextUnitFloat() * qd < pd { return draft }
        var proposed: [Int: Float] = [draft: 1]
        if let q { proposed = Dictionary(uniqueKeysWithValues: zip(q.ids, q.weights.map { $0 / q.mass })) }
        var residual = zip(p.ids, p.weights).map { max(0, $1 / p.mass - (proposed[$0] ?? 0)) }
        var mass = residual.reduce(0, +)
        if !(mass > 0) {
            residual = p.weights
            mass = p.mass
        }
        return draw(from: Candidates(ids: p.ids, weights: residual, mass: mass))
    }

    /// All indices by value, descending (ties by index).
    static func sortedIndices(_ values: UnsafeBufferPointer<Float>) -> [Int] {
        var order = Array(values.indices)
        order.sort { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }
        return order
    }

    /// `sortedIndices` of an array.
    static func sortedIndices(_ values: [Float]) -> [Int] { values.withUnsafeBufferPointer { sortedIndices($0) } }

    /// The indices of the `k` largest values in `sortedIndices`' order, by one pass that keeps the best k in a
    /// sorted buffer: an index enters only when its value beats the k-th kept so far (a later index never wins a
    /// tie, as in the full sort).
    static func topK(_ values: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        var kept: [Int] = []
        kept.reserveCapacity(k + 1)
        var floor = -Float.infinity  // the k-th kept value once k are kept
        func offer(_ i: Int) {
            let x = values[i]
            if kept.count == k, !(x > floor) { return }
            // First kept position whose value is below x: x goes before it (after its equals).
            var lo = 0, hi = kept.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if values[kept[mid]] >= x { lo = mid + 1 } else { hi = mid }
            }
            kept.insert(i, at: lo)
            if kept.count > k { kept.removeLast() }
            if kept.count == k { floor = values[kept[k - 1]] }
        }
        guard let base = values.baseAddress else { return [] }
        var i = 0
        while i < values.count {
            // Once k are kept, only a value above the k-th can enter: the search skips the rest 16 at a time.
            if kept.count == k { i = Int(edge_first_above(base, Int64(i), Int64(values.count), floor)) }
            if i < values.count { offer(i) }
            i += 1
        }
        return kept
    }

    /// `topK` of an array.
    static func topK(_ values: [Float], _ k: Int) -> [Int] { values.withUnsafeBufferPointer { topK($0, k) } }

    /// Index of the largest value (the first on ties; NaN never wins over a number).
    public static func argmax<C: Collection>(_ values: C) -> Int where C.Element == Float, C.Index == Int {
        if let index = values.withContiguousStorageIfAvailable({ argmax(buffer: $0) }) { return index + values.startIndex }
        var best = values.startIndex
        for i in values.indices where values[i] > values[best] { best = i }
        return best
    }

    /// `argmax` of contiguous values: each search for a value above the best so far skips 16 at a time.
    private static func argmax(buffer values: UnsafeBufferPointer<Float>) -> Int {
        guard let base = values.baseAddress, !values.isEmpty else { return 0 }
        var best = 0, i = 1
        let n = Int64(values.count)
        while true {
            i = Int(edge_first_above(base, Int64(i), n, values[best]))
            if i == values.count { return best }
            best = i
            i += 1
        }
    }
}

/// The log-probabilities reported for one generated token.
public struct TokenLogprobs: Sendable {
    /// The generated token.
    public let token: Int
    /// Its natural-log probability.
    public let logprob: Double
    /// The most likely tokens at that step with theirs, most likely first.
    public let top: [(token: Int, logprob: Double)]
}

/// A distribution over a few tokens: `ids` with unnormalised `weights` summing to `mass`.
public struct Candidates: Sendable, Equatable {
    /// The tokens that can be drawn, most likely first.
    public let ids: [Int]
    /// Their weights.
    public let weights: [Float]
    /// The sum of the weights.
    public let mass: Float

    /// A distribution of `ids` with `weights` summing to `mass`.
    public init(ids: [Int], weights: [Float], mass: Float) {
        self.ids = ids
        self.weights = weights
        self.mass = mass
    }

    /// The probability of `id` (0 when it cannot be drawn).
    public func probability(of id: Int) -> Float {
        guard let i = ids.firstIndex(of: id), mass > 0 else { return 0 }
        return weights[i] / mass
    }
}
