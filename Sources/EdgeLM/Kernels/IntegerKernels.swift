import CEdgeKernels

/// Entry points to the integer kernels at a given level.
public enum IntegerKernels {
    /// Quantizes `nblocks` blocks of 32 floats to int8 codes with one scale per block.
    @inline(__always)
    public static func quantizeQ8Blocks(
        _ level: KernelLevel, _ x: UnsafePointer<Float>, nblocks: Int,
        codes: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>
    ) {
        edge_quantize_q8_blocks(level.rawValue, x, Int64(nblocks), codes, scales)
    }

    /// Quantized matrix times `tokens` quantized activations for `rows`; see `ReferenceKernels.matmulQuantized`.
    @inline(__always)
    public static func matmul(
        _ level: KernelLevel, kernel: SchemeKernel, weights: UnsafeRawPointer, scales: UnsafePointer<UInt16>,
        blocksPerRow: Int, blocksPerGroup: Int, rows: Range<Int>, x: UnsafePointer<Int8>,
        xs: UnsafePointer<Float>, tokens: Int, out: UnsafeMutablePointer<Float>, rowStride: Int, tokenStride: Int
    ) {
        edge_matmul(
            level.rawValue, kernel.pointer, weights, scales, Int64(blocksPerRow), Int64(blocksPerGroup), Int64(rows.lowerBound),
            Int64(rows.upperBound), x, xs, Int64(tokens), out, Int64(rowStride), Int64(tokenStride))
    }

    /// `matmul` computing each of `tokens` tokens exactly as a call with that token alone would, bit for bit
    /// (`edge_matmul_tokenwise`): q8, q4, q4a and q4o run the row-major multi-token tiles; other schemes take the
    /// rows `chunkRows` at a time, each chunk for every token while it is in cache.
    static func matmulTokenwise(
        _ level: KernelLevel, kernel: SchemeKernel, weights: UnsafeRawPointer, scales: UnsafePointer<UInt16>,
        blocksPerRow: Int, blocksPerGroup: Int, rows: Range<Int>, chunkRows: Int, x: UnsafePointer<Int8>,
        xs: UnsafePointer<Float>, tokens: Int, out: UnsafeMutablePointer<Float>, tokenStride: Int
    ) {
        edge_matmul_tokenwise(
            level.rawValue, kernel.pointer, Int64(chunkRows), weights, scales, Int64(blocksPerRow), Int64(blocksPerGroup),
            Int64(rows.lowerBound), Int64(rows.upperBound), x, xs, Int64(tokens), out, 1, Int64(tokenStride))
    }
}

/// A scheme's C kernel, looked up once (a weight keeps its own): the matrix entry runs per task, matrix and layer, so
/// it must not read the scheme's traits each time.
public struct SchemeKernel: @unchecked Sendable {
    /// The `edge_scheme_` kernel (nil for the float schemes, which the entry ignores).
    let pointer: OpaquePointer?

    /// The kernel of `scheme`.
    public init(_ scheme: TensorScheme) { pointer = scheme.traits?.kernel() }
}
