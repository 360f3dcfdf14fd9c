import CEdgeKernels
import Foundation

/// Which positions of a forward batch produce logits.
public enum LogitsSelection: Sendable {
    /// Only the last token (generation).
    case last
    /// Every token (perplexity).
    case all
}

/// How activations are quantized for the integer kernels.
public enum ActivationGranularity: String, Sendable, CaseIterable {
    /// int8 with one scale per block of 32 values (the default, as llama.cpp's Q8 activations: see
    /// docs/QUANTIZATION.md for the measured drift).
    case block32
    /// int8 with one scale per row (vector); kept to measure what per-block scales buy.
    case row
    /// `block32`, then a second int8 pass over what the first rounded away (the residual, quantized the same way):
    /// every matrix product runs twice (measured 0.6x the speed of `block32` on SmolLM2-135M) and activations carry
    /// about 15 bits instead of 8. Quantized weights then compute what their f32 dequantization computes (SmolLM2's
    /// Q4_1 GGUF kept as q4o: mean KLD 3e-8 against its f32 file, against 0.0021 with `block32`).
    case residual
}

/// The input of a group of linear layers, as `ActivationObserver` sees it.
public enum LinearInput: Sendable, CaseIterable {
    /// The normed residual entering attn_q, attn_k and attn_v: [tokens, dim].
    case attention
    /// The attention output entering attn_output: [tokens, qDim].
    case attentionOutput
    /// The normed residual entering ffn_gate and ffn_up: [tokens, dim].
    case ffn
    /// The gated hidden state entering ffn_down: [tokens, ffnDim].
    case ffnDown

    /// The canonical tensors of layer `l` that read this input.
    public func tensors(layer l: Int) -> [String] {
        let p = "blk.\(l)."
        switch self {
        case .attention: return [p + "attn_q", p + "attn_k", p + "attn_v"]
        case .attentionOutput: return [p + "attn_output"]
        case .ffn: return [p + "ffn_gate", p + "ffn_up"]
        case .ffnDown: return [p + "ffn_down"]
        }
    }
}

/// Sees the input of every linear layer during a forward pass (calibration statistics).
public protocol ActivationObserver: AnyObject {
    /// `values` is [tokens, width], row-major, valid only during the call.
    func observe(layer: Int, input: LinearInput, values: UnsafePointer<Float>, tokens: Int, width: Int)
}

/// One sequence being evaluated: the KV cache, every scratch buffer (allocated once, here), and the
/// forward pass. Not thread-safe: one session serves one sequence at a time.
public final class InferenceSession: @unchecked Sendable {
    /// The model.
    public let model: LlamaModel
    /// Worker threads.
    public let pool: ThreadPool
    /// Integer kernel level in use.
    public let level: KernelLevel
    /// Tokens per forward batch.
    public let maxBatch: Int
    /// Activation quantization granularity.
    public let activationGranularity: ActivationGranularity
    /// Tokens already in the KV cache.
    public private(set) var position = 0
    /// Sees every linear layer's input while set (calibration); nil in normal use.
    public var observer: ActivationObserver?
    /// The ids of those tokens, in order (what `prefill` compares a new prompt with).
    public private(set) var tokens: [Int] = []
    /// Positions the KV cache holds: the model's context unless the session was created with another.
    public let contextLength: Int
    /// How the KV cache stores keys.
    public var keyType: KVCacheType { cache.keys.type }
    /// How the KV cache stores values.
    public var valueType: KVCacheType { cache.values.type }
    /// The cache types as `--kv-type` spells them: one name when K and V agree, else `K/V`.
    public var kvTypeName: String { keyType == valueType ? keyType.rawValue : "\(keyType)/\(valueType)" }

