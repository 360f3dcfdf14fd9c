/// How generation drafts tokens for the target model to verify several at a time (speculative decoding): one forward
/// pass over the pending token and k drafts reads the weights once, about the cost of one decode step, and keeps every
/// draft the target agrees with. Greedy output is the plain decoding's token for token; with sampling, every kept
/// token follows the target's distribution (`Sampler.verify`).
public struct SpeculationParameters: Sendable, Equatable {
    /// Where drafts come from.
    public enum Source: String, Sendable, CaseIterable {
        /// Prompt lookup: the tokens that followed the latest earlier occurrence of the sequence's last n tokens
        /// (free, and strong when the output repeats the input: rewriting, summarising, editing code).
        case lookup
        /// A draft model with the same vocabulary (`LanguageModel.loadDraft`), for example the same checkpoint at fewer bits.
        case model
    }

    /// Where drafts come from.
    public var source: Source
    /// Most drafted tokens per verification; the length in use adapts to how many the target keeps (all kept: 2 more
    /// next time, else 1 fewer).
    public var maxDraft: Int = 8
    /// Lengths of the suffix prompt lookup searches for, longest first.
    public var ngram: ClosedRange<Int> = 2...4
    /// Whether generation (`generate`, `chat`, the Swift API) pauses drafting while speculative passes cost more
    /// time per generated token than plain decode steps (timed as it runs; `Speculator`). Off: every pass drafts.
    /// The server's batched slots are not timed one by one: they draft every pass after their first.
    public var adaptive = true

    /// Speculation from `source` with the default lengths.
    public init(source: Source) { self.source = source }

    /// Checks the ranges; the error names the option.
    public func validate() throws(EdgeLMError) {
        guard (1...Self.maxDraftLimit).contains(maxDraft) else {
            throw .invalidArgument("--draft-max \(maxDraft): must be in 1...\(Self.maxDraftLimit)")
        }
        guard ngram.lowerBound >= 1, ngram.upperBound <= 16 else {
            throw .invalidArgument("--lookup-min \(ngram.lowerBound) --lookup-max \(ngram.upperBound): lengths must be in 1...16")
        }
    }

    /// The largest draft: with the pending token, one verification batch of 64 tokens.
    public static let maxDraftLimit = 63
}

/// Tokens proposed for the target model to verify in one forward pass.
public struct Draft: Sendable {
    /// The proposed continuation.
    public var tokens: [Int]
    /// The distribution each token was drawn from; nil when they were chosen deterministically (prompt lookup,
    /// greedy drafting).
    public var proposals: [Candidates]?

    /// A draft of `tokens`.
    public init(tokens: [Int], proposals: [Candidates]? = nil) {
        self.tokens = tokens
        self.proposals = proposals
    }
}

/// Proposes continuations of a sequence.
public protocol Drafter: AnyObject {
    /// Up to `count` tokens likely to follow `history` (the whole sequence, prompt included); `sampler` is the
    /// drafter's own, with the generation's sampling options.
    func draft(after history: [Int], count: Int, sampler: inout Sampler) throws(EdgeLMError) -> Draft
}

/// Prompt-lookup drafting: finds the latest earlier occurrence of the sequence's last n tokens (n from the longest of
/// `ngram` down) and proposes what followed it.
public final class PromptLookup: Drafter {
    /// Suffix lengths searched, longest first.
    public let ngram: ClosedRange<Int>

    /// A drafter matching suffixes of `ngram` tokens.
    public init(ngram: ClosedRange<Int>) { self.ngram = ngram }

    public func draft(after history: [Int], count: Int, sampler: inout Sampler) -> Draft {
        guard count > 0 else { return Draft(tokens: []) }
        return history.withUnsafeBufferPointer { h in
            for n in ngram.reversed() where h.count > n {
                let key = h.count - n
                var i = key - 1
                while i >= 0 {
                    var j = 0
                    while j < n, h[i + j] == h[key + j] { j += 1 }
                    if j == n {
                        let from = i + n
                        return Draft(tokens: Array(h[from..<min(from + count, h.count)]))
                    }
                    i -= 1
                }
            }
            return Draft(tokens: [])
        }
    }
}

/// A smaller or coarser model drafting for the target: it must share the target's vocabulary. It runs on the
/// target's workers (drafting and verification alternate) with its own KV cache, which keeps what it already holds of
/// the sequence between drafts.
public final class DraftModel: Drafter, @unchecked Sendable {
    /// The draft weights.
    public let model: TransformerModel
    /// The draft's sequence state.
    public let session: InferenceSession

    /// Opens the draft model at `path` for `target`, refusing one whose vocabulary differs from the target's.
    public convenience init(path: String, for target: LanguageModel) throws(EdgeLMError) {
        let model = try TransformerModel(path: path, level: target.session.level)
        let mine = model.tokenizerData, theirs = target.model.tokenizerData
        guard model.config.vocabSize == target.config.vocabSize, mine.pieces == theirs.pieces, mine.kind == theirs.kind else {
            throw .invalidInput(
                "\(path): the draft model's vocabulary (\(model.config.vocabSize) tokens) is not the target's "
                    + "(\(target.config.vocabSize) tokens): drafts must use the same token ids")
        }
        try self.init(model: model, for: target.session)
    }

