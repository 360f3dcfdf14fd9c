import CEdgeKernels
import Foundation

/// Causal grouped-query attention over the KV cache, blocked like flash attention: a job is one KV head
/// and a block of tokens, whose queries (every query head of the group, for every token of the block)
/// walk the cache in chunks of positions with an online softmax (running max and sum per query, the
/// output rescaled when the max grows). Each chunk of keys and values is read once per job — once per
/// decode step for the whole group — and no token x position score matrix is ever formed: per worker
/// only [queries, chunk] scores.
///
/// Scores of a q8 cache are integer matrix products (the q8 `edge_matmul`: the chunk's keys as rows, the
/// int8-quantized queries as tokens) on the same SIMD kernels as the linear layers; values are summed by
/// dequantizing V in registers once per chunk for all the job's queries (`edge_attn_values_q8`). f16
/// caches convert in registers; f32 is the reference. Scaling, the running maximum and the softmax
/// numerators are C kernels too (`edge_scale_max`, `edge_exp_sum`: a SIMD exp on AVX2 and NEON).
final class BlockedAttention {
    /// Positions per chunk.
    static let chunk = 128
    /// Query vectors per job (group heads x tokens of a block), unless one token's group has more. Blocks
    /// of 32 tokens rather than 64 measured 5-7% faster prompt batches on s15m: a block walks the cache up
    /// to its last token, so smaller blocks compute fewer scores the causal mask then discards.
    static let targetQueries = 32

    private let config: ModelConfig
    private let rowLength: Int  // the longest stored head vector (q8 pads to whole blocks)
    private let workers: Int
    private let tokensPerJob: Int
    private let maxQueries: Int  // tokensPerJob x group
    private let scores: UnsafeMutablePointer<Float>  // [workers, maxQueries, chunk]
    private let acc: UnsafeMutablePointer<Float>  // [workers, maxQueries, rowLength] unnormalised outputs
    private let runningMax: UnsafeMutablePointer<Float>  // [workers, maxQueries]
    private let runningSum: UnsafeMutablePointer<Float>  // [workers, maxQueries]
    private let queryCodes: UnsafeMutablePointer<Int8>  // [workers, maxQueries, rowLength] q8 queries
    private let queryScales: UnsafeMutablePointer<Float>  // [workers, maxQueries, rowLength / 32]
    private let paddedQuery: UnsafeMutablePointer<Float>  // [workers, rowLength]

    /// Bytes of the workspaces.
    let bytes: Int

    init(config: ModelConfig, rowLength: Int, workers: Int) {
        self.config = config
        self.rowLength = rowLength
        self.workers = workers
        let group = config.heads / config.kvHeads
        tokensPerJob = max(1, BlockedAttention.targetQueries / group)
        maxQueries = tokensPerJob * group
        let q = maxQueries, w = workers
        func floats(_ n: Int) -> UnsafeMutablePointer<Float> { calloc(max(1, n), 4)!.bindMemory(to: Float.self, capacity: max(1, n)) }
        scores = floats(w * q * BlockedAttention.chunk)
        acc = floats(w * q * rowLength)
        runningMax = floats(w * q)
        runningSum = floats(w * q)
        queryCodes = calloc(max(1, w * q * rowLength), 1)!.bindMemory(to: Int8.self, capacity: max(1, w * q * rowLength))
        queryScales = floats(w * q * max(1, rowLength / 32))
        paddedQuery = floats(w * rowLength)
        bytes = 4 * w * q * (BlockedAttention.chunk + rowLength + 2 + max(1, rowLength / 32)) + w * q * rowLength + 4 * w * rowLength
    }

    deinit {
        for p: UnsafeMutableRawPointer in [
            UnsafeMutableRawPointer(scores), UnsafeMutableRawPointer(acc), UnsafeMutableRawPointer(runningMax),
            UnsafeMutableRawPointer(runningSum), UnsafeMutableRawPointer(queryCodes),
            UnsafeMutableRawPointer(queryScales), UnsafeMutableRawPointer(paddedQuery),
        ] { free(p) }
    }

    /// out[t, head] = softmax(cap(q[t, head] · K[window of pos0 + t] · scale)) · V for the batch's `n` tokens;
    /// q and out are [n, qDim]. The window is every earlier position, or the layer's sliding window; the
    /// scale is 1/sqrt(headDim) unless the family sets one; cap is the family's soft-cap, if any.
    /// With `tokenwise`, every job takes one token, so that each token's output is, bit for bit, what a batch of that
    /// token alone computes (`InferenceSession.verify`).
    func run(
        layer l: Int, tokens n: Int, firstPosition pos0: Int, q: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
        cache: KVCache, pool: ThreadPool, level: KernelLevel, tokenwise: Bool = false
    ) {
        let perJob = tokenwise ? 1 : tokensPerJob
        let kvHeads = config.kvHeads, tokenBlocks = (n + perJob - 1) / perJob
        let jobs = kvHeads * tokenBlocks
        let body = { (job: Int, worker: Int) in
            self.job(
                worker: worker, layer: l, head: job % kvHeads, tokens: (job / kvHeads) * perJob..<min(n, (job / kvHeads + 1) * perJob),
                firstPosition: pos0, q: q, out: out, cache: cache, level: level)
        }
        // Multiply-adds of scores and weighted values; only the smallest stay on this thread (16K, not the
        // 128K of the linear layers: decode on s15m and s110m measured 4-13% faster with this threshold).
        if n * config.heads * (pos0 + n) * config.headDim * 2 >= 1 << 14 {
            pool.run(tasks: jobs, body)
        } else {
            for job in 0..<jobs { body(job, 0) }
        }
    }

