import Foundation

/// Options of `edgelm bench`.
public struct BenchOptions: Sendable {
    /// Prompt-processing batch (pp test); 0 skips it.
    public var promptTokens = 128
    /// Tokens generated one at a time (tg test); 0 skips it.
    public var generatedTokens = 64
    /// Timed repetitions after one warm-up run.
    public var repetitions = 5
    /// Tokens already in the KV cache when each test starts (llama-bench's `-d`): evaluated once per
    /// test, then every repetition rewinds to it.
    public var depth = 0

    /// Default options.
    public init() {}
}

/// One benchmark test (`pp128`, `tg64`, ...).
public struct BenchResult: Codable, Sendable {
    /// Test name.
    public let test: String
    /// Tokens per second of each repetition.
    public let samples: [Double]
    /// Mean tokens per second.
    public let tpsMean: Double
    /// Standard deviation of tokens per second.
    public let tpsStddev: Double
    /// For tg: weight bytes read per token times tokens per second, in GB/s.
    public let weightGBps: Double?
    /// For tg: `weightGBps` over the memory bandwidth probe of the same run.
    public let bandwidthRatio: Double?

    enum CodingKeys: String, CodingKey {
        case test, samples
        case tpsMean = "tps_mean"
        case tpsStddev = "tps_stddev"
        case weightGBps = "weight_gbps"
        case bandwidthRatio = "bandwidth_ratio"
    }
}

/// The token ids the benches feed: random ids from 3 up (past the usual special tokens), the same sequence on every run.
struct RandomTokens {
    let vocab: Int
    private var rng = SplitMix64(seed: 7)

    init(vocab: Int) { self.vocab = vocab }

    /// The next `n` ids.
    mutating func next(_ n: Int) -> [Int] { (0..<n).map { _ in 3 + Int(rng.next() % UInt64(max(1, vocab - 3))) } }
}

/// llama-bench style measurements (optionally after `depth` tokens in the cache): prompt processing as one forward batch, generation one token at a time,
/// tokenization and sampling excluded, each repeated after a warm-up; plus a memory bandwidth probe so the
/// decode speed can be read as a fraction of what the machine can stream.
public enum Benchmark {
    /// Runs the tests on `lm`'s session. `bandwidthGBps` is the probe result to relate tg to.
    public static func run(
        _ lm: LanguageModel, options: BenchOptions, bandwidthGBps: Double,
        progress: (String) -> Void = { _ in }
    ) throws(EdgeLMError) -> [BenchResult] {
        guard options.repetitions >= 1 else { throw .invalidArgument("-r \(options.repetitions): must be at least 1") }
        guard options.promptTokens >= 0, options.generatedTokens >= 0, options.depth >= 0 else {
            throw .invalidArgument("-p, -n and --depth must be >= 0")
        }
        let context = lm.session.contextLength, longest = options.depth + max(options.promptTokens, options.generatedTokens)
        guard longest <= context else {
            throw .invalidArgument(
                "--depth \(options.depth) plus the longest test needs \(longest) positions, more than the context of \(context) "
                    + "(set --ctx \(longest))")
        }
        let session = lm.session
        var random = RandomTokens(vocab: lm.config.vocabSize)
        let prefix = random.next(options.depth)
        let suffix = options.depth > 0 ? " @ d\(options.depth)" : ""
        /// Fills the cache to the depth once; each repetition then starts from it.
        func fillDepth() throws(EdgeLMError) {
            session.reset()
            if !prefix.isEmpty {
                progress("depth \(options.depth)")
                _ = try session.forward(prefix)
            }
        }
        var results: [BenchResult] = []
        if options.promptTokens > 0 {
            let tokens = random.next(options.promptTokens)
            try fillDepth()
            let samples = try measure(options.repetitions, progress: { progress("pp\(options.promptTokens) \($0)") }) { () throws(EdgeLMError) in
                try session.rewind(to: prefix.count)
                _ = try session.forward(tokens)
                return Double(tokens.count)
            }
            results.append(result("pp\(options.promptTokens)\(suffix)", samples, bytesPerToken: nil, bandwidth: bandwidthGBps))
        }
        if options.generatedTokens > 0 {
            let tokens = random.next(options.generatedTokens)
            try fillDepth()
            let samples = try measure(options.repetitions, progress: { progress("tg\(options.generatedTokens) \($0)") }) { () throws(EdgeLMError) in
                try session.rewind(to: prefix.count)
                for t in tokens { _ = try session.forward([t]) }
                return Double(tokens.count)
            }
            results.append(
                result(
                    "tg\(options.generatedTokens)\(suffix)", samples, bytesPerToken: lm.model.weightBytesPerToken,
                    bandwidth: bandwidthGBps))
        }
        return results
    }

