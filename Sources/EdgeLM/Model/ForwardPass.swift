import CEdgeKernels
import Foundation

/// The forward pass of `InferenceSession`, top to bottom: embedding, per layer attention then the feed-forward
/// block (each a pre-norm sublayer added to the residual stream), final norm and logits; then the pieces it runs
/// on the session's buffers (norms, activation quantization, the threaded matrix products per scheme).
extension InferenceSession {
    /// Consecutive batch tokens [start, start + count) of one sequence: `session`'s cache, from its position.
    struct Segment {
        let session: InferenceSession
        let start: Int
        let count: Int
    }

    /// Runs `tokens` (at most maxBatch) through every layer (or the first `layers`) on this session's buffers,
    /// leaving the hidden states in x; each segment's tokens go to its session's KV cache, whose position then advances.
    func forwardBatch(_ tokens: [Int], segments: [Segment], layers: Int? = nil) {
        let n = tokens.count, dim = c.dim, qDim = c.qDim, kvDim = c.kvDim, ffn = c.ffnDim
        profile?.start()
        embedRows(tokens)
        profile?.lap(.embedding)
        for (l, layer) in model.layers.prefix(layers ?? model.layers.count).enumerated() {
            // Attention: x -> xb = norm(x) -> q, k, v (+ bias, per-head norm) -> RoPE -> cache -> attnOut
            //   -> delta = wo attnOut (-> post-norm) -> x += delta
            let quantizedInput = normedInput(layer.attnNorm, tokens: n, for: layer.wq)
            profile?.lap(.norms)
            observer?.observe(layer: l, input: .attention, values: xb, tokens: n, width: dim)
            linears([(layer.wq, q), (layer.wk, k), (layer.wv, v)], input: xb, quantized: quantizedInput, tokens: n)
            addBias(q, layer.qBias, width: qDim, tokens: n)
            addBias(k, layer.kBias, width: kvDim, tokens: n)
            addBias(v, layer.vBias, width: kvDim, tokens: n)
            normRows(q, layer.qNorm, width: c.headDim, count: n * c.heads)
            normRows(k, layer.kNorm, width: c.headDim, count: n * c.kvHeads)
            profile?.lap(.projections)
            let table = c.ropeTableIndex(layer: l)
            for seg in segments {
                let pos0 = seg.session.position, cache = seg.session.cache
                perToken(seg.count, width: qDim + kvDim) { range in
                    for t in range.lowerBound + seg.start..<range.upperBound + seg.start {
                        rotary.rotate(q + t * qDim, heads: c.heads, position: pos0 + t - seg.start, table: table)
                        rotary.rotate(k + t * kvDim, heads: c.kvHeads, position: pos0 + t - seg.start, table: table)
                    }
                }
                if pos0 == 0 {
                    cache.setKeyTransform(layer: l, keys: k + seg.start * kvDim, queries: q + seg.start * qDim, heads: c.heads, tokens: seg.count)
                }
                store(layer: l, tokens: seg.start..<(seg.start + seg.count), from: pos0, in: cache)
                profile?.lap(.rope)
                attention.run(
                    layer: l, tokens: seg.count, firstPosition: pos0, q: q + seg.start * qDim, out: attnOut + seg.start * qDim,
                    cache: cache, pool: pool, level: level, tokenwise: tokenByToken)
                profile?.lap(.attention)
            }
            observer?.observe(layer: l, input: .attentionOutput, values: attnOut, tokens: n, width: qDim)
            let quantizedOutput = quantizeIfNeeded(attnOut, cols: qDim, tokens: n, for: layer.wo)
            profile?.lap(.norms)
            linears([(layer.wo, delta)], input: attnOut, quantized: quantizedOutput, tokens: n)
            profile?.lap(.output)
            addResidual(delta, tokens: n, postNorm: layer.postAttnNorm)

            // FFN: xb = norm(x) -> hb = gate xb, hb2 = up xb -> hb = act(hb) * hb2 -> delta = down hb (-> post-norm) -> x += delta
            let quantizedFFN = normedInput(layer.ffnNorm, tokens: n, for: layer.gate)
            profile?.lap(.norms)
            observer?.observe(layer: l, input: .ffn, values: xb, tokens: n, width: dim)
            // Each worker gates the hidden rows it computed of both gate and up, for every token.
            let activation = c.block.activation ?? .silu, hb = self.hb, hb2 = self.hb2, level = self.level
            linears([(layer.gate, hb), (layer.up, hb2)], input: xb, quantized: quantizedFFN, tokens: n) { rows in
                for t in 0..<n {
                    let g = hb + t * ffn + rows.lowerBound, u = hb2 + t * ffn + rows.lowerBound
                    switch activation {
                    case .silu: edge_swiglu(level.rawValue, g, u, Int64(rows.count))
                    case .geluTanh: edge_geglu(level.rawValue, g, u, Int64(rows.count))
                    }
                }
            }
            profile?.lap(.gateUp)
            observer?.observe(layer: l, input: .ffnDown, values: hb, tokens: n, width: ffn)
            let quantizedHidden = quantizeIfNeeded(hb, cols: ffn, tokens: n, for: layer.down)
            profile?.lap(.norms)
            linears([(layer.down, delta)], input: hb, quantized: quantizedHidden, tokens: n)
            profile?.lap(.down)
            addResidual(delta, tokens: n, postNorm: layer.postFFNNorm)
            profile?.lap(.norms)
        }
        for seg in segments {
            seg.session.position += seg.count
            seg.session.tokens.append(contentsOf: tokens[seg.start..<(seg.start + seg.count)])
        }
    }