    private let c: ModelConfig
    private let x: UnsafeMutablePointer<Float>  // [maxBatch, dim] residual stream
    private let xb: UnsafeMutablePointer<Float>  // [maxBatch, dim] normed input of a sublayer
    private let q: UnsafeMutablePointer<Float>  // [maxBatch, qDim] queries
    private let k: UnsafeMutablePointer<Float>  // [maxBatch, kvDim] keys of the batch
    private let v: UnsafeMutablePointer<Float>  // [maxBatch, kvDim] values of the batch
    private let attnOut: UnsafeMutablePointer<Float>  // [maxBatch, qDim] attention output before wo
    private let delta: UnsafeMutablePointer<Float>  // [maxBatch, dim] sublayer output added to x
    private let hb: UnsafeMutablePointer<Float>  // [maxBatch, ffn] gate, then SwiGLU
    private let hb2: UnsafeMutablePointer<Float>  // [maxBatch, ffn] up
    private let logitsBuffer: UnsafeMutablePointer<Float>  // [maxBatch, vocab]
    // Quantized activations: [tokens, blocks * 32] codes and [tokens, blocks] scales of a batch of `tokens`; with
    // `.residual`, the residuals' codes and scales follow as tokens [tokens, 2 tokens).
    private let xq: UnsafeMutablePointer<Int8>  // [2 maxBatch, maxBlocks * 32] activation codes
    private let xs: UnsafeMutablePointer<Float>  // [2 maxBatch, maxBlocks] activation block scales
    private let residualRows: UnsafeMutablePointer<Float>  // [maxBatch, maxBlocks * 32] what the first codes rounded away
    private let residualOut: UnsafeMutablePointer<Float>  // [tasks, 2 maxBatch, residualChunk] a task's products of both
    private let ropeCos: UnsafeMutablePointer<Float>  // [ropeTables, context, headDim / 2]
    private let ropeSin: UnsafeMutablePointer<Float>  // [ropeTables, context, headDim / 2]
    private let cache: KVCache  // [layers, kvHeads, context, head] keys and values
    private let attention: BlockedAttention  // per-worker attention workspaces
    private let maxBlocks: Int
    /// Rows per second-pass product of `.residual` activations.
    private static let residualChunk = 1024
    private var allocations: [(UnsafeMutableRawPointer, Int)] = []
    /// Set while `verify` runs: products and attention go token by token, as decode steps compute them.
    private var tokenByToken = false
    /// Bytes of weight rows a task keeps in cache while it runs them for each token of a `verify` batch.
    private static let tokenByTokenBytes = 32 << 10

    /// Bytes of the KV cache.
    public var kvCacheBytes: Int { cache.bytes }
    /// Bytes of every buffer of this session, the KV cache included (pages a sequence has not reached
    /// are not resident: every buffer starts as untouched zero pages).
    public var allocatedBytes: Int { allocations.reduce(0) { $0 + $1.1 } + cache.bytes + attention.bytes }

