import CEdgeKernels

/// Entry points to the integer kernels at a given level.
public enum IntegerKernels {
    /// Quantizes `nblocks` blocks of 32 floats to int8 codes with one scale per block.
    @inline(__always)
    public static func quantizeQ8Blocks(_ level: KernelLevel, _ x: UnsafePointer<Float>, nblocks: Int,
                                        codes: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>) {
        edge_quantize_q8_blocks(level.rawValue, x, Int64(nblocks), codes, scales)
    }

    /// Quantized matrix times `tokens` quantized activations for `rows`; see `ReferenceKernels.matmulQuantized`.
    @inline(__always)
    public static func matmul(_ level: KernelLevel, scheme: TensorScheme, weights: UnsafeRawPointer, scales: UnsafePointer<UInt16>,
                              blocksPerRow: Int, blocksPerGroup: Int, rows: Range<Int>, x: UnsafePointer<Int8>,
                              xs: UnsafePointer<Float>, tokens: Int, out: UnsafeMutablePointer<Float>, rowStride: Int, tokenStride: Int) {
        edge_matmul(level.rawValue, scheme.kernelScheme, weights, scales, Int64(blocksPerRow), Int64(blocksPerGroup), Int64(rows.lowerBound),
                    Int64(rows.upperBound), x, xs, Int64(tokens), out, Int64(rowStride), Int64(tokenStride))
    }

    /// `matmul` computing each of `tokens` tokens exactly as a call with that token alone would, bit for bit
    /// (`edge_matmul_tokenwise`): q8, q4, q4a and q4o run the row-major multi-token tiles; other schemes take the
    /// rows `chunkRows` at a time, each chunk for every token while it is in cache.
    static func matmulTokenwise(_ level: KernelLevel, scheme: TensorScheme, weights: UnsafeRawPointer, scales: UnsafePointer<UInt16>,
                                blocksPerRow: Int, blocksPerGroup: Int, rows: Range<Int>, chunkRows: Int, x: UnsafePointer<Int8>,
                                xs: UnsafePointer<Float>, tokens: Int, out: UnsafeMutablePointer<Float>, tokenStride: Int) {
        edge_matmul_tokenwise(level.rawValue, scheme.kernelScheme, Int64(chunkRows), weights, scales, Int64(blocksPerRow), Int64(blocksPerGroup),
                              Int64(rows.lowerBound), Int64(rows.upperBound), x, xs, Int64(tokens), out, 1, Int64(tokenStride))
    }
}

extension TensorScheme {
    /// The C kernels' `edge_scheme` of an integer scheme (-1, which every kernel entry ignores, for the float ones).
    var kernelScheme: Int32 {
        let scheme: edge_scheme? = switch self {
        case .q8: EDGE_SCHEME_Q8
        case .q4: EDGE_SCHEME_Q4
        case .q4a: EDGE_SCHEME_Q4A
        case .q4o: EDGE_SCHEME_Q4O
        case .q4n: EDGE_SCHEME_Q4N
        case .iq4nl: EDGE_SCHEME_IQ4NL
        case .q5o: EDGE_SCHEME_Q5O
        case .q6: EDGE_SCHEME_Q6
        case .f32, .f16: nil
        }
        return scheme.map { Int32($0.rawValue) } ?? -1
    }
}
