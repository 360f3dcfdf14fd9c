import Foundation

/// Options of a perplexity run.
public struct PerplexityOptions: Sendable {
    /// Tokens per window, BOS included (windows do not overlap).
    public var context = 256
    /// Most windows to evaluate (nil: as many as the text fills).
    public var chunks: Int?
    /// Score only the second half of each window, with llama-perplexity's windows (see `PerplexityEvaluator`),
    /// so that the figures read side by side with llama.cpp's.
    public var scoreSecondHalf: Bool
    /// Start every window with BOS: nil does so when the model's tokenizer adds BOS to prompts
    /// (`TokenizerData.addsBOS`), as llama-perplexity does.
    public var addBOS: Bool?

    /// Default options.
    public init(context: Int = 256, chunks: Int? = nil, scoreSecondHalf: Bool = false, addBOS: Bool? = nil) {
        self.context = context
        self.chunks = chunks
        self.scoreSecondHalf = scoreSecondHalf
        self.addBOS = addBOS
    }
}

/// A value with its standard uncertainty.
public struct Estimate: Codable, Sendable {
    public let value: Double
    public let uncertainty: Double
}

/// Perplexity of a model, and (with a reference) how far it drifted from it, as llama-perplexity
/// `--kl-divergence` reports it.
public struct PerplexityReport: Codable, Sendable {
    /// Scored tokens.
    public let tokens: Int
    /// Windows evaluated.
    public let windows: Int
    /// Tokens per window.
    public let context: Int
    /// Mean negative log-likelihood (nats).
    public let meanNLL: Estimate
    /// exp(mean NLL).
    public let ppl: Estimate
    /// Mean NLL of each window.
    public let perWindowMeanNLL: [Double]
    /// The comparison with the reference model, when one was given.
    public let reference: ReferenceComparison?

    /// Drift from the reference.
    public struct ReferenceComparison: Codable, Sendable {
        public let ppl: Estimate
        public let pplRatio: Estimate
        public let lnPPLRatio: Estimate
        public let pplDifference: Estimate
        /// Mean KL(ref || model) per token.
        public let kldMean: Estimate
        public let kldMax: Double
        /// KLD percentiles: 99.9, 99, 95, 90, 50, 10, 5, 1.
        public let kldPercentiles: [String: Double]
        /// Mean of p_model(correct) - p_ref(correct).
        public let deltaPMean: Estimate
        /// RMS of that difference.
        public let deltaPRMS: Double
        /// Fraction of positions where both models' top-1 tokens agree (0...1).
        public let sameTop1: Double
    }
}

/// Evaluates perplexity over non-overlapping windows, one fresh causal pass per window. By default window w
/// is [BOS] + tokens[(c-1)w ..< (c-1)(w+1)] and every text token is scored (the first one predicted from BOS
/// alone). With `scoreSecondHalf`, windows are llama-perplexity's: the text with BOS in front is cut into
/// windows of c tokens and each window's first token becomes BOS, i.e. window w is
/// [BOS] + tokens[cw ..< cw + c - 1]; only the predictions from positions c/2 ..< c-1 are scored (c/2 - 1
/// tokens per window, 127 for c = 256), the ones made with at least half a window of context.
/// For a model that adds no BOS to prompts, windows are the text's tokens alone: tokens[cw ..< c(w+1)],
/// every token after the first scored (or the second half's).
/// Logits are consumed batch by batch, so memory does not grow with the text.
public enum PerplexityEvaluator {
    /// Runs the evaluation. `progress(done, total)` is called after each window.
    public static func run(
        model: LanguageModel, reference: LanguageModel?, tokens: [Int], options: PerplexityOptions,
        progress: (Int, Int, Double) -> Void = { _, _, _ in }
    ) throws(EdgeLMError) -> PerplexityReport {
        let c = options.context
        let prefix = try windowPrefix(model: model, reference: reference, options: options)
        let half = options.scoreSecondHalf
        let stride = half ? c : c - prefix.count, firstScored = half ? c / 2 : 0
        let available = half ? (tokens.count + prefix.count) / c : tokens.count / stride
        let windows = min(available, options.chunks ?? available)
        guard windows >= 1 else {
            throw .invalidInput("the text has \(tokens.count) tokens, fewer than one window of \(c - prefix.count) text tokens")
        }
        let vocab = model.config.vocabSize
        var tally = Tally()
        var perWindow: [Double] = []
        let start = Date()
        for w in 0..<windows {
            let window = prefix + tokens[(stride * w)..<(stride * w + c - prefix.count)]
            model.session.reset()
            reference?.session.reset()
            var windowNLL = RunningStats()
            var offset = 0
            while offset < c - 1 {
                // Positions offset..<end of the window produce logits for tokens offset+1...end.
                let batch = min(model.session.maxBatch, reference?.session.maxBatch ?? model.session.maxBatch)
                let end = min(c - 1, offset + batch)
                let chunk = Array(window[offset..<end])
                let logits = try model.session.forward(chunk, logits: .all)
                let refLogits = try reference?.session.forward(chunk, logits: .all)
                for i in 0..<chunk.count where offset + i >= firstScored {
                    let rows = (i * vocab)..<((i + 1) * vocab)
                    windowNLL.add(
                        tally.add(
                            row: UnsafeBufferPointer(rebasing: logits[rows]), target: window[offset + i + 1],
                            reference: refLogits.map { UnsafeBufferPointer(rebasing: $0[rows]) }))
                }
                offset = end
            }
            perWindow.append(windowNLL.mean)
            progress(w + 1, windows, Date().timeIntervalSince(start))
        }
        return PerplexityReport(
            tokens: tally.nll.count, windows: windows, context: c,
            meanNLL: Estimate(value: tally.nll.mean, uncertainty: tally.nll.standardError), ppl: Tally.perplexity(tally.nll),
            perWindowMeanNLL: perWindow, reference: reference == nil ? nil : tally.comparison())
    }

