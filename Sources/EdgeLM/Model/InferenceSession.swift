import CEdgeKernels
import Foundation

/// One sequence being evaluated: the KV cache, every scratch buffer (allocated once, here), and the
/// forward pass. Not thread-safe: one session serves one sequence at a time.
public final class InferenceSession: @unchecked Sendable {
    /// The model.
    public let model: TransformerModel
    /// Worker threads.
    public let pool: ThreadPool
    /// Integer kernel level in use.
    public let level: KernelLevel
    /// Tokens per forward batch.
    public let maxBatch: Int
    /// Activation quantization granularity.
    public let activationGranularity: ActivationGranularity
    /// Tokens already in the KV cache.
    public internal(set) var position = 0
    /// Sees every linear layer's input while set (calibration); nil in normal use.
    public var observer: ActivationObserver?
    /// Times the forward pass stage by stage while set (`Benchmark.breakdown`); nil in normal use.
    var profile: ForwardProfile?
    /// The ids of those tokens, in order (what `prefill` compares a new prompt with).
    public internal(set) var tokens: [Int] = []
    /// Positions the KV cache holds: the model's context unless the session was created with another.
    public let contextLength: Int
    /// How the KV cache stores keys.
    public var keyType: KVCacheType { cache.keys.type }
    /// How the KV cache stores values.
    public var valueType: KVCacheType { cache.values.type }
    /// How this session was set up (its context and level as resolved): `init(model:options:pool:)` with these makes
    /// another session like it.
    public var options: SessionOptions {
        SessionOptions(
            threads: pool.threadCount, maxBatch: maxBatch, level: level, keyType: keyType, valueType: valueType,
            contextLength: contextLength, activationGranularity: activationGranularity, keySmoothing: cache.smoothKeys)
    }
    /// The cache types as `--kv-type` spells them: one name when K and V agree, else `K/V`.
    public var kvTypeName: String { keyType == valueType ? keyType.rawValue : "\(keyType)/\(valueType)" }

    let c: ModelConfig
    let x: UnsafeMutablePointer<Float>  // [maxBatch, dim] residual stream
    let xb: UnsafeMutablePointer<Float>  // [maxBatch, dim] normed input of a sublayer
    let q: UnsafeMutablePointer<Float>  // [maxBatch, qDim] queries
    let k: UnsafeMutablePointer<Float>  // [maxBatch, kvDim] keys of the batch
    let v: UnsafeMutablePointer<Float>  // [maxBatch, kvDim] values of the batch
    let attnOut: UnsafeMutablePointer<Float>  // [maxBatch, qDim] attention output before wo
    let delta: UnsafeMutablePointer<Float>  // [maxBatch, dim] sublayer output added to x
    let hb: UnsafeMutablePointer<Float>  // [maxBatch, ffn] gate, then SwiGLU
    let hb2: UnsafeMutablePointer<Float>  // [maxBatch, ffn] up
    let logitsBuffer: UnsafeMutablePointer<Float>  // [maxBatch, vocab]
    // Quantized activations: [tokens, blocks * 32] codes and [tokens, blocks] scales of a batch of `tokens`; with
    // `.residual`, the residuals' codes and scales follow as tokens [tokens, 2 tokens).
    let xq: UnsafeMutablePointer<Int8>  // [2 maxBatch, maxBlocks * 32] activation codes
    let xs: UnsafeMutablePointer<Float>  // [2 maxBatch, maxBlocks] activation block scales
    let xsums: UnsafeMutablePointer<Int32>  // [2 maxBatch, maxBlocks] activation block sums (the packed products')
    let residualRows: UnsafeMutablePointer<Float>  // [maxBatch, maxBlocks * 32] what the first codes rounded away
    let residualOut: UnsafeMutablePointer<Float>  // [tasks, 2 maxBatch, residualChunk] a task's products of both
    let rotary: RotaryTables  // cos and sin, [ropeTables, context, headDim / 2] each
    let cache: KVCache  // [layers, kvHeads, context, head] keys and values
    let attention: BlockedAttention  // per-worker attention workspaces
    let maxBlocks: Int
    /// Rows per second-pass product of `.residual` activations.
    static let residualChunk = 1024
    private var allocations: [(UnsafeMutableRawPointer, Int)] = []
    /// Set while `verify` runs: products and attention go token by token, as decode steps compute them.
    var tokenByToken = false
    var threading = StepThreading()  // single-token steps on the workers or this thread alone (kept across `reset`)
    /// Bytes of weight rows a task keeps in cache while it runs them for each token of a `verify` batch.
    static let tokenByTokenBytes = 32 << 10