    /// A drafter running `model` (whose vocabulary is the target's) beside the target session `target`: same context,
    /// cache types, kernel level and workers.
    public init(model: TransformerModel, for target: InferenceSession) throws(EdgeLMError) {
        self.model = model
        session = try InferenceSession(model: model, options: target.options, pool: target.pool)
    }

    public func draft(after history: [Int], count: Int, sampler: inout Sampler) throws(EdgeLMError) -> Draft {
        let count = min(count, session.contextLength - history.count)
        guard count > 0 else { return Draft(tokens: []) }
        var logits = try session.prefill(history).logits
        var sequence = history
        var proposals: [Candidates] = []
        for i in 0..<count {
            let candidates = sampler.candidates(logits, history: sequence)
            sequence.append(sampler.draw(from: candidates))
            proposals.append(candidates)
            if i + 1 < count { logits = try session.forward([sequence[sequence.count - 1]]) }
        }
        return Draft(tokens: Array(sequence[history.count...]), proposals: sampler.parameters.temperature == 0 ? nil : proposals)
    }
}

/// The drafting side of one generation: its drafter and sampler, the draft length (adapted to the acceptance), and
/// the counts `GenerationInfo` reports. Given the time of each pass, it also pauses drafting while speculative passes
/// cost more time per generated token than plain decode steps (a draft model hardly faster than its target, drafts
/// rarely kept): plain steps for 4 passes, then 8, 16, ... up to 256 while it keeps losing, probing in between
/// (`SpeculationParameters.adaptive`).
public struct Speculator {
    private let drafter: Drafter
    private var sampler: Sampler
    private let maxDraft: Int
    /// The next draft's length.
    public private(set) var length: Int
    /// Tokens drafted so far.
    public private(set) var drafted = 0
    /// Of those, the tokens the target kept.
    public private(set) var accepted = 0
    /// Seconds per generated token of plain decode steps and of speculative passes (drafting included), smoothed;
    /// nil until measured (the speculative cost again after each pause).
    private var plainCost: Double?, speculativeCost: Double?
    /// Passes still to decode plainly, and the length of the next pause.
    private var pause: Int, nextPause = Self.shortestPause
    /// Whether it pauses (`SpeculationParameters.adaptive`).
    private let adaptive: Bool
    /// The first pause's length in passes; each pause in a row doubles it, up to `longestPause`.
    static let shortestPause = 4, longestPause = 256

    /// Drafting with `drafter` for a generation sampled with `sampling` (the draft sampler is seeded apart from the
    /// target's).
    public init(drafter: Drafter, parameters: SpeculationParameters, sampling: SamplingParameters) {
        self.drafter = drafter
        var own = sampling
        own.seed = sampling.seed ^ 0x9E37_79B9_7F4A_7C15
        sampler = Sampler(parameters: own)
        maxDraft = parameters.maxDraft
        length = min(4, parameters.maxDraft)
        adaptive = parameters.adaptive
        pause = adaptive ? 1 : 0
    }

    /// A draft of at most `limit` tokens (and at most the current length) after `history`; none while drafting is
    /// paused (the first pass is a plain step, to measure one).
    public mutating func draft(after history: [Int], limit: Int) throws(EdgeLMError) -> Draft {
        if pause > 0 {
            pause -= 1
            return Draft(tokens: [])
        }
        let count = min(length, limit)
        guard count > 0 else { return Draft(tokens: []) }
        return try drafter.draft(after: history, count: count, sampler: &sampler)
    }

    /// Records a verification that kept `kept` of `count` drafts, adapting the length; with the pass's `seconds`
    /// (drafting and verification), pauses drafting when speculative passes cost more per token than plain steps.
    public mutating func record(drafted count: Int, kept: Int, seconds: Double? = nil) {
        guard count > 0 else { return }
        drafted += count
        accepted += kept
        length = kept == count ? min(maxDraft, length + 2) : max(1, length - 1)
        guard adaptive, let seconds else { return }
        speculativeCost = Self.smoothed(speculativeCost, seconds / Double(kept + 1))
        guard let plain = plainCost, let speculative = speculativeCost else { return }
        if speculative > plain {
            pause = nextPause
            nextPause = min(Self.longestPause, 2 * nextPause)
            speculativeCost = nil
        } else {
            nextPause = Self.shortestPause
        }
    }

    /// Records a plain decode step of `seconds` (no draft).
    public mutating func recordPlain(seconds: Double) { plainCost = Self.smoothed(plainCost, seconds) }

    /// An exponential average that follows the cost as the context grows.
    private static func smoothed(_ average: Double?, _ sample: Double) -> Double { average.map { 0.7 * $0 + 0.3 * sample } ?? sample }
}