    /// [BOS] when windows start with it, else nothing; refuses a context outside the models' and a reference with
    /// another vocabulary.
    private static func windowPrefix(model: LanguageModel, reference: LanguageModel?, options: PerplexityOptions) throws(EdgeLMError) -> [Int] {
        let c = options.context
        guard c >= 2 else { throw .invalidArgument("--context \(c): must be at least 2") }
        guard c <= model.session.contextLength else {
            throw .invalidArgument("--context \(c) exceeds the context length \(model.session.contextLength)")
        }
        if let reference {
            guard reference.tokenizer.data.pieces == model.tokenizer.data.pieces else {
                throw .invalidArgument("the reference model has a different vocabulary: KL divergence needs the same tokens")
            }
            guard c <= reference.session.contextLength else {
                throw .invalidArgument("--context \(c) exceeds the reference context length \(reference.session.contextLength)")
            }
        }
        guard options.addBOS ?? model.tokenizer.data.addsBOS else { return [] }
        guard let bos = model.tokenizer.bos else { throw .invalidInput("the model has no BOS token to start windows with") }
        return [bos]
    }

    /// The running sums of every scored token: the model's NLL and, against a reference, its NLL, their ratio, the KL
    /// divergence, the change in the target's probability and top-1 agreement.
    private struct Tally {
        var nll = RunningStats(), refNLL = RunningStats(), pair = RunningCovariance()
        var lnRatio = RunningStats(), kld = RunningStats(), deltaP = RunningStats()
        var kldValues: [Double] = []
        var deltaPSquares = 0.0
        var sameTop1 = 0

        /// Scores `target` under one logits row (and the reference's row); returns the model's NLL.
        mutating func add(row: UnsafeBufferPointer<Float>, target: Int, reference refRow: UnsafeBufferPointer<Float>?) -> Double {
            let q = LogSoftmax(row)
            let value = q.logSumExp - Double(row[target])
            nll.add(value)
            guard let refRow else { return value }
            let r = LogSoftmax(refRow)
            let refValue = r.logSumExp - Double(refRow[target])
            refNLL.add(refValue)
            pair.add(value, refValue)
            lnRatio.add(value - refValue)
            let k = LogSoftmax.klDivergence(reference: refRow, r, model: row, q)
            kld.add(k)
            kldValues.append(k)
            let dp = exp(-value) - exp(-refValue)
            deltaP.add(dp)
            deltaPSquares += dp * dp
            if q.argmax == r.argmax { sameTop1 += 1 }
            return value
        }

        static func perplexity(_ s: RunningStats) -> Estimate {
            let p = exp(s.mean)
            return Estimate(value: p, uncertainty: p * s.standardError)
        }

        /// The comparison with the reference.
        func comparison() -> PerplexityReport.ReferenceComparison {
            let sorted = kldValues.sorted()
            let pq = exp(nll.mean), pr = exp(refNLL.mean), n = Double(nll.count)
            let diffVariance = (pq * pq * nll.variance + pr * pr * refNLL.variance - 2 * pq * pr * pair.covariance) / n
            let ratio = exp(lnRatio.mean)
            return .init(
                ppl: Self.perplexity(refNLL),
                pplRatio: Estimate(value: ratio, uncertainty: ratio * lnRatio.standardError),
                lnPPLRatio: Estimate(value: lnRatio.mean, uncertainty: lnRatio.standardError),
                pplDifference: Estimate(value: pq - pr, uncertainty: max(0, diffVariance).squareRoot()),
                kldMean: Estimate(value: kld.mean, uncertainty: kld.standardError), kldMax: sorted.last ?? 0,
                kldPercentiles: Dictionary(uniqueKeysWithValues: [99.9, 99, 95, 90, 50, 10, 5, 1].map { (String($0), percentile(sorted, $0)) }),
                deltaPMean: Estimate(value: deltaP.mean, uncertainty: deltaP.standardError),
                deltaPRMS: (deltaPSquares / n).squareRoot(), sameTop1: Double(sameTop1) / n)
        }
    }
}

/// log-softmax facts of one logits row, computed in Double.
struct LogSoftmax {
    let logSumExp: Double
    let argmax: Int

    init(_ row: UnsafeBufferPointer<Float>) {
        var m = row[0]
        var best = 0
        for i in 1..<row.count where row[i] > m {
            m = row[i]
            best = i
        }
        var sum = 0.0
        for x in row { sum += exp(Double(x - m)) }
        logSumExp = Double(m) + log(sum)
        argmax = best
    }

    /// KL(reference || model) = Σ p_ref (log p_ref - log p_model).
    static func klDivergence(
        reference: UnsafeBufferPointer<Float>, _ r: LogSoftmax, model: UnsafeBufferPointer<Float>,
        _ q: LogSoftmax
    ) -> Double {
        var sum = 0.0
        for i in 0..<reference.count {
            let lr = Double(reference[i]) - r.logSumExp
            sum += exp(lr) * (lr - (Double(model[i]) - q.logSumExp))
        }
        return max(0, sum)
    }
}
