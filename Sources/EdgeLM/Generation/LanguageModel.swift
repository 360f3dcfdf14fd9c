import Foundation

/// The public entry point: a model file opened for tokenization and generation.
///
/// ```swift
/// let lm = try LanguageModel(path: "stories260K-q8.edgelm")
/// var params = GenerateParameters()
/// params.maxTokens = 64
/// for try await event in lm.generate(prompt: "Once upon a time", parameters: params) {
///     if case .text(let piece) = event { print(piece, terminator: "") }
/// }
/// ```
public final class LanguageModel: @unchecked Sendable {
    /// The loaded weights.
    public let model: TransformerModel
    /// The tokenizer built from the file's vocabulary.
    public let tokenizer: Tokenizer
    /// The forward-pass state (one sequence at a time).
    public let session: InferenceSession
    private let lock = NSLock()

    /// Opens `path` with `threads` workers (default: physical cores); `verify` checks checksums first.
    /// The session keeps a KV cache of `contextLength` positions (default: the model's context; see
    /// `InferenceSession.init`) storing keys as `keyType` and values as `valueType`, running kernels at `level`.
    public init(
        path: String, threads: Int? = nil, verify: Bool = false, keyType: KVCacheType = .q8, valueType: KVCacheType = .q8,
        contextLength: Int? = nil, activationGranularity: ActivationGranularity = .block32, keySmoothing: Bool = true,
        level: KernelLevel = .detected
    ) throws(EdgeLMError) {
        if let threads, threads < 1 { throw .invalidArgument("--threads \(threads): must be at least 1") }
        model = try TransformerModel(path: path, verify: verify, level: level)
        tokenizer = try Tokenizer(data: model.tokenizerData)
        session = try InferenceSession(
            model: model, threads: threads, level: level, keyType: keyType, valueType: valueType,
            contextLength: contextLength,
            activationGranularity: activationGranularity, keySmoothing: keySmoothing)
    }

    /// Hyper-parameters.
    public var config: ModelConfig { model.config }

    /// Token ids of `text`, with BOS first when `addBOS` and EOS last when `addEOS` (nil: as the model's tokenizer
    /// says, `TokenizerData.addsBOS` / `addsEOS`). A text that already starts with the BOS token (a chat
    /// template that writes it) does not get a second one.
    public func encode(_ text: String, addBOS: Bool? = nil, addEOS: Bool? = nil) -> [Int] {
        var ids = tokenizer.encode(text)
        if addBOS ?? tokenizer.data.addsBOS, let bos = tokenizer.bos, ids.first != bos { ids.insert(bos, at: 0) }
        if addEOS ?? tokenizer.data.addsEOS, let eos = tokenizer.eos { ids.append(eos) }
        return ids
    }

    /// Text of `ids`.
    public func decode(_ ids: [Int]) -> String { tokenizer.decode(ids) }