    /// Bytes a session of `model` with `context` positions and K/V cache types needs for its KV cache
    /// and buffers (before the attention workspaces, a few hundred KiB).
    public static func requiredBytes(_ config: ModelConfig, context: Int, keyType: KVCacheType, valueType: KVCacheType, maxBatch: Int = 64) -> Int {
        let b = max(1, maxBatch)
        let floats = b * (3 * config.dim + 2 * config.qDim + 2 * config.kvDim + 2 * config.ffnDim + config.vocabSize)
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

    /// Creates a session with `threads` workers (default: physical cores) whose integer kernels run at
    /// `level` (default: `KernelLevel.selected()`, the CPU's best unless `EDGELM_KERNELS` forces one), with a
    /// KV cache of `contextLength` positions storing keys as `keyType` and values as `valueType` (default: the model's context, capped so that the session
    /// fits the memory budget; compare `contextLength` with the model's to tell). A context above the
    /// model's trained context is allowed (RoPE extends past it; what the model does there is the
    /// caller's risk to take).
    /// Fails (before allocating) when the KV cache and buffers would need more than 80% of physical memory,
    /// or when `EDGELM_KERNELS` names a level this CPU cannot run. `keySmoothing: false` stores q8 keys
    /// without their offset and channel scales (see `KVCache`; kept to measure what they buy). Sessions
    /// that never run at the same time (the slots of a server) can share one `pool` of workers.
    public init(model: LlamaModel, threads: Int? = nil, maxBatch: Int = 64, level: KernelLevel? = nil, keyType: KVCacheType = .q8,
                valueType: KVCacheType = .q8, contextLength: Int? = nil, activationGranularity: ActivationGranularity = .block32,
                keySmoothing: Bool = true, pool: ThreadPool? = nil) throws(EdgeLMError) {
        if let level {
            self.level = level
        } else {
            self.level = try KernelLevel.selected()
        }
        let c = model.config
        let b = max(1, maxBatch)
        let context = contextLength ?? min(c.contextLength, InferenceSession.fittingContext(c, keyType: keyType, valueType: valueType, maxBatch: b))
        guard (1...ModelConfig.Limits.maxContext).contains(context) else {
            throw .invalidArgument("context \(context) is outside 1...\(ModelConfig.Limits.maxContext)")
        }
        let needed = InferenceSession.requiredBytes(c, context: context, keyType: keyType, valueType: valueType, maxBatch: b)
        guard needed <= MemoryUsage.budgetBytes else {
            throw .invalidInput("\(model.file.path): a session needs \(needed >> 20) MiB (\(keyType)/\(valueType) KV cache for \(c.layers) layers x \(context) "
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
        residualRows = buffer(residual ? b * maxBlocks * 32 : 0)
        residualOut = buffer(residual ? self.pool.tasksPerJob * 2 * b * Self.residualChunk : 0)
        let half = c.headDim / 2, tables = c.resolvedRopeTables
        ropeCos = buffer(tables.count * context * half)
        ropeSin = buffer(tables.count * context * half)
        for (ti, table) in tables.enumerated() {
            for pos in 0..<context {
                for i in 0..<half {
                    let angle = Double(pos) * table.inverseFrequencies[i], o = (ti * context + pos) * half + i
                    ropeCos[o] = Float(cos(angle) * table.attentionFactor)
                    ropeSin[o] = Float(sin(angle) * table.attentionFactor)
                }
            }
        }
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
                normed.withUnsafeMutableBufferPointer { FloatKernels.rmsNorm($0.baseAddress!, x + t * dim, weight: model.outputNorm, count: dim, epsilon: c.normEpsilon) }
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
        guard !tokens.isEmpty else { throw .invalidInput("forward needs at least one token") }
        guard position + tokens.count <= contextLength else {
            throw .invalidInput("\(position + tokens.count) tokens exceed the context length \(contextLength)")
        }
        try checkVocabulary(tokens)
        if selection == .all, tokens.count > maxBatch {
            throw .invalidInput("logits for every token need batches of at most \(maxBatch) tokens, got \(tokens.count)")
        }
        var start = 0
        while start < tokens.count {
            let n = min(maxBatch, tokens.count - start)
            forwardBatch(Array(tokens[start..<(start + n)]), segments: [Segment(session: self, start: 0, count: n)])
            start += n
        }
        let n = tokens.count - (tokens.count - 1) / maxBatch * maxBatch
        if selection == .all {
            computeLogits(tokens: n, first: 0)
            return UnsafeBufferPointer(start: logitsBuffer, count: n * c.vocabSize)
        }
        computeLogits(tokens: 1, first: n - 1)
        return UnsafeBufferPointer(start: logitsBuffer, count: c.vocabSize)
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

    // MARK: - The forward pass

    /// Consecutive batch tokens [start, start + count) of one sequence: `session`'s cache, from its position.
    private struct Segment {
        let session: InferenceSession
        let start: Int
        let count: Int
    }

    /// Runs `tokens` (at most maxBatch) through every layer on this session's buffers, leaving the final
    /// hidden states in x; each segment's tokens go to its session's KV cache, whose position then advances.
    private func forwardBatch(_ tokens: [Int], segments: [Segment]) {
        let n = tokens.count, dim = c.dim, qDim = c.qDim, kvDim = c.kvDim, ffn = c.ffnDim
        for (t, token) in tokens.enumerated() { model.embedding.row(token, into: x + t * dim) }
        if let s = c.embeddingScale { for i in 0..<(n * dim) { x[i] *= s } }
        for (l, layer) in model.layers.enumerated() {
            // Attention: x -> xb = norm(x) -> q, k, v (+ bias, per-head norm) -> RoPE -> cache -> attnOut
            //   -> delta = wo attnOut (-> post-norm) -> x += delta
            let quantizedInput = normedInput(layer.attnNorm, tokens: n, for: layer.wq)
            observer?.observe(layer: l, input: .attention, values: xb, tokens: n, width: dim)
            linears([(layer.wq, q), (layer.wk, k), (layer.wv, v)], input: xb, quantized: quantizedInput, tokens: n)
            addBias(q, layer.qBias, width: qDim, tokens: n)
            addBias(k, layer.kBias, width: kvDim, tokens: n)
            addBias(v, layer.vBias, width: kvDim, tokens: n)
            normRows(q, layer.qNorm, width: c.headDim, count: n * c.heads)
            normRows(k, layer.kNorm, width: c.headDim, count: n * c.kvHeads)
            let table = c.ropeTableIndex(layer: l)
            for seg in segments {
                let pos0 = seg.session.position, cache = seg.session.cache
                perToken(seg.count, width: qDim + kvDim) { range in
                    for t in range.lowerBound + seg.start..<range.upperBound + seg.start {
                        rope(q + t * qDim, heads: c.heads, position: pos0 + t - seg.start, table: table)
                        rope(k + t * kvDim, heads: c.kvHeads, position: pos0 + t - seg.start, table: table)
                    }
                }
                if pos0 == 0 {
                    cache.setKeyTransform(layer: l, keys: k + seg.start * kvDim, queries: q + seg.start * qDim, heads: c.heads, tokens: seg.count)
                }
                for t in seg.start..<(seg.start + seg.count) {
                    cache.store(layer: l, position: pos0 + t - seg.start, keys: k + t * kvDim, values: v + t * kvDim, level: level)
                }
                attention.run(layer: l, tokens: seg.count, firstPosition: pos0, q: q + seg.start * qDim, out: attnOut + seg.start * qDim,
                              cache: cache, pool: pool, level: level, tokenwise: tokenByToken)
            }
            observer?.observe(layer: l, input: .attentionOutput, values: attnOut, tokens: n, width: qDim)
            linears([(layer.wo, delta)], input: attnOut, quantized: quantizeIfNeeded(attnOut, cols: qDim, tokens: n, for: layer.wo), tokens: n)
            addResidual(delta, tokens: n, postNorm: layer.postAttnNorm)

            // FFN: xb = norm(x) -> hb = gate xb, hb2 = up xb -> hb = act(hb) * hb2 -> delta = down hb (-> post-norm) -> x += delta
            let quantizedFFN = normedInput(layer.ffnNorm, tokens: n, for: layer.gate)
            observer?.observe(layer: l, input: .ffn, values: xb, tokens: n, width: dim)
            // Each worker gates the hidden rows it computed of both gate and up, for every token.
            let activation = c.activation ?? .silu, hb = self.hb, hb2 = self.hb2, level = self.level
            linears([(layer.gate, hb), (layer.up, hb2)], input: xb, quantized: quantizedFFN, tokens: n) { rows in
                for t in 0..<n {
                    let g = hb + t * ffn + rows.lowerBound, u = hb2 + t * ffn + rows.lowerBound
                    switch activation {
                    case .silu: edge_swiglu(level.rawValue, g, u, Int64(rows.count))
                    case .geluTanh: FloatKernels.geglu(g, u, count: rows.count)
                    }
                }
            }
            observer?.observe(layer: l, input: .ffnDown, values: hb, tokens: n, width: ffn)
            linears([(layer.down, delta)], input: hb, quantized: quantizeIfNeeded(hb, cols: ffn, tokens: n, for: layer.down), tokens: n)
            addResidual(delta, tokens: n, postNorm: layer.postFFNNorm)
        }
        for seg in segments {
            seg.session.position += seg.count
            seg.session.tokens.append(contentsOf: tokens[seg.start..<(seg.start + seg.count)])
        }
    }

    /// logits[t] = output · norm(x[first + t]) for `tokens` tokens.
    private func computeLogits(tokens n: Int, first: Int) {
        let quantized = normedInput(model.outputNorm, tokens: n, from: first, for: model.output)
        linears([(model.output, logitsBuffer)], input: xb, quantized: quantized, tokens: n)
        if let cap = c.finalSoftcap { FloatKernels.softcap(logitsBuffer, count: n * c.vocabSize, cap: cap) }
    }

    /// buffer[t] += bias for `tokens` rows of `width` values, when the family has the bias.
    private func addBias(_ buffer: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>?, width: Int, tokens n: Int) {
        guard let bias else { return }
        for t in 0..<n { FloatKernels.add(buffer + t * width, bias, count: width) }
    }

    /// RMSNorm in place of each of `count` consecutive vectors of `width` values with `weight`, when the
    /// family has the norm (per-head q/k norms, post-sublayer norms).
    private func normRows(_ buffer: UnsafeMutablePointer<Float>, _ weight: UnsafePointer<Float>?, width: Int, count: Int) {
        guard let weight else { return }
        for i in 0..<count { FloatKernels.rmsNorm(buffer + i * width, buffer + i * width, weight: weight, count: width, epsilon: c.normEpsilon) }
    }

    /// x += delta for `tokens` tokens, delta first normed by `postNorm` when the family has one.
    private func addResidual(_ delta: UnsafeMutablePointer<Float>, tokens n: Int, postNorm: UnsafePointer<Float>?) {
        let dim = c.dim, x = self.x
        perToken(n, width: dim) { range in
            normRows(delta + range.lowerBound * dim, postNorm, width: dim, count: range.count)
            FloatKernels.add(x + range.lowerBound * dim, delta + range.lowerBound * dim, count: range.count * dim)
        }
    }

    /// Runs `body` over ranges of `n` tokens in parallel, or over all of them on this thread when the
    /// batch is too small (`width` values per token) for waking the workers to pay.
    private func perToken(_ n: Int, width: Int, _ body: (Range<Int>) -> Void) {
        pool.parallelFor(n, work: n * width, serialBelow: 1 << 13, body)
    }

    /// xb = norm(x[first + t]) with `weight` for `tokens` tokens, quantized for `weight`'s kernels when
    /// it is quantized (whether it is is returned); norms and quantization run per token in parallel.
    private func normedInput(_ norm: UnsafePointer<Float>, tokens n: Int, from first: Int = 0, for weight: LinearWeight) -> Bool {
        let dim = c.dim, eps = c.normEpsilon, x = self.x, xb = self.xb, quantized = weight.scheme.isQuantized
        perToken(n, width: dim) { range in
            for t in range {
                FloatKernels.rmsNorm(xb + t * dim, x + (first + t) * dim, weight: norm, count: dim, epsilon: eps)
                if quantized { quantizeRow(xb, cols: dim, token: t, of: n) }
            }
        }
        return quantized
    }

    /// Quantizes `tokens` rows of `cols` activations to int8 blocks when `weight` is quantized.
    private func quantizeIfNeeded(_ input: UnsafeMutablePointer<Float>, cols: Int, tokens: Int, for weight: LinearWeight) -> Bool {
        guard weight.scheme.isQuantized else { return false }
        perToken(tokens, width: cols) { range in
            for t in range { quantizeRow(input, cols: cols, token: t, of: tokens) }
        }
        return true
    }

    /// Quantizes row `t` of `input` ([tokens, cols]) into the activation codes and scales (with `.residual`, also
    /// its residual, as token `tokens + t`).
    private func quantizeRow(_ input: UnsafeMutablePointer<Float>, cols: Int, token t: Int, of tokens: Int) {
        let blocks = (cols + 31) / 32, full = cols / 32, row = input + t * cols
        IntegerKernels.quantizeQ8Blocks(level, row, nblocks: full, codes: xq + t * blocks * 32, scales: xs + t * blocks)
        if full < blocks {
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { tail in
                tail.initialize(repeating: 0)
                for i in 0..<(cols - full * 32) { tail[i] = row[full * 32 + i] }
                IntegerKernels.quantizeQ8Blocks(level, tail.baseAddress!, nblocks: 1, codes: xq + t * blocks * 32 + full * 32, scales: xs + t * blocks + full)
            }
        }
        if activationGranularity == .row { requantizePerRow(row, cols: cols, codes: xq + t * blocks * 32, scales: xs + t * blocks) }
        if activationGranularity == .residual {
            let codes = xq + t * blocks * 32, scales = xs + t * blocks, r = residualRows + t * blocks * 32
            for i in 0..<(blocks * 32) { r[i] = (i < cols ? row[i] : 0) - Float(codes[i]) * scales[i / 32] }
            IntegerKernels.quantizeQ8Blocks(level, r, nblocks: blocks, codes: xq + (tokens + t) * blocks * 32, scales: xs + (tokens + t) * blocks)
        }
    }

    /// Replaces per-block codes by codes sharing one scale for the whole row.
    private func requantizePerRow(_ row: UnsafeMutablePointer<Float>, cols: Int, codes: UnsafeMutablePointer<Int8>,
                                  scales: UnsafeMutablePointer<Float>) {
        var amax: Float = 0
        for i in 0..<cols { amax = max(amax, abs(row[i])) }
        let d = amax / 127, inverse: Float = d != 0 ? 1 / d : 0
        for i in 0..<cols { codes[i] = Int8((row[i] * inverse).rounded(.toNearestOrEven)) }
        for b in 0..<((cols + 31) / 32) { scales[b] = d }
    }

    /// out[t, r] = weight[r] · input[t] for `tokens` tokens, for every (weight, out) pair, as one parallel
    /// job of a few tasks per thread: each task takes its share of every matrix's rows (in whole 16-row
    /// tiles), then runs `epilogue` on its share of the first matrix's rows (for example the gate of those
    /// FFN rows).
    private func linears(_ pairs: [(weight: LinearWeight, out: UnsafeMutablePointer<Float>)], input: UnsafeMutablePointer<Float>,
                         quantized: Bool, tokens: Int, epilogue: ((Range<Int>) -> Void)? = nil) {
        let parallel = pool.workers(for: pairs.reduce(0) { $0 + $1.weight.rows * $1.weight.cols } * tokens) > 1
        let tasks = parallel ? max(1, min(pool.tasksPerJob, pairs[0].weight.rows / 16)) : 1
        pool.run(tasks: tasks) { task, _ in
            func share(_ rows: Int) -> Range<Int> { ThreadPool.share(rows, worker: task, of: tasks, granule: 16) }
            for (w, out) in pairs { self.matmul(w, rows: share(w.rows), input: input, quantized: quantized, tokens: tokens, out: out, task: task) }
            epilogue?(share(pairs[0].weight.rows))
        }
    }

    /// Rows `rows` of out = weight · input for `tokens` tokens (out is [tokens, weight.rows]).
    /// With `.residual` activations, W · residual is added chunk by chunk of `residualChunk` rows.
    private func matmul(_ w: LinearWeight, rows: Range<Int>, input: UnsafeMutablePointer<Float>, quantized: Bool, tokens: Int,
                        out: UnsafeMutablePointer<Float>, task: Int) {
        guard !rows.isEmpty else { return }
        if tokenByToken, tokens > 1 {
            let step = max(16, Self.tokenByTokenBytes / max(1, w.byteCount / max(1, w.rows)) / 16 * 16)
            if w.scheme.isQuantized {
                IntegerKernels.matmulTokenwise(level, scheme: w.scheme, weights: w.codes, scales: w.scales, blocksPerRow: w.layout.blocksPerRow,
                                               blocksPerGroup: w.layout.blocksPerGroup, rows: rows, chunkRows: step, x: xq, xs: xs, tokens: tokens,
                                               out: out, tokenStride: w.rows)
                return
            }
            for r0 in stride(from: rows.lowerBound, to: rows.upperBound, by: step) {
                for t in 0..<tokens {
                    FloatKernels.matmul(weights: w.floats, cols: w.cols, rows: r0..<min(rows.upperBound, r0 + step), x: input + t * w.cols, tokens: 1,
                                        out: out + t * w.rows, rowStride: 1, tokenStride: w.rows)
                }
            }
            return
        }
        if w.scheme.isQuantized {
            precondition(quantized)
            guard activationGranularity == .residual else {
                IntegerKernels.matmul(level, scheme: w.scheme, weights: w.codes, scales: w.scales, blocksPerRow: w.layout.blocksPerRow,
                                      blocksPerGroup: w.layout.blocksPerGroup, rows: rows, x: xq, xs: xs, tokens: tokens, out: out,
                                      rowStride: 1, tokenStride: w.rows)
                return
            }
            // The residuals are tokens [tokens, 2 tokens) of the same product: the kernel reads each weight once for both.
            let both = residualOut + task * 2 * maxBatch * Self.residualChunk  // [2 tokens, residualChunk]
            for r0 in stride(from: rows.lowerBound, to: rows.upperBound, by: Self.residualChunk) {
                let chunk = r0..<min(rows.upperBound, r0 + Self.residualChunk)
                IntegerKernels.matmul(level, scheme: w.scheme, weights: w.codes, scales: w.scales, blocksPerRow: w.layout.blocksPerRow,
                                      blocksPerGroup: w.layout.blocksPerGroup, rows: chunk, x: xq, xs: xs, tokens: 2 * tokens,
                                      out: both - chunk.lowerBound, rowStride: 1, tokenStride: Self.residualChunk)
                for t in 0..<tokens {
                    let o = out + t * w.rows + chunk.lowerBound
                    o.update(from: both + t * Self.residualChunk, count: chunk.count)
                    FloatKernels.add(o, both + (tokens + t) * Self.residualChunk, count: chunk.count)
                }
            }
        } else {
            FloatKernels.matmul(weights: w.floats, cols: w.cols, rows: rows, x: input, tokens: tokens, out: out, rowStride: 1, tokenStride: w.rows)
        }
    }

    /// Rotates `heads` heads of `vec` for `position` with rotary table `table`, in the model's RoPE layout.
    private func rope(_ vec: UnsafeMutablePointer<Float>, heads: Int, position: Int, table: Int) {
        let hd = c.headDim, half = hd / 2, row = (table * contextLength + position) * half
        let cosRow = ropeCos + row, sinRow = ropeSin + row
        let interleaved = c.ropeLayout == .interleaved
        for h in 0..<heads {
            let head = vec + h * hd
            for i in 0..<half {
                let (a, b) = interleaved ? (2 * i, 2 * i + 1) : (i, i + half)
                let x0 = head[a], x1 = head[b]
                head[a] = x0 * cosRow[i] - x1 * sinRow[i]
                head[b] = x0 * sinRow[i] + x1 * cosRow[i]
            }
        }
    }
}
