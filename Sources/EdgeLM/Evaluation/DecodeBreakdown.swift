import Foundation

/// Where the time of one generated token goes (`edgelm bench --breakdown`): each stage of the forward pass,
/// sampling, and the rest of the decode step, per token, with the thread-pool jobs each stage ran; or, for a prompt
/// processed as one batch (`--breakdown -n 0 -p N`), the same per prompt token.
public struct DecodeBreakdown: Codable, Sendable {
    /// One line of the breakdown.
    public struct Row: Codable, Sendable {
        /// What the time was spent on.
        public let stage: String
        /// Milliseconds per token.
        public let msPerToken: Double
        /// Thread-pool jobs per token (each a wake-up of the workers and a wait for the slowest).
        public let jobsPerToken: Double

        enum CodingKeys: String, CodingKey {
            case stage
            case msPerToken = "ms_per_token"
            case jobsPerToken = "jobs_per_token"
        }
    }

    /// Tokens timed (repetitions times tokens per run).
    public let tokens: Int
    /// Whether each run's tokens were one prompt batch (else generated one at a time).
    public let promptBatch: Bool
    /// The forward pass's stages, then sampling, then the rest of the step.
    public let rows: [Row]
    /// Milliseconds per token of the whole step (the rows' sum).
    public let msPerToken: Double
    /// Milliseconds per token that greedy decoding's argmax takes instead of sampling (not in the rows).
    public let argmaxMsPerToken: Double

    enum CodingKeys: String, CodingKey {
        case tokens, rows
        case promptBatch = "prompt_batch"
        case msPerToken = "ms_per_token"
        case argmaxMsPerToken = "argmax_ms_per_token"
    }
}

extension Benchmark {
    /// The name of the sampling row: the default sampler's settings.
    static let samplingStage: String = {
        let p = SamplingParameters()
        return "sampling (temperature \(p.temperature), top-k \(p.topK), top-p \(p.topP), min-p \(p.minP))"
    }()

    /// Generates `tokens` tokens one at a time (random ids, after `depth` random tokens in the cache), `repetitions`
    /// times after a warm-up run, timing every stage of each decode step, the default sampler on its logits, and
    /// the argmax greedy decoding would take instead. With `promptBatch`, each run's tokens are one batch (a prompt),
    /// sampled once at its end.
    public static func breakdown(
        _ lm: LanguageModel, tokens: Int, repetitions: Int, depth: Int = 0, promptBatch: Bool = false
    ) throws(EdgeLMError) -> DecodeBreakdown {
        guard tokens >= 1, repetitions >= 1, depth >= 0 else { throw .invalidArgument("--breakdown needs -n >= 1, -r >= 1 and --depth >= 0") }
        let session = lm.session
        guard depth + tokens <= session.contextLength else {
            throw .invalidArgument("--depth \(depth) plus -n \(tokens) exceed the context of \(session.contextLength) (set --ctx \(depth + tokens))")
        }
        var random = RandomTokens(vocab: lm.config.vocabSize)
        let prefix = random.next(depth), run = random.next(tokens)
        session.reset()
        if !prefix.isEmpty { _ = try session.forward(prefix) }
        let profile = ForwardProfile(pool: session.pool)
        session.profile = profile
        defer { session.profile = nil }
        var sampler = Sampler(parameters: SamplingParameters())
        var wall: UInt64 = 0, sampling: UInt64 = 0, argmax: UInt64 = 0, sink = 0
        for repetition in 0...repetitions {
            try session.rewind(to: prefix.count)
            if repetition == 1 {
                (wall, sampling, argmax) = (0, 0, 0)
                profile.clear()
            }
            for batch in promptBatch ? [run] : run.map({ [$0] }) {
                let start = DispatchTime.now().uptimeNanoseconds
                let logits = try session.forward(batch)
                let sampled = DispatchTime.now().uptimeNanoseconds
                sink &+= sampler.sample(logits, history: session.tokens)
                let end = DispatchTime.now().uptimeNanoseconds
                sink &+= Sampler.argmax(logits)
                argmax += DispatchTime.now().uptimeNanoseconds - end
                sampling += end - sampled
                wall += end - start
            }
        }
        precondition(sink != .min)  // keeps the argmax from being optimized away
        let n = Double(tokens * repetitions)
        func ms(_ ns: UInt64) -> Double { Double(ns) / 1e6 / n }
        var rows = ForwardProfile.Stage.allCases.map {
            DecodeBreakdown.Row(stage: $0.name, msPerToken: ms(profile.nanoseconds[$0.rawValue]), jobsPerToken: Double(profile.jobs[$0.rawValue]) / n)
        }
        let forward = profile.nanoseconds.reduce(0, +)
        rows.append(DecodeBreakdown.Row(stage: samplingStage, msPerToken: ms(sampling), jobsPerToken: 0))
        rows.append(DecodeBreakdown.Row(stage: "rest of the step (checks, bookkeeping)", msPerToken: ms(wall - min(wall, forward + sampling)), jobsPerToken: 0))
        return DecodeBreakdown(
            tokens: tokens * repetitions, promptBatch: promptBatch, rows: rows, msPerToken: ms(wall), argmaxMsPerToken: ms(argmax))
    }
}
