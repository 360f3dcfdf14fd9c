import Foundation

/// One generation between steps: picks each next token from the logits, applies the stop conditions
/// (EOS, the token budget, stop strings matched across token boundaries) and turns tokens into text that
/// never splits a UTF-8 character nor shows the beginning of a stop string that may still complete.
/// The caller owns the forward passes, so one loop can drive many streams (a server's slots).
public struct TokenStream: Sendable {
    /// Generated ids so far (the one that stopped generation excluded).
    public private(set) var generated: [Int] = []
    /// Why it stopped, once it has.
    public private(set) var finished: StopReason?
    /// Seconds each step spent on the constraint (computing its token mask and applying it).
    public private(set) var maskSeconds: [Double] = []
    /// Tokens the constraint forced (`fastForward`): accepted without a sample.
    public private(set) var forcedTokens = 0

    private let parameters: GenerateParameters
    private let endTokens: Set<Int>
    private var sampler: Sampler
    private var decoder: StreamingDecoder
    private var history: [Int]
    /// Decoded text not yet returned because it could be the start of a stop string.
    private var held = ""
    private let constraint: TokenConstraint?
    private var constraintState: TokenConstraint.State?

    /// A stream continuing `prompt`; `constraint` (compiled from `parameters.constraint` for this tokenizer)
    /// masks the tokens that cannot continue a valid output and ends the stream when the output is complete.
    public init(tokenizer: Tokenizer, prompt: [Int], parameters: GenerateParameters, constraint: TokenConstraint? = nil) {
        self.parameters = parameters
        endTokens = Set(tokenizer.data.endOfGenerationIDs)
        sampler = Sampler(parameters: parameters.sampling)
        let atStart = prompt.allSatisfy { tokenizer.bytes(of: $0).isEmpty }
        decoder = StreamingDecoder(tokenizer: tokenizer, atSequenceStart: atStart)
        history = prompt
        self.constraint = constraint
        constraintState = constraint?.initialState(atSequenceStart: atStart)
        if parameters.maxTokens == 0 { finished = .maxTokens }
    }

    /// What one step produced.
    public struct Step: Sendable {
        /// The new token (nil when EOS ended the stream).
        public let token: Int?
        /// Text that became final (possibly empty).
        public let text: String
        /// True when generation goes on: feed `token` and call `next` with the logits after it.
        public let continues: Bool
        /// With `GenerateParameters.logprobs`: the token's log-probability and the most likely alternatives.
        public var logprobs: TokenLogprobs? = nil
    }

    /// Takes the logits after the last token and samples the next one.
    public mutating func next(_ logits: UnsafeBufferPointer<Float>) -> Step {
        guard finished == nil else { return Step(token: nil, text: "", continues: false) }
        let masked = constrained(logits)
        let history = self.history
        let token = masked.map { m in m.withUnsafeBufferPointer { sampler.sample($0, history: history) } } ?? sampler.sample(logits, history: history)
        return withLogprobs(accept(token), masked: masked, logits: logits, history: history)
    }

    /// Accepts the tokens the constraint forces next — each the only token its step's mask allows, where the output
    /// may not end — without sampling them, at most `limit`. The caller feeds them after the pending token in one
    /// batch and calls `next` with the logits after the last (unless the last step does not continue). Their
    /// probability under the masked distribution is 1, so output is what sampling would give (greedy: the same
    /// tokens; seeded sampling draws fewer random numbers). None when `parameters.logprobs` asks for what the
    /// sampler saw at every token.
    public mutating func fastForward(limit: Int) -> [Step] {
        guard parameters.logprobs == nil, let constraint else { return [] }
        var steps: [Step] = []
        while steps.count < limit, finished == nil, let state = constraintState, let token = constraint.forcedToken(state) {
            steps.append(accept(token))
            forcedTokens += 1
        }
        return steps
    }

    /// `step` with its token's log-probabilities when `parameters.logprobs` asks for them.
    private func withLogprobs(_ step: Step, masked: [Float]?, logits: UnsafeBufferPointer<Float>, history: [Int]) -> Step {
        guard let top = parameters.logprobs, let token = step.token else { return step }
        let values = masked.map { m in m.withUnsafeBufferPointer { sampler.adjusted($0, history: history) } } ?? sampler.adjusted(logits, history: history)
        var out = step
        out.logprobs = Sampler.logprobs(values, token: token, top: top)
        return out
    }