    /// Generates synchronously, calling `onToken` with each new id and its text (id -1 for text that
    /// comes with no new token at the end); return false to stop. The prompt's longest prefix already in
    /// the KV cache (from the previous call) is not evaluated again. With `parameters.speculation`, drafted tokens
    /// are verified several per forward pass (see `SpeculationParameters`); `onToken` still sees one token at a time.
    public func generate(
        promptTokens: [Int], parameters: GenerateParameters,
        onToken: (Int, String) -> Bool
    ) throws(EdgeLMError) -> GenerationInfo {
        try parameters.validate()
        let context = session.contextLength
        guard !promptTokens.isEmpty else { throw .invalidInput("the prompt is empty (this model starts prompts without a BOS token)") }
        guard promptTokens.count <= context else {
            throw .invalidInput("the prompt is \(promptTokens.count) tokens, longer than the context of \(context) tokens")
        }
        lock.lock()
        defer { lock.unlock() }
        var speculator = try parameters.speculation.map { spec throws(EdgeLMError) in
            Speculator(drafter: try drafter(for: spec), parameters: spec, sampling: parameters.sampling)
        }
        let constraint = try parameters.constraint.map { c throws(EdgeLMError) in try TokenConstraint(c, tokenizer: tokenizer) }
        var stream = TokenStream(tokenizer: tokenizer, prompt: promptTokens, parameters: parameters, constraint: constraint)
        let start = Date()
        let (promptLogits, evaluated) = try session.prefill(promptTokens)
        let promptSeconds = Date().timeIntervalSince(start)
        let genStart = Date()
        var steps = [stream.next(promptLogits)]
        generation: while true {
            for step in steps where step.token != nil || !step.text.isEmpty {
                if !onToken(step.token ?? -1, step.text) {
                    _ = stream.finish(.cancelled)
                    break generation
                }
            }
            guard let last = steps.last, last.continues, let pending = last.token else { break }
            if session.position >= context {
                let tail = stream.finish(.contextFull)
                if !tail.isEmpty { _ = onToken(-1, tail) }
                break
            }
            let forced = stream.fastForward(limit: min(context - session.position - 1, session.maxBatch - 1))
            if !forced.isEmpty {
                // Tokens the constraint forces go through the model in one batch with `pending`.
                let tokens = [pending] + forced.compactMap(\.token)
                steps = forced
                if forced.last!.continues { steps.append(stream.next(try session.forward(tokens))) }
                continue
            }
            // Room for drafts: the context, one verification batch, and the tokens still wanted after `pending`.
            let room = min(context - session.position - 1, session.maxBatch - 1, parameters.maxTokens - stream.generated.count - 1)
            let passStart = Date()
            let draft = try speculator?.draft(after: session.tokens + [pending], limit: room) ?? Draft(tokens: [])
            if draft.tokens.isEmpty {
                steps = [stream.next(try session.forward([pending]))]
                speculator?.recordPlain(seconds: Date().timeIntervalSince(passStart))
                continue
            }
            let base = session.position
            let rows = try session.verify([pending] + draft.tokens)
            let verified = stream.verify(rows, vocab: config.vocabSize, draft: draft)
            try session.rewind(to: base + 1 + verified.accepted)
            speculator?.record(drafted: draft.tokens.count, kept: verified.accepted, seconds: Date().timeIntervalSince(passStart))
            steps = verified.steps
        }
        var info = GenerationInfo(
            promptTokens: promptTokens.count, promptTokensEvaluated: evaluated, promptSeconds: promptSeconds,
            generatedTokens: stream.generated.count, generateSeconds: Date().timeIntervalSince(genStart),
            stopReason: stream.finished ?? .maxTokens, tokens: stream.generated)
        info.draftedTokens = speculator?.drafted ?? 0
        info.acceptedTokens = speculator?.accepted ?? 0
        info.maskSeconds = stream.maskSeconds
        info.forcedTokens = stream.forcedTokens
        return info
    }

    /// The draft model loaded by `loadDraft`, if any.
    public private(set) var draftModel: DraftModel?

    /// Loads the model at `path` to draft for this one (`SpeculationParameters.Source.model`); it must share this
    /// model's vocabulary.
    public func loadDraft(path: String) throws(EdgeLMError) {
        let draft = try DraftModel(path: path, for: self)
        lock.lock()
        draftModel = draft
        lock.unlock()
    }

    /// The drafter `spec` asks for.
    private func drafter(for spec: SpeculationParameters) throws(EdgeLMError) -> Drafter {
        switch spec.source {
        case .lookup: return PromptLookup(ngram: spec.ngram)
        case .model:
            guard let draftModel else { throw .invalidArgument("speculation from a draft model needs one: load it first (--draft MODEL)") }
            return draftModel
        }
    }

    /// Generates from `prompt` as an asynchronous stream of text pieces, ending with `.info`. Cancelling the
    /// consuming task stops generation after the current token.
    public func generate(prompt: String, parameters: GenerateParameters) -> AsyncThrowingStream<Generation, Error> {
        let tokens = encode(prompt, addBOS: parameters.addBOS)
        return AsyncThrowingStream { continuation in
            let cancelled = CancellationFlag()
            continuation.onTermination = { _ in cancelled.set() }
            let thread = Thread {
                do {
                    let info = try self.generate(promptTokens: tokens, parameters: parameters) { _, text in
                        if !text.isEmpty { continuation.yield(.text(text)) }
                        return !cancelled.isSet
                    }
                    continuation.yield(.info(info))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.start()
        }
    }
}

/// A flag set from one thread and read from another (a consumer that stopped listening).
public final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    /// A flag not yet set.
    public init() {}

    /// Sets the flag.
    public func set() {
        lock.lock()
        value = true
        lock.unlock()
    }

    /// Whether the flag is set.
    public var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}