    /// x[t] = the embedding row of tokens[t] (times the family's embedding scale), tokens in parallel.
    private func embedRows(_ tokens: [Int]) {
        let dim = c.dim, x = self.x, embedding = model.embedding, scale = c.block.embeddingScale
        perToken(tokens.count, width: dim) { range in
            for t in range {
                embedding.row(tokens[t], into: x + t * dim)
                if let scale { for i in (t * dim)..<((t + 1) * dim) { x[i] *= scale } }
            }
        }
    }

    /// Writes the keys and values of batch rows `rows` to `cache` at positions `first`, `first + 1`, ..., tokens in
    /// parallel.
    private func store(layer l: Int, tokens rows: Range<Int>, from first: Int, in cache: KVCache) {
        let kvDim = c.kvDim, k = self.k, v = self.v, level = self.level
        perToken(rows.count, width: 2 * kvDim) { range in
            for t in range {
                let row = rows.lowerBound + t
                cache.store(layer: l, position: first + t, keys: k + row * kvDim, values: v + row * kvDim, level: level)
            }
        }
    }

    /// logits[t] = output · norm(x[first + t]) for `tokens` tokens.
    func computeLogits(tokens n: Int, first: Int) {
        let quantized = normedInput(model.outputNorm, tokens: n, from: first, for: model.output)
        linears([(model.output, logitsBuffer)], input: xb, quantized: quantized, tokens: n)
        if let cap = c.block.finalSoftcap { FloatKernels.softcap(logitsBuffer, count: n * c.vocabSize, cap: cap) }
        profile?.lap(.head)
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
        edge_block_sums(xq + t * blocks * 32, Int64(blocks), xsums + t * blocks)
        if activationGranularity == .residual {
            let codes = xq + t * blocks * 32, scales = xs + t * blocks, r = residualRows + t * blocks * 32
            for i in 0..<(blocks * 32) { r[i] = (i < cols ? row[i] : 0) - Float(codes[i]) * scales[i / 32] }
            let residual = tokens + t
            IntegerKernels.quantizeQ8Blocks(level, r, nblocks: blocks, codes: xq + residual * blocks * 32, scales: xs + residual * blocks)
            edge_block_sums(xq + residual * blocks * 32, Int64(blocks), xsums + residual * blocks)
        }
    }

