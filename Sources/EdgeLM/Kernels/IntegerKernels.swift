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
        guard scheme != .q8 else {
            edge_matmul_q8(level.rawValue, weights.assumingMemoryBound(to: Int8.self), scales, Int64(blocksPerRow), Int64(blocksPerGroup),
                           Int64(rows.lowerBound), Int64(rows.upperBound), x, xs, Int64(tokens), out, Int64(rowStride), Int64(tokenStride))
            return
        }
        let kernel = switch scheme {
        case .q4a: edge_matmul_q4a
        case .q4o: edge_matmul_q4o
        case .q4n: edge_matmul_q4n
        case .iq4nl: edge_matmul_iq4nl
        case .q5o: edge_matmul_q5o
        case .q6: edge_matmul_q6
        default: edge_matmul_q4
        }
        kernel(level.rawValue, weights.assumingMemoryBound(to: UInt8.self), scales, Int64(blocksPerRow), Int64(blocksPerGroup),
               Int64(rows.lowerBound), Int64(rows.upperBound), x, xs, Int64(tokens), out, Int64(rowStride), Int64(tokenStride))
    }

    /// `matmul` computing each of `tokens` tokens exactly as a call with that token alone would, bit for bit
    /// (`edge_matmul_q8_tokenwise`): q8, q4, q4a and q4o run the row-major multi-token tiles; other schemes take the
    /// rows `chunkRows` at a time, each chunk for every token while it is in cache.
    static func matmulTokenwise(_ level: KernelLevel, scheme: TensorScheme, weights: UnsafeRawPointer, scales: UnsafePointer<UInt16>,
                                blocksPerRow: Int, blocksPerGroup: Int, rows: Range<Int>, chunkRows: Int, x: UnsafePointer<Int8>,
                                xs: UnsafePointer<Float>, tokens: Int, out: UnsafeMutablePointer<Float>, tokenStride: Int) {
        let (nb, gb, r0, r1, n) = (Int64(blocksPerRow), Int64(blocksPerGroup), Int64(rows.lowerBound), Int64(rows.upperBound), Int64(tokens))
        switch scheme {
        case .q8:
            edge_matmul_q8_tokenwise(level.rawValue, weights.assumingMemoryBound(to: Int8.self), scales, nb, gb, r0, r1, x, xs, n, out, 1, Int64(tokenStride))
        case .q4, .q4a, .q4o:
            let kernel = scheme == .q4 ? edge_matmul_q4_tokenwise : scheme == .q4a ? edge_matmul_q4a_tokenwise : edge_matmul_q4o_tokenwise
            kernel(level.rawValue, weights.assumingMemoryBound(to: UInt8.self), scales, nb, gb, r0, r1, x, xs, n, out, 1, Int64(tokenStride))
        default:
            for c0 in stride(from: rows.lowerBound, to: rows.upperBound, by: chunkRows) {
                for t in 0..<tokens {
                    matmul(level, scheme: scheme, weights: weights, scales: scales, blocksPerRow: blocksPerRow, blocksPerGroup: blocksPerGroup,
                           rows: c0..<min(rows.upperBound, c0 + chunkRows), x: x + t * blocksPerRow * 32, xs: xs + t * blocksPerRow, tokens: 1,
                           out: out + t * tokenStride, rowStride: 1, tokenStride: tokenStride)
                }
            }
        }
    }
}