    private func job(
        worker: Int, layer l: Int, head h: Int, tokens: Range<Int>, firstPosition pos0: Int,
        q: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, cache: KVCache, level: KernelLevel
    ) {
        let hd = config.headDim, dim = config.qDim, group = config.heads / config.kvHeads, rl = rowLength
        let krl = cache.keys.rowLength
        let chunk = BlockedAttention.chunk, nq = tokens.count * group, kblocks = krl / 32
        let scale = config.attention.scale ?? 1 / Float(hd).squareRoot(), softcap = config.attention.softcap
        let window = config.window(layer: l)
        let s = scores + worker * maxQueries * chunk
        let a = acc + worker * maxQueries * rl
        let m = runningMax + worker * maxQueries, z = runningSum + worker * maxQueries
        let qc = queryCodes + worker * maxQueries * rl
        let qs = queryScales + worker * maxQueries * max(1, rl / 32)
        // Query i is token tokens.lowerBound + i / group, query head h * group + i % group.
        func query(_ i: Int) -> UnsafeMutablePointer<Float> { q + (tokens.lowerBound + i / group) * dim + (h * group + i % group) * hd }
        a.initialize(repeating: 0, count: nq * rl)
        m.initialize(repeating: -.infinity, count: nq)
        z.initialize(repeating: 0, count: nq)
        if cache.keys.type == .q8 {
            let pq = paddedQuery + worker * rl, channelScales = cache.keyChannelScales + (l * config.kvHeads + h) * hd
            for i in 0..<nq {
                let qi = query(i)
                for d in 0..<hd { pq[d] = qi[d] * channelScales[d] }
                for d in hd..<krl { pq[d] = 0 }
                IntegerKernels.quantizeQ8Blocks(level, pq, nblocks: kblocks, codes: qc + i * krl, scales: qs + i * kblocks)
            }
        }
        let base = cache.row(layer: l, head: h, position: 0)
        let last = pos0 + tokens.upperBound - 1
        // The first position any query of the job sees (its earliest token's window start).
        var c0 = window.map { max(0, pos0 + tokens.lowerBound - $0 + 1) } ?? 0
        while c0 <= last {
            let c1 = min(c0 + chunk, last + 1), width = c1 - c0
            // s[i, j] = q_i · k_(c0 + j)
            cache.keys.scores(
                rows: base + c0, width: width, queries: nq, query: query, codes: qc, codeScales: qs, headDim: hd, out: s,
                stride: chunk, level: level)
            // Online softmax: s[i, j] becomes exp(score - running max), zero where the query may not look.
            let values = cache.values
            for i in 0..<nq {
                // Causal: query i sees positions up to pos0 + its token, and no further back than its window.
                let p = pos0 + tokens.lowerBound + i / group
                let visible = max(0, min(c1, p + 1) - c0)
                let first = window.map { min(visible, max(0, p - $0 + 1 - c0)) } ?? 0
                let row = s + i * chunk
                for j in 0..<first { row[j] = 0 }
                for j in visible..<width { row[j] = 0 }
                if visible == first { continue }
                var chunkMax = edge_scale_max(level.rawValue, row + first, Int64(visible - first), scale)
                if let softcap {
                    chunkMax = -Float.infinity
                    for j in first..<visible {
                        row[j] = softcap * tanhf(row[j] / softcap)
                        chunkMax = max(chunkMax, row[j])
                    }
                }
                if chunkMax > m[i] {
                    let correction = exp(m[i] - chunkMax)
                    if z[i] > 0 {
                        z[i] *= correction
                        for d in 0..<hd { a[i * rl + d] *= correction }
                    }
                    m[i] = chunkMax
                }
                z[i] += edge_exp_sum(level.rawValue, row + first, Int64(visible - first), m[i])
                values.accumulate(query: row, rows: base + c0, visible: first..<visible, headDim: hd, into: a + i * rl, level: level)
            }
            values.accumulate(queries: nq, probabilities: s, stride: chunk, rows: base + c0, width: width, into: a, accStride: rl, level: level)
            c0 = c1
        }
        for i in 0..<nq {
            let o = out + (tokens.lowerBound + i / group) * dim + (h * group + i % group) * hd
            let inverse = 1 / z[i]
            for d in 0..<hd { o[d] = a[i * rl + d] * inverse }
        }
    }
}