    /// Bytes of the KV cache.
    public var kvCacheBytes: Int { cache.bytes }
    /// Bytes of every buffer of this session, the KV cache included (pages a sequence has not reached
    /// are not resident: every buffer starts as untouched zero pages).
    public var allocatedBytes: Int { allocations.reduce(0) { $0 + $1.1 } + cache.bytes + attention.bytes }

    /// Bytes a session of `model` with `context` positions and K/V cache types needs for its KV cache
    /// and buffers (before the attention workspaces, a few hundred KiB).
    public static func requiredBytes(_ config: ModelConfig, context: Int, keyType: KVCacheType, valueType: KVCacheType, maxBatch: Int = 64) -> Int {
        let b = max(1, maxBatch)
        let floats =
            b * (3 * config.dim + 2 * config.qDim + 2 * config.kvDim + 2 * config.ffnDim + config.vocabSize)
            + context * config.headDim * config.resolvedRopeTables.count
        let cache = keyType.halfBytes(config, positions: context) + valueType.halfBytes(config, positions: context)
        return cache + floats * 4 + b * (max(config.dim, config.ffnDim, config.qDim) + 32) * 5
    }

    /// The largest context (at most the model's) whose session fits the memory budget (80% of RAM).
    public static func fittingContext(_ config: ModelConfig, keyType: KVCacheType, valueType: KVCacheType, maxBatch: Int = 64) -> Int {
        var lo = 1, hi = config.contextLength
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if requiredBytes(config, context: mid, keyType: keyType, valueType: valueType, maxBatch: maxBatch) <= MemoryUsage.budgetBytes {
                lo = mid
            } else {
                hi = mid - 1
            }
        }
        return lo
    }

    /// Creates a session with `threads` workers (default: physical cores); see `init(model:options:pool:)`.
    public convenience init(
        model: TransformerModel, threads: Int? = nil, maxBatch: Int = 64, level: KernelLevel = .detected, keyType: KVCacheType = .q8,
        valueType: KVCacheType = .q8, contextLength: Int? = nil, activationGranularity: ActivationGranularity = .block32,
        keySmoothing: Bool = true, pool: ThreadPool? = nil
    ) throws(EdgeLMError) {
        try self.init(
            model: model,
            options: SessionOptions(
                threads: threads, maxBatch: maxBatch, level: level, keyType: keyType, valueType: valueType,
                contextLength: contextLength, activationGranularity: activationGranularity,
                keySmoothing: keySmoothing), pool: pool)
    }

    /// Creates a session set up as `options` says: integer kernels at `options.level`, a KV cache of
    /// `options.contextLength` positions (default: the model's context, capped so that the session fits the memory
    /// budget; compare `contextLength` with the model's to tell). A context above the model's trained context is
    /// allowed (RoPE extends past it; what the model does there is the caller's risk to take).
    /// Fails (before allocating) when the KV cache and buffers would need more than 80% of physical memory.
    /// Sessions that never run at the same time (the slots of a server) can share one `pool` of workers.
    public init(model: TransformerModel, options: SessionOptions, pool: ThreadPool? = nil) throws(EdgeLMError) {
        let (threads, maxBatch, keyType, valueType) = (options.threads, options.maxBatch, options.keyType, options.valueType)
        let (contextLength, activationGranularity, keySmoothing) = (options.contextLength, options.activationGranularity, options.keySmoothing)
        level = options.level
        let c = model.config
        let b = max(1, maxBatch)
        let context = contextLength ?? min(c.contextLength, InferenceSession.fittingContext(c, keyType: keyType, valueType: valueType, maxBatch: b))
        guard (1...ModelConfig.Limits.maxContext).contains(context) else {
            throw .invalidArgument("context \(context) is outside 1...\(ModelConfig.Limits.maxContext)")
        }
        let needed = InferenceSession.requiredBytes(c, context: context, keyType: keyType, valueType: valueType, maxBatch: b)
        guard needed <= MemoryUsage.budgetBytes else {
            throw .invalidInput(
                "\(model.file.path): a session needs \(needed >> 20) MiB (\(keyType)/\(valueType) KV cache for \(c.layers) layers x \(context) "
                    + "positions), more than 80% of this machine's \(ProcessInfo.processInfo.physicalMemory >> 20) MiB")
        }
        self.activationGranularity = activationGranularity
        self.model = model
        self.c = c
        self.contextLength = context
        self.pool = pool ?? ThreadPool(threads: threads ?? ThreadPool.physicalCores)
        self.maxBatch = b
        maxBlocks = (max(c.dim, c.ffnDim, c.qDim) + 31) / 32
        var allocations: [(UnsafeMutableRawPointer, Int)] = []
        func buffer<T>(_ count: Int, _: T.Type = Float.self) -> UnsafeMutablePointer<T> {
            let bytes = max(1, count) * MemoryLayout<T>.stride
            let raw = calloc(bytes, 1)!
            allocations.append((raw, bytes))
            return raw.bindMemory(to: T.self, capacity: max(1, count))
        }
        x = buffer(b * c.dim)
        xb = buffer(b * c.dim)
        q = buffer(b * c.qDim)
        k = buffer(b * c.kvDim)
        v = buffer(b * c.kvDim)
        attnOut = buffer(b * c.qDim)
        delta = buffer(b * c.dim)
        hb = buffer(b * c.ffnDim)
        hb2 = buffer(b * c.ffnDim)
        logitsBuffer = buffer(b * c.vocabSize)
        let residual = activationGranularity == .residual
        xq = buffer((residual ? 2 : 1) * b * maxBlocks * 32, Int8.self)
        xs = buffer((residual ? 2 : 1) * b * maxBlocks)
        xsums = buffer((residual ? 2 : 1) * b * maxBlocks, Int32.self)
        residualRows = buffer(residual ? b * maxBlocks * 32 : 0)
        residualOut = buffer(residual ? self.pool.tasksPerJob * 2 * b * Self.residualChunk : 0)
        let tables = c.resolvedRopeTables, half = c.headDim / 2
        rotary = RotaryTables(
            tables: tables, context: context, headDim: c.headDim, interleaved: c.ropeLayout == .interleaved,
            cos: buffer(tables.count * context * half), sin: buffer(tables.count * context * half))
        cache = KVCache(keyType: keyType, valueType: valueType, config: c, context: context, smoothKeys: keySmoothing)
        attention = BlockedAttention(config: c, rowLength: max(cache.keys.rowLength, cache.values.rowLength), workers: self.pool.threadCount)
        self.allocations = allocations
    }

    deinit {
        for (p, _) in allocations { free(p) }
    }

    /// Forgets the sequence (the KV cache is simply overwritten later).
    public func reset() {
        position = 0
        tokens.removeAll(keepingCapacity: true)
    }

    /// Evaluates `prompt` for generation, reusing the longest prefix of it the cache already holds (a
    /// chat turn that re-sends the conversation evaluates only what is new), and returns the last token's
    /// logits and how many tokens were evaluated (at least one: the last token is always re-run for its
    /// logits).
    public func prefill(_ prompt: [Int]) throws(EdgeLMError) -> (logits: UnsafeBufferPointer<Float>, evaluated: Int) {
        guard !prompt.isEmpty else { throw .invalidInput("the prompt is empty") }
        var shared = 0
        while shared < min(prompt.count, tokens.count), prompt[shared] == tokens[shared] { shared += 1 }
        shared = min(shared, prompt.count - 1)
        if shared == 0 { reset() } else { try rewind(to: shared) }
        let logits = try forward(Array(prompt[shared...]))
        return (logits, prompt.count - shared)
    }

    /// A text embedding of `tokens`: the mean over the tokens of the final hidden state after the output norm
    /// (what the output head reads), scaled to unit length. Starts from an empty cache, which then holds `tokens`.
    public func embed(_ tokens: [Int]) throws(EdgeLMError) -> [Float] {
        guard !tokens.isEmpty else { throw .invalidInput("nothing to embed: the input is empty") }
        guard tokens.count <= contextLength else { throw .invalidInput("the input is \(tokens.count) tokens, longer than the context of \(contextLength)") }
        try checkVocabulary(tokens)
        reset()
        let dim = c.dim
        var sum = [Double](repeating: 0, count: dim)
        var normed = [Float](repeating: 0, count: dim)
        var start = 0
        while start < tokens.count {
            let n = min(maxBatch, tokens.count - start)
            forwardBatch(Array(tokens[start..<(start + n)]), segments: [Segment(session: self, start: 0, count: n)])
            for t in 0..<n {
                normed.withUnsafeMutableBufferPointer {
                    FloatKernels.rmsNorm($0.baseAddress!, x + t * dim, weight: model.outputNorm, count: dim, epsilon: c.normEpsilon)
                }
                for i in 0..<dim { sum[i] += Double(normed[i]) }
            }
            start += n
        }
        let length = sum.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return sum.map { Float(length > 0 ? $0 / length : 0) }
    }

    /// Keeps the first `position` tokens of the sequence and forgets the rest: the next `forward` continues
    /// from there (a shared prompt prefix, or a benchmark's depth, is evaluated once).
    public func rewind(to position: Int) throws(EdgeLMError) {
        guard (0...self.position).contains(position) else {
            throw .invalidArgument("cannot rewind to position \(position): the sequence holds \(self.position) tokens")
        }
        self.position = position
        tokens.removeLast(tokens.count - position)
    }

    /// Feeds `tokens` at the current position and returns their logits: [vocab] for `.last`, or
    /// [tokens.count, vocab] for `.all`. The buffer is valid until the next call.
    public func forward(_ tokens: [Int], logits selection: LogitsSelection = .last) throws(EdgeLMError) -> UnsafeBufferPointer<Float> {
        try checkFits(tokens)
        if selection == .all, tokens.count > maxBatch {
            throw .invalidInput("logits for every token need batches of at most \(maxBatch) tokens, got \(tokens.count)")
        }
        // A decode step is timed, and runs on the workers or this thread alone as the timings say (`StepThreading`).
        let step = tokens.count == 1 ? beginStep() : nil
        defer { if let step { endStep(startedAt: step) } }
        feed(tokens)
        let n = tokens.count - (tokens.count - 1) / maxBatch * maxBatch, count = selection == .all ? n : 1
        computeLogits(tokens: count, first: n - count)
        return UnsafeBufferPointer(start: logitsBuffer, count: count * c.vocabSize)
    }

    /// Runs `tokens` from an empty cache through the first `layers` layers only, for the `observer` (calibration
    /// statistics of those layers' inputs): no logits, no later layer. The cache is left empty.
    func observe(_ tokens: [Int], layers: Int) throws(EdgeLMError) {
        reset()
        try checkFits(tokens)
        feed(tokens, layers: layers)
        reset()
    }

    /// Refuses an empty run of tokens, one past the context from the current position, or an id outside the vocabulary.
    private func checkFits(_ tokens: [Int]) throws(EdgeLMError) {
        guard !tokens.isEmpty else { throw .invalidInput("forward needs at least one token") }
        guard position + tokens.count <= contextLength else {
            throw .invalidInput("\(position + tokens.count) tokens exceed the context length \(contextLength)")
        }
        try checkVocabulary(tokens)
    }

    /// Runs `tokens` in batches of at most maxBatch through every layer (or the first `layers`), from the current position.
    private func feed(_ tokens: [Int], layers: Int? = nil) {
        var start = 0
        while start < tokens.count {
            let n = min(maxBatch, tokens.count - start)
            forwardBatch(Array(tokens[start..<(start + n)]), segments: [Segment(session: self, start: 0, count: n)], layers: layers)
            start += n
        }
    }

    /// Feeds `tokens` (at most `maxBatch`) at the current position and returns the logits after each of them
    /// ([tokens.count, vocab], valid until the next call), each computed exactly as `forward` of that token alone
    /// would compute it, bit for bit: every product and attention runs token by token, while each task's rows of
    /// a matrix stay in cache for all the tokens (the weights are read from memory once). Speculative decoding
    /// verifies drafts with it, so that greedy output does not depend on whether tokens were drafted.
    public func verify(_ tokens: [Int]) throws(EdgeLMError) -> UnsafeBufferPointer<Float> {
        try verifyStep([self], tokens: [tokens])
    }

    /// One decode step of several sequences as one batch: `sessions[i]` gets `tokens[i]`. The linear
    /// layers run once for all of them on this session's buffers and workers (the weights are read once
    /// per step, not once per sequence); each token is written to and attends over its own session's KV
    /// cache at its own position. Returns [sessions.count, vocab] logits, valid until the next call on
    /// this session. The sessions must be distinct, of the same model and context as this one, and not in
    /// use elsewhere.
    public func decodeStep(_ sessions: [InferenceSession], tokens: [Int]) throws(EdgeLMError) -> UnsafeBufferPointer<Float> {
        guard sessions.count == tokens.count else {
            throw .invalidArgument("a decode step needs one token per session (\(sessions.count) sessions, \(tokens.count) tokens)")
        }
        return try step(sessions, tokens: tokens.map { [$0] }, tokenwise: false)
    }

    /// `verify` for several sequences as one batch: `sessions[i]` gets `tokens[i]` (one or more tokens), each token
    /// computed exactly as a decode step of it alone. Returns the logits of every token in order
    /// ([tokens.joined().count, vocab]), valid until the next call on this session; the conditions of `decodeStep` apply.
    public func verifyStep(_ sessions: [InferenceSession], tokens: [[Int]]) throws(EdgeLMError) -> UnsafeBufferPointer<Float> {
        guard activationGranularity != .residual else {
            throw .invalidArgument("speculative decoding does not support --activations residual (its products pair each token with its residual)")
        }
        return try step(sessions, tokens: tokens, tokenwise: true)
    }

    /// One batch of `tokens[i]` for `sessions[i]`, token by token (`verify`) or not.
    private func step(_ sessions: [InferenceSession], tokens: [[Int]], tokenwise: Bool) throws(EdgeLMError) -> UnsafeBufferPointer<Float> {
        let all = Array(tokens.joined())
        guard !sessions.isEmpty, sessions.count == tokens.count, tokens.allSatisfy({ !$0.isEmpty }) else {
            throw .invalidArgument("a step needs tokens for every session (\(sessions.count) sessions, \(tokens.count) token lists)")
        }
        guard all.count <= maxBatch else { throw .invalidInput("\(all.count) tokens exceed the batch of \(maxBatch)") }
        guard Set(sessions.map { ObjectIdentifier($0) }).count == sessions.count else {
            throw .invalidArgument("a decode step takes each session once")
        }
        for (s, list) in zip(sessions, tokens) {
            guard s.model === model, s.contextLength == contextLength else {
                throw .invalidArgument("a decode step needs sessions of the same model and context")
            }
            guard s.position + list.count <= s.contextLength else {
                throw .invalidInput("\(s.position + list.count) tokens exceed the context length \(contextLength)")
            }
        }
        try checkVocabulary(all)
        var segments: [Segment] = [], start = 0
        for (s, list) in zip(sessions, tokens) {
            segments.append(Segment(session: s, start: start, count: list.count))
            start += list.count
        }
        tokenByToken = tokenwise
        defer { tokenByToken = false }
        forwardBatch(all, segments: segments)
        computeLogits(tokens: all.count, first: 0)
        return UnsafeBufferPointer(start: logitsBuffer, count: all.count * c.vocabSize)
    }

    private func checkVocabulary(_ tokens: [Int]) throws(EdgeLMError) {
        if let bad = tokens.first(where: { !(0..<c.vocabSize).contains($0) }) {
            throw .invalidInput("token id \(bad) is outside the vocabulary 0..<\(c.vocabSize)")
        }
    }
}
