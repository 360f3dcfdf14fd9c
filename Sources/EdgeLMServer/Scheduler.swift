import EdgeLM
import Foundation

/// One request as the scheduler runs it.
struct Job: Sendable {
    let prompt: [Int]
    let parameters: GenerateParameters
    /// `parameters.constraint` compiled for the model's vocabulary.
    var constraint: TokenConstraint? = nil
    /// An embedding request: `prompt`'s embedding instead of a generation.
    var embedding = false
    /// Set when the client has gone: the slot is freed at the next token.
    let cancelled: CancellationFlag
}

/// What a job streams back.
enum JobEvent: Sendable {
    /// Text that became final.
    case text(String)
    /// The embedding of an embedding job.
    case embedding([Float])
    /// A generated token with its log-probabilities (when the request asked for them), before its text.
    case token(TokenLogprobs)
    /// The end: why, and the token counts for `usage`.
    case done(reason: StopReason, promptTokens: Int, evaluated: Int, completionTokens: Int)
    /// The forward pass failed.
    case failed(String)
}

/// Runs every forward pass of the server on one thread: `slots` sessions share the memory-mapped model
/// and one worker pool, each with its own KV cache; requests beyond the slots wait in a bounded queue.
/// A new request takes the free slot whose cache shares the longest prefix with its prompt and evaluates
/// only the rest; then all busy slots advance together, one batched forward pass per decode step
/// (`InferenceSession.decodeStep`), so the weights are read once per step for every client.
final class Scheduler: @unchecked Sendable {
    let model: LanguageModel
    let metrics: ServerMetrics
    let queueLimit: Int
    private let slots: [InferenceSession]
    private let condition = NSCondition()
    private var queue: [(Job, AsyncStream<JobEvent>.Continuation)] = []
    private var stopping = false
    private var thread: Thread?
    /// Each slot's draft model session (speculation from a draft model), made on first use.
    private var draftModels: [Int: DraftModel] = [:]

    /// A running generation in a slot.
    private struct Active {
        let slot: Int
        let job: Job
        let continuation: AsyncStream<JobEvent>.Continuation
        var stream: TokenStream
        var next: Int
        let evaluated: Int
        /// Drafting for this job, when it speculates.
        var speculator: Speculator?
    }

    /// `slots` sessions over `model`, each set up like the model's own session (which serves as the first): same
    /// context, cache types, kernel level and activations, sharing its workers.
    init(model: LanguageModel, slots: Int, queueLimit: Int, metrics: ServerMetrics) throws(EdgeLMError) {
        self.model = model
        self.metrics = metrics
        self.queueLimit = queueLimit
        var sessions = [model.session]
        for _ in 1..<max(1, slots) {
            sessions.append(try InferenceSession(model: model.model, options: model.session.options, pool: model.session.pool))
        }
        self.slots = sessions
        metrics.set("edgelm_slots_total", Double(sessions.count))
    }

    /// Context positions of every slot.
    var contextLength: Int { slots[0].contextLength }

    /// Starts the scheduling thread.
    func start() {
        let t = Thread { [self] in self.loop() }
        t.stackSize = 8 << 20
        t.start()
        thread = t
    }