    private static func measure(
        _ repetitions: Int, progress: (String) -> Void,
        _ body: () throws(EdgeLMError) -> Double
    ) throws(EdgeLMError) -> [Double] {
        _ = try body()
        var samples: [Double] = []
        for r in 0..<repetitions {
            progress("\(r + 1)/\(repetitions)")
            let start = DispatchTime.now().uptimeNanoseconds
            let tokens = try body()
            samples.append(tokens / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9))
        }
        return samples
    }

    private static func result(_ test: String, _ samples: [Double], bytesPerToken: Int?, bandwidth: Double) -> BenchResult {
        var stats = RunningStats()
        samples.forEach { stats.add($0) }
        let gbps = bytesPerToken.map { Double($0) * stats.mean / 1e9 }
        return BenchResult(
            test: test, samples: samples, tpsMean: stats.mean, tpsStddev: stats.variance.squareRoot(), weightGBps: gbps,
            bandwidthRatio: gbps.map { $0 / bandwidth })
    }

    /// Streaming-read bandwidth of this machine in GB/s: the pool's threads summing a 1 GiB buffer (median
    /// of `repetitions` passes after a warm-up pass that also faults the pages in; the median, because
    /// neighbours on a shared host make single passes swing by tens of percent).
    public static func memoryBandwidth(pool: ThreadPool, bytes: Int = 1 << 30, repetitions: Int = 5) -> Double {
        let count = bytes / 64
        let buffer = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: count)
        defer { buffer.deallocate() }
        // Every 64-byte line differs: identical pages could be merged by the host and read from cache.
        pool.parallelFor(count) { range in for i in range { buffer[i] = SIMD16(repeating: Float(i)) } }
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: pool.threadCount)
        defer { sums.deallocate() }
        var passes: [Double] = []
        for _ in 0...repetitions {
            let start = DispatchTime.now().uptimeNanoseconds
            pool.run { worker, workers in
                let lo = count * worker / workers, hi = count * (worker + 1) / workers
                var a = SIMD16<Float>(), b = SIMD16<Float>(), c = SIMD16<Float>(), d = SIMD16<Float>()
                var i = lo
                while i + 4 <= hi {
                    a += buffer[i]
                    b += buffer[i + 1]
                    c += buffer[i + 2]
                    d += buffer[i + 3]
                    i += 4
                }
                while i < hi {
                    a += buffer[i]
                    i += 1
                }
                sums[worker] = (a + b + c + d).sum()
            }
            passes.append(Double(bytes) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) / 1e9)
        }
        let timed = passes.dropFirst().sorted()
        return timed[timed.count / 2]
    }
}

/// Speculative decoding against plain decoding on one prompt (`edgelm bench --lookup | --draft`).
public struct SpeculativeBenchResult: Codable, Sendable {
    /// Tokens per second of plain greedy decoding, per repetition.
    public let plain: [Double]
    /// Tokens per second with speculation, per repetition (each run right after its plain one).
    public let speculative: [Double]
    /// Tokens generated per run.
    public let tokens: Int
    /// Drafted tokens per run.
    public let drafted: Int
    /// Of those, the tokens the target kept.
    public let accepted: Int
    /// Whether every speculative run produced the plain run's tokens.
    public let identical: Bool
    /// The text the last plain run generated, which the speculative runs' equals when `identical` (how much of it
    /// repeats the prompt is what prompt lookup drafts from).
    public let output: String

    /// Median plain tokens per second.
    public var plainMedian: Double { percentile(plain.sorted(), 50) }
    /// Median speculative tokens per second.
    public var speculativeMedian: Double { percentile(speculative.sorted(), 50) }
    /// Median of the per-pair ratios speculative / plain.
    public var speedup: Double { percentile(zip(speculative, plain).map { $0 / $1 }.sorted(), 50) }
    /// Drafted tokens kept.
    public var acceptanceRate: Double { drafted > 0 ? Double(accepted) / Double(drafted) : 0 }

    enum CodingKeys: String, CodingKey { case plain, speculative, tokens, drafted, accepted, identical, output }
}