    /// The logits with every token the constraint refuses at -infinity (end-of-generation tokens allowed only when
    /// the output is complete); nil without a constraint.
    private mutating func constrained(_ logits: UnsafeBufferPointer<Float>) -> [Float]? {
        guard let constraint, let state = constraintState else { return nil }
        let start = DispatchTime.now().uptimeNanoseconds
        defer { maskSeconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
        let mask = constraint.mask(state)
        // Whole words of allowed tokens are copied, refused ones stay -inf: few operations in a string (nearly all
        // allowed) and between keys (nearly all refused) alike.
        var masked = [Float](repeating: -.infinity, count: logits.count)
        masked.withUnsafeMutableBufferPointer { m in
            let n = m.count
            for w in mask.bits.indices where mask.bits[w] != 0 {
                let base = w << 6
                if mask.bits[w] == ~0, base + 64 <= n {
                    (m.baseAddress! + base).update(from: logits.baseAddress! + base, count: 64)
                    continue
                }
                var allowed = mask.bits[w]
                while allowed != 0 {
                    let i = base | allowed.trailingZeroBitCount
                    if i < n { m[i] = logits[i] }
                    allowed &= allowed - 1
                }
            }
        }
        if mask.allowsEnd { for id in endTokens where id < logits.count { masked[id] = logits[id] } }
        return masked
    }

    /// Checks drafted tokens against the target model: `rows` holds the logits after the pending token and after each
    /// of `draft.tokens` ([draft.tokens.count + 1, vocab]). Keeps drafts while the sampler's verification keeps them,
    /// then takes one more token (the replacement of the first rejected draft, or after all of them a token from the
    /// last row), so every token follows the distribution `next` would have drawn from (greedy: the same tokens).
    /// Returns the steps in order and how many drafts were kept; the last step's token is the new pending one.
    public mutating func verify(_ rows: UnsafeBufferPointer<Float>, vocab: Int, draft: Draft) -> (steps: [Step], accepted: Int) {
        var steps: [Step] = []
        for i in 0...draft.tokens.count {
            guard finished == nil else { break }
            let row = UnsafeBufferPointer(rebasing: rows[(i * vocab)..<((i + 1) * vocab)])
            guard i < draft.tokens.count else {
                steps.append(next(row))
                break
            }
            let masked = constrained(row)
            let (current, history) = (sampler, self.history)
            let candidates =
                masked.map { m in m.withUnsafeBufferPointer { current.candidates($0, history: history) } }
                ?? current.candidates(row, history: history)
            let token = sampler.verify(draft: draft.tokens[i], candidates: candidates, proposal: draft.proposals?[i])
            let step = withLogprobs(accept(token), masked: masked, logits: row, history: history)
            steps.append(step)
            if !step.continues || token != draft.tokens[i] { break }
        }
        let accepted = zip(steps, draft.tokens).prefix { $0.token == $1 }.count
        return (steps, min(accepted, steps.count - 1))
    }

    /// Appends `token` as the next generated one, applying the stop conditions.
    private mutating func accept(_ token: Int) -> Step {
        if parameters.stopAtEOS || constraint != nil, endTokens.contains(token) {
            finished = .endOfSequence
            return Step(token: nil, text: flushHeld(), continues: false)
        }
        generated.append(token)
        history.append(token)
        var text = release(decoder.append(token))
        if let constraint, let state = constraintState {
            constraintState = constraint.advance(state, token: token)
            if let next = constraintState, !constraint.isComplete(next) { constraint.prefetch(next) }
            // A complete output ends the stream (a token the mask refused cannot arrive: every sampler respects -inf).
            if constraintState.map(constraint.isComplete) ?? true, finished == nil {
                finished = .endOfSequence
                text += flushHeld()
            }
        }
        if finished != nil { return Step(token: token, text: text, continues: false) }
        if generated.count >= parameters.maxTokens {
            finished = .maxTokens
            return Step(token: token, text: text + flushHeld(), continues: false)
        }
        return Step(token: token, text: text, continues: true)
    }

    /// Ends the stream early (`reason`: the context is full, or the consumer left) and returns what is left.
    public mutating func finish(_ reason: StopReason) -> String {
        guard finished == nil else { return "" }
        finished = reason
        return flushHeld()
    }

    /// The decoder's remaining bytes and held text, checked for stop strings one last time.
    private mutating func flushHeld() -> String {
        let tail = held + decoder.flush()
        held = ""
        if let cut = firstStop(in: tail) { return String(tail[..<cut]) }
        return tail
    }

    /// Appends `piece` to the held text; returns what can no longer be part of a stop string.
    private mutating func release(_ piece: String) -> String {
        held += piece
        if let cut = firstStop(in: held) {
            finished = .stopString
            let text = String(held[..<cut])
            held = ""
            return text
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        var keep = 0
        for stop in parameters.stop {
            var n = min(stop.count - 1, held.count)
            while n > keep {
                if held.hasSuffix(stop.prefix(n)) { keep = n; break }
                n -= 1
            }
        }
        let split = held.index(held.endIndex, offsetBy: -keep)
        let text = String(held[..<split])
        held = String(held[split...])
        return text
    }

    private func firstStop(in text: String) -> String.Index? {
        parameters.stop.compactMap { text.range(of: $0)?.lowerBound }.min()
    }
}