    /// Stops after the current step; queued and running jobs end with `.failed`.
    func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }

    /// Queues `job`; nil when the queue is full (the caller answers 503).
    func submit(_ job: Job) -> AsyncStream<JobEvent>? {
        var continuation: AsyncStream<JobEvent>.Continuation!
        let stream = AsyncStream<JobEvent> { continuation = $0 }
        let accepted: Bool = condition.withLock {
            guard queue.count < queueLimit, !stopping else { return false }
            queue.append((job, continuation))
            metrics.set("edgelm_queue_length", Double(queue.count))
            condition.signal()
            return true
        }
        if !accepted {
            continuation.finish()
            return nil
        }
        continuation.onTermination = { _ in job.cancelled.set() }
        return stream
    }

    private func loop() {
        var active: [Active] = []
        var free = Array(slots.indices)
        while true {
            guard let admitted = admit(active: active.count, free: &free) else {
                shutDown(active)
                return
            }
            for (job, continuation, slot) in admitted {
                if let a = prefill(job, continuation, slot: slot) { active.append(a) } else { free.append(slot) }
            }
            endStopped(&active, free: &free)
            metrics.set("edgelm_slots_busy", Double(active.count))
            guard !active.isEmpty else { continue }
            let budget = (slots[0].maxBatch - active.count) / active.count
            let forced = fastForward(&active, free: &free, budget: budget)
            guard !active.isEmpty else { continue }
            let start = DispatchTime.now().uptimeNanoseconds
            guard let (logits, drafts) = evaluate(&active, forced: forced, budget: budget) else {
                free += active.map(\.slot)
                active.removeAll()
                continue
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, batch = active.count + drafts.reduce(0) { $0 + $1.tokens.count }
            let generated = deliver(logits, drafts: drafts, forced: forced, active: &active, free: &free)
            metrics.add("edgelm_generated_tokens_total", Double(generated))
            metrics.set("edgelm_decode_tokens_per_second", Double(generated) / max(seconds, 1e-9))
            metrics.set("edgelm_step_tokens", Double(batch))
            metrics.set("edgelm_slots_busy", Double(active.count))
        }
    }

    /// Queued jobs admitted into free slots (the slot sharing the longest prompt prefix first), waiting while there is
    /// nothing to do; nil when the server is stopping.
    private func admit(active: Int, free: inout [Int]) -> [(Job, AsyncStream<JobEvent>.Continuation, Int)]? {
        condition.withLock {
            while queue.isEmpty && active == 0 && !stopping { condition.wait() }
            guard !stopping else { return nil }
            var admitted: [(Job, AsyncStream<JobEvent>.Continuation, Int)] = []
            while !free.isEmpty, !queue.isEmpty {
                let (job, continuation) = queue.removeFirst()
                let best = free.max { sharedPrefix(slots[$0].tokens, job.prompt) < sharedPrefix(slots[$1].tokens, job.prompt) }!
                free.removeAll { $0 == best }
                admitted.append((job, continuation, best))
            }
            metrics.set("edgelm_queue_length", Double(queue.count))
            // Admitted jobs count as busy from here, before their prompts are evaluated.
            metrics.set("edgelm_slots_busy", Double(active + admitted.count))
            return admitted
        }
    }

    /// Fails every running and queued job: the server is shutting down.
    private func shutDown(_ active: [Active]) {
        for a in active { a.continuation.yield(.failed("the server is shutting down")); a.continuation.finish() }
        condition.withLock {
            for (_, c) in queue { c.yield(.failed("the server is shutting down")); c.finish() }
            queue.removeAll()
        }
    }

    /// Ends the jobs whose client left or whose context is full.
    private func endStopped(_ active: inout [Active], free: inout [Int]) {
        active.removeAll { a in
            let full = slots[a.slot].position >= slots[a.slot].contextLength
            guard a.job.cancelled.isSet || full else { return false }
            var s = a.stream
            let tail = s.finish(full ? .contextFull : .cancelled)
            if !tail.isEmpty { a.continuation.yield(.text(tail)) }
            finish(a, s)
            free.append(a.slot)
            return true
        }
    }

    /// The tokens a constraint forces, per slot: they join the slot's batch without a sample, and a slot whose
    /// forced tokens end its output is finished here, needing no forward pass.
    private func fastForward(_ active: inout [Active], free: inout [Int], budget: Int) -> [[TokenStream.Step]] {
        var forced: [[TokenStream.Step]] = [], continuing: [Active] = []
        for var a in active {
            let s = slots[a.slot]
            let steps = a.stream.fastForward(limit: min(s.contextLength - s.position - 1, budget))
            metrics.add("edgelm_forced_tokens_total", Double(steps.count))
            if let last = steps.last, !last.continues {
                for step in steps { Self.emit(step, to: a.continuation) }
                metrics.add("edgelm_generated_tokens_total", Double(steps.count))
                finish(a, a.stream)
                free.append(a.slot)
            } else {
                continuing.append(a)
                forced.append(steps)
            }
        }
        active = continuing
        return forced
    }

    /// One forward pass over every active slot: its next token, then its forced or drafted tokens (one verification
    /// batch), or one decode step when no slot has any. nil (every job failed and told) when the pass fails.
    private func evaluate(_ active: inout [Active], forced: [[TokenStream.Step]], budget: Int) -> (UnsafeBufferPointer<Float>, [Draft])? {
        var drafts = forced.map { Draft(tokens: $0.compactMap(\.token)) }
        do {
            let sessions = active.map { slots[$0.slot] }
            guard active.contains(where: { $0.speculator != nil }) || drafts.contains(where: { !$0.tokens.isEmpty }) else {
                return (try sessions[0].decodeStep(sessions, tokens: active.map(\.next)), drafts)
            }
            for i in active.indices where active[i].speculator != nil && forced[i].isEmpty {
                let s = sessions[i], a = active[i]
                let room = min(s.contextLength - s.position - 1, budget, a.job.parameters.maxTokens - a.stream.generated.count - 1)
                drafts[i] = try active[i].speculator!.draft(after: s.tokens + [a.next], limit: room)
            }
            return (try sessions[0].verifyStep(sessions, tokens: zip(active, drafts).map { [$0.next] + $1.tokens }), drafts)
        } catch {
            for a in active {
                a.continuation.yield(.failed("\(error)"))
                a.continuation.finish()
            }
            return nil
        }
    }

    /// Samples (or verifies drafts) from each slot's rows of `logits`, sends the tokens, and keeps the slots that
    /// go on; returns the tokens generated.
    private func deliver(
        _ logits: UnsafeBufferPointer<Float>, drafts: [Draft], forced: [[TokenStream.Step]], active: inout [Active],
        free: inout [Int]
    ) -> Int {
        let vocab = model.config.vocabSize
        var still: [Active] = [], row = 0, generated = 0
        for (i, var a) in active.enumerated() {
            let draft = drafts[i], rows = UnsafeBufferPointer(rebasing: logits[(row * vocab)..<((row + 1 + draft.tokens.count) * vocab)])
            row += 1 + draft.tokens.count
            var steps = [TokenStream.Step]()
            if !forced[i].isEmpty {
                steps = forced[i] + [a.stream.next(UnsafeBufferPointer(rebasing: rows[(draft.tokens.count * vocab)...]))]
            } else if draft.tokens.isEmpty {
                steps = [a.stream.next(UnsafeBufferPointer(rebasing: rows[0..<vocab]))]
            } else {
                let verified = a.stream.verify(rows, vocab: vocab, draft: draft)
                a.speculator?.record(drafted: draft.tokens.count, kept: verified.accepted)
                let session = slots[a.slot]
                try? session.rewind(to: session.position - (draft.tokens.count - verified.accepted))
                steps = verified.steps
                metrics.add("edgelm_draft_tokens_total", Double(draft.tokens.count))
                metrics.add("edgelm_draft_tokens_accepted_total", Double(verified.accepted))
            }
            generated += steps.filter { $0.token != nil }.count
            for step in steps { Self.emit(step, to: a.continuation) }
            if let last = steps.last, last.continues, let token = last.token {
                a.next = token
                still.append(a)
            } else {
                finish(a, a.stream)
                free.append(a.slot)
            }
        }
        active = still
        return generated
    }

    /// Sends a step's log-probabilities (if any) and text.
    private static func emit(_ step: TokenStream.Step, to continuation: AsyncStream<JobEvent>.Continuation) {
        if let l = step.logprobs { continuation.yield(.token(l)) }
        if !step.text.isEmpty { continuation.yield(.text(step.text)) }
    }

    /// Evaluates the job's prompt in `slot` and takes its first token; nil when it is already finished (an
    /// embedding job always is: its vector is sent at once).
    private func prefill(_ job: Job, _ continuation: AsyncStream<JobEvent>.Continuation, slot: Int) -> Active? {
        let session = slots[slot]
        do {
            if job.embedding {
                let vector = try session.embed(job.prompt)
                metrics.add("edgelm_prompt_tokens_total", Double(job.prompt.count))
                metrics.add("edgelm_prompt_tokens_evaluated_total", Double(job.prompt.count))
                continuation.yield(.embedding(vector))
                continuation.yield(.done(reason: .endOfSequence, promptTokens: job.prompt.count, evaluated: job.prompt.count, completionTokens: 0))
                continuation.finish()
                return nil
            }
            let (logits, evaluated) = try session.prefill(job.prompt)
            metrics.add("edgelm_prompt_tokens_total", Double(job.prompt.count))
            metrics.add("edgelm_prompt_tokens_evaluated_total", Double(evaluated))
            var stream = TokenStream(tokenizer: model.tokenizer, prompt: job.prompt, parameters: job.parameters, constraint: job.constraint)
            let step = stream.next(logits)
            Self.emit(step, to: continuation)
            let speculator = try job.parameters.speculation.map { spec throws(EdgeLMError) in
                Speculator(drafter: try drafter(spec, slot: slot), parameters: spec, sampling: job.parameters.sampling)
            }
            let a = Active(
                slot: slot, job: job, continuation: continuation, stream: stream, next: step.token ?? 0, evaluated: evaluated,
                speculator: speculator)
            guard step.continues else {
                if step.token != nil { metrics.add("edgelm_generated_tokens_total") }
                finish(a, stream)
                return nil
            }
            metrics.add("edgelm_generated_tokens_total")
            return a
        } catch {
            continuation.yield(.failed("\(error)"))
            continuation.finish()
            return nil
        }
    }

    /// The drafter of a job in `slot` speculating as `spec`: prompt lookup, or the slot's session of the draft model.
    private func drafter(_ spec: SpeculationParameters, slot: Int) throws(EdgeLMError) -> Drafter {
        switch spec.source {
        case .lookup: return PromptLookup(ngram: spec.ngram)
        case .model:
            if let existing = draftModels[slot] { return existing }
            guard let draft = model.draftModel else { throw .invalidArgument("speculation from a draft model needs one: start the server with --draft MODEL") }
            let made = try DraftModel(model: draft.model, for: slots[slot])
            draftModels[slot] = made
            return made
        }
    }

    private func finish(_ a: Active, _ stream: TokenStream) {
        a.continuation.yield(
            .done(
                reason: stream.finished ?? .maxTokens, promptTokens: a.job.prompt.count, evaluated: a.evaluated,
                completionTokens: stream.generated.count))
        a.continuation.finish()
    }
}

/// Length of the common prefix of two token lists.
func sharedPrefix(_ a: [Int], _ b: [Int]) -> Int {
    var n = 0
    while n < min(a.count, b.count), a[n] == b[n] { n += 1 }
    return n
}