extension Benchmark {
    /// Generates up to `tokens` tokens greedily from `prompt`, plainly and with `speculation`, alternately after a
    /// warm-up of each, `repetitions` times; the prompt is evaluated once per run (not timed: generation only). A run
    /// ends at the model's end of text or turn, as generation does, unless `ignoreEOS`.
    public static func speculative(
        _ lm: LanguageModel, prompt: [Int], tokens: Int, speculation: SpeculationParameters, repetitions: Int,
        ignoreEOS: Bool = false, progress: (String) -> Void = { _ in }
    ) throws(EdgeLMError) -> SpeculativeBenchResult {
        guard repetitions >= 1 else { throw .invalidArgument("-r \(repetitions): must be at least 1") }
        var plainParameters = GenerateParameters.greedy(maxTokens: tokens)
        plainParameters.stopAtEOS = !ignoreEOS
        var spec = plainParameters
        spec.speculation = speculation
        var plain: [Double] = [], speculative: [Double] = []
        var identical = true, drafted = 0, accepted = 0, generated = 0, output = ""
        for run in 0...repetitions {
            progress(run == 0 ? "warm-up" : "run \(run)/\(repetitions)")
            lm.session.reset()
            var text = ""
            let a = try lm.generate(promptTokens: prompt, parameters: plainParameters) { _, piece in
                text += piece
                return true
            }
            lm.session.reset()
            let b = try lm.generate(promptTokens: prompt, parameters: spec) { _, _ in true }
            identical = identical && a.tokens == b.tokens
            guard run > 0 else { continue }
            plain.append(a.tokensPerSecond)
            speculative.append(b.tokensPerSecond)
            (drafted, accepted, generated, output) = (b.draftedTokens, b.acceptedTokens, b.generatedTokens, text)
        }
        return SpeculativeBenchResult(
            plain: plain, speculative: speculative, tokens: generated, drafted: drafted, accepted: accepted,
            identical: identical, output: output)
    }
}

/// Constrained against unconstrained decoding on one prompt (`edgelm bench --json-schema | --grammar | --regex | --json`).
public struct ConstrainedBenchResult: Codable, Sendable {
    /// Tokens per second without the constraint, per repetition.
    public let plain: [Double]
    /// Tokens per second with it, per repetition (each run right after its plain one).
    public let constrained: [Double]
    /// Tokens the constrained run generated (it ends when the output is complete).
    public let tokens: Int
    /// Per-step mask times of every constrained run, in seconds.
    public let maskSeconds: [Double]
    /// The constrained output of the last run.
    public let output: String

    /// Median unconstrained tokens per second.
    public var plainMedian: Double { percentile(plain.sorted(), 50) }
    /// Median constrained tokens per second.
    public var constrainedMedian: Double { percentile(constrained.sorted(), 50) }
    /// Median of the per-pair ratios constrained / plain.
    public var ratio: Double { percentile(zip(constrained, plain).map { $0 / $1 }.sorted(), 50) }
    /// Mask time percentile `p` (0-100), in seconds.
    public func maskPercentile(_ p: Double) -> Double { percentile(maskSeconds.sorted(), p) }
}

extension Benchmark {
    /// Generates up to `tokens` tokens greedily from `prompt` without and with `constraint`, alternately after a
    /// warm-up of each, `repetitions` times (the unconstrained run ignores EOS; the constrained one ends when its
    /// output is complete).
    public static func constrained(
        _ lm: LanguageModel, prompt: [Int], tokens: Int, constraint: OutputConstraint, repetitions: Int,
        progress: (String) -> Void = { _ in }
    ) throws(EdgeLMError) -> ConstrainedBenchResult {
        guard repetitions >= 1 else { throw .invalidArgument("-r \(repetitions): must be at least 1") }
        var plainParameters = GenerateParameters.greedy(maxTokens: tokens)
        plainParameters.stopAtEOS = false
        var constrainedParameters = GenerateParameters.greedy(maxTokens: tokens)
        constrainedParameters.constraint = constraint
        var plain: [Double] = [], constrained: [Double] = [], masks: [Double] = []
        var generated = 0, output = ""
        for run in 0...repetitions {
            progress(run == 0 ? "warm-up" : "run \(run)/\(repetitions)")
            lm.session.reset()
            let a = try lm.generate(promptTokens: prompt, parameters: plainParameters) { _, _ in true }
            lm.session.reset()
            var text = ""
            let b = try lm.generate(promptTokens: prompt, parameters: constrainedParameters) { _, piece in
                text += piece; return true
            }
            guard run > 0 else { continue }
            plain.append(a.tokensPerSecond)
            constrained.append(b.tokensPerSecond)
            masks += b.maskSeconds
            (generated, output) = (b.generatedTokens, text)
        }
        return ConstrainedBenchResult(plain: plain, constrained: constrained, tokens: generated, maskSeconds: masks, output: output)
    }
}