    /// Replaces per-block codes by codes sharing one scale for the whole row.
    private func requantizePerRow(
        _ row: UnsafeMutablePointer<Float>, cols: Int, codes: UnsafeMutablePointer<Int8>,
        scales: UnsafeMutablePointer<Float>
    ) {
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
    private func linears(
        _ pairs: [(weight: LinearWeight, out: UnsafeMutablePointer<Float>)], input: UnsafeMutablePointer<Float>,
        quantized: Bool, tokens: Int, epilogue: ((Range<Int>) -> Void)? = nil
    ) {
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
    private func matmul(
        _ w: LinearWeight, rows: Range<Int>, input: UnsafeMutablePointer<Float>, quantized: Bool, tokens: Int,
        out: UnsafeMutablePointer<Float>, task: Int
    ) {
        guard !rows.isEmpty else { return }
        if tokenByToken, tokens > 1 {
            let step = max(16, Self.tokenByTokenBytes / max(1, w.byteCount / max(1, w.rows)) / 16 * 16)
            if w.scheme.isQuantized {
                let rest = packedProduct(w, rows: rows, tokens: tokens, out: out, tokenStride: w.rows)
                guard !rest.isEmpty else { return }
                IntegerKernels.matmulTokenwise(
                    level, kernel: w.kernel, weights: w.codes, scales: w.scales, blocksPerRow: w.layout.blocksPerRow,
                    blocksPerGroup: w.layout.blocksPerGroup, rows: rest, chunkRows: step, x: xq, xs: xs, tokens: tokens,
                    out: out, tokenStride: w.rows)
                return
            }
            for r0 in stride(from: rows.lowerBound, to: rows.upperBound, by: step) {
                for t in 0..<tokens {
                    FloatKernels.matmul(
                        weights: w.floats, cols: w.cols, rows: r0..<min(rows.upperBound, r0 + step), x: input + t * w.cols, tokens: 1,
                        out: out + t * w.rows, rowStride: 1, tokenStride: w.rows)
                }
            }
            return
        }
        if w.scheme.isQuantized {
            precondition(quantized)
            guard activationGranularity == .residual else {
                let rest = packedProduct(w, rows: rows, tokens: tokens, out: out, tokenStride: w.rows)
                guard !rest.isEmpty else { return }
                IntegerKernels.matmul(
                    level, kernel: w.kernel, weights: w.codes, scales: w.scales, blocksPerRow: w.layout.blocksPerRow,
                    blocksPerGroup: w.layout.blocksPerGroup, rows: rest, x: xq, xs: xs, tokens: tokens, out: out,
                    rowStride: 1, tokenStride: w.rows)
                return
            }
            // The residuals are tokens [tokens, 2 tokens) of the same product: the kernel reads each weight once for both.
            let both = residualOut + task * 2 * maxBatch * Self.residualChunk  // [2 tokens, residualChunk]
            for r0 in stride(from: rows.lowerBound, to: rows.upperBound, by: Self.residualChunk) {
                let chunk = r0..<min(rows.upperBound, r0 + Self.residualChunk)
                let rest = packedProduct(w, rows: chunk, tokens: 2 * tokens, out: both - chunk.lowerBound, tokenStride: Self.residualChunk)
                if !rest.isEmpty {
                    IntegerKernels.matmul(
                        level, kernel: w.kernel, weights: w.codes, scales: w.scales, blocksPerRow: w.layout.blocksPerRow,
                        blocksPerGroup: w.layout.blocksPerGroup, rows: rest, x: xq, xs: xs, tokens: 2 * tokens,
                        out: both - chunk.lowerBound, rowStride: 1, tokenStride: Self.residualChunk)
                }
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
    /// The rows of `rows` that `w`'s packed copy for this level holds (whole 16-row groups from rows' start) times
    /// `tokens` quantized activations, into out[t * tokenStride + r]; returns the rows left to the row-major kernels
    /// (all of them without a copy for this level). The packed kernel gives each token the same bits in any batch,
    /// so it serves decode, prompts and speculative verification alike.
    private func packedProduct(
        _ w: LinearWeight, rows: Range<Int>, tokens: Int, out: UnsafeMutablePointer<Float>, tokenStride: Int
    ) -> Range<Int> {
        guard let packed = w.packed, packed.level == level, rows.lowerBound % 16 == 0 else { return rows }
        let end = min(rows.upperBound, packed.rows) / 16 * 16
        guard end > rows.lowerBound else { return rows }
        edge_packed_matmul(
            level.rawValue, packed.kind, packed.storage.bytes.baseAddress!, Int64(w.rows), Int64(w.layout.blocksPerRow),
            Int64(rows.lowerBound), Int64(end), xq, xs, xsums, Int64(tokens), out, 1, Int64(tokenStride))
        return end..<rows.upperBound
    }
}
