import CEdgeKernels

/// What attention asks of one half of the cache, for the stored type: a chunk's scores against the keys, and a
/// query's probability-weighted sum of the values. `BlockedAttention` keeps only the online softmax.
extension KVStore {
    /// q8's kernel: the keys' scores are q8 matrix products.
    private static let q8Kernel = SchemeKernel(.q8)

    /// s[i * stride + j] = query i · row (first + j) for j < width and i < queries: f32 and f16 rows against the
    /// float queries (`query(i)`), q8 rows against the queries' q8 codes and block scales (`codes`, `codeScales`).
    func scores(
        rows first: Int, width: Int, queries: Int, query: (Int) -> UnsafeMutablePointer<Float>, codes: UnsafePointer<Int8>,
        codeScales: UnsafePointer<Float>, headDim hd: Int, out s: UnsafeMutablePointer<Float>, stride: Int, level: KernelLevel
    ) {
        switch type {
        case .f32:
            let rows = data.assumingMemoryBound(to: Float.self) + first * rowLength
            for i in 0..<queries {
                let qi = query(i)
                for j in 0..<width { s[i * stride + j] = FloatKernels.dot(qi, rows + j * rowLength, count: hd) }
            }
        case .f16:
            let rows = data.assumingMemoryBound(to: UInt16.self) + first * rowLength
            for i in 0..<queries { edge_attn_scores_f16(level.rawValue, query(i), rows, Int64(width), Int64(hd), s + i * stride) }
        case .q8:
            let blocks = rowLength / 32
            IntegerKernels.matmul(
                level, kernel: Self.q8Kernel, weights: UnsafeRawPointer(data) + first * rowLength, scales: scales + first * blocks,
                blocksPerRow: blocks, blocksPerGroup: 1, rows: 0..<width, x: codes, xs: codeScales, tokens: queries,
                out: s, rowStride: 1, tokenStride: stride)
        }
    }

    /// acc[d] += Σ_j p[j] · row (first + j)[d] over j in visible (p zero before it): one query's value sum, for f32
    /// and f16 values; q8 values are summed for every query at once (`accumulate(queries:...)`), so nothing here.
    func accumulate(
        query p: UnsafePointer<Float>, rows first: Int, visible: Range<Int>, headDim hd: Int, into acc: UnsafeMutablePointer<Float>,
        level: KernelLevel
    ) {
        switch type {
        case .f32:
            let rows = data.assumingMemoryBound(to: Float.self) + first * rowLength
            for j in visible { FloatKernels.addScaled(acc, rows + j * rowLength, p[j], count: hd) }
        case .f16:
            edge_attn_values_f16(
                level.rawValue, p, data.assumingMemoryBound(to: UInt16.self) + first * rowLength, Int64(visible.upperBound),
                Int64(hd), acc)
        case .q8:
            break
        }
    }

    /// acc[i * accStride + d] += Σ_j p[i * stride + j] · row (first + j)[d] for j < width and i < queries, for q8
    /// values (each row dequantized once for all the queries); f32 and f16 values were summed query by query.
    func accumulate(
        queries: Int, probabilities p: UnsafePointer<Float>, stride: Int, rows first: Int, width: Int,
        into acc: UnsafeMutablePointer<Float>, accStride: Int, level: KernelLevel
    ) {
        guard type == .q8 else { return }
        edge_attn_values_q8(
            level.rawValue, p, Int64(stride), Int64(queries), data.assumingMemoryBound(to: Int8.self) + first * rowLength,
            scales + first * (rowLength / 32), Int64(width), Int64(rowLength), acc, Int64(accStride))
    }
}
