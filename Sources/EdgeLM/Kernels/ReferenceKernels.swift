/// Plain scalar Swift references for every kernel. They define the semantics the SIMD kernels
/// (C, in `CEdgeKernels`, and Swift SIMD in `FloatKernels`) must reproduce, and the tests compare them.
public enum ReferenceKernels {
    /// Quantizes `nblocks` blocks of 32 floats to int8: scale = max|x| / 127, code = round-half-even(x / scale).
    public static func quantizeQ8Blocks(
        _ x: UnsafePointer<Float>, nblocks: Int, codes: UnsafeMutablePointer<Int8>,
        scales: UnsafeMutablePointer<Float>
    ) {
        for b in 0..<nblocks {
            var amax: Float = 0
            for i in 0..<32 { amax = max(amax, abs(x[b * 32 + i])) }
            let d = amax / 127
            let inverse: Float = d != 0 ? 1 / d : 0
            for i in 0..<32 { codes[b * 32 + i] = Int8((x[b * 32 + i] * inverse).rounded(.toNearestOrEven)) }
            scales[b] = d
        }
    }

    /// out[r * rowStride + t * tokenStride] = Σ_blocks dot(w_r,b, x_t,b) * xs[t,b] * ws[r, b / blocksPerGroup] for q8, q4, q4a
    /// or q4n weights (q4a: the codes n - z and the 12-bit scale of each group's word; q4n: the codebook's levels);
    /// for q4o and q5o weights, Σ_blocks (d Σ n x + m Σ x) * xs[t,b] with each group's pair (d, m); for q6 weights,
    /// Σ_blocks (s_0 Σ_{i<16} c x + s_1 Σ_{i>=16} c x) * xs[t,b] with c = n - 32 and each block's pair (s_0, s_1).
    public static func matmulQuantized(
        scheme: TensorScheme, weights: UnsafeRawPointer, scales: UnsafePointer<UInt16>,
        blocksPerRow: Int, blocksPerGroup: Int, rows: Range<Int>,
        x: UnsafePointer<Int8>, xs: UnsafePointer<Float>, tokens: Int,
        out: UnsafeMutablePointer<Float>, rowStride: Int, tokenStride: Int
    ) {
        let groups = (blocksPerRow + blocksPerGroup - 1) / blocksPerGroup
        let traits = scheme.traits!, blockBytes = traits.blockBytes, highBits = traits.highBits, halfBlocks = traits.hasHalfBlockScales
        for r in rows {
            for t in 0..<tokens {
                var acc: Float = 0
                for b in 0..<blocksPerRow {
                    let wb = weights + (r * blocksPerRow + b) * blockBytes
                    let xb = x + t * blocksPerRow * 32 + b * 32
                    if traits.wordsPerGroup == 2 {
                        let first = HalfFloat.toFloat(scales[2 * (r * groups + b / blocksPerGroup)])
                        let second = HalfFloat.toFloat(scales[2 * (r * groups + b / blocksPerGroup) + 1])
                        let block = UnsafeRawBufferPointer(start: wb, count: blockBytes)
                        var dot: Int32 = 0, sum: Int32 = 0, halves: [Int32] = [0, 0]
                        for i in 0..<32 {
                            let n = Int32(Quantizer.unsignedCode(block, i, highBits: highBits))
                            dot += n * Int32(xb[i])
                            sum += Int32(xb[i])
                            halves[i / 16] += (n - 32) * Int32(xb[i])
                        }
                        let v = halfBlocks ? first * Float(halves[0]) + second * Float(halves[1]) : first * Float(dot) + second * Float(sum)
                        acc += v * xs[t * blocksPerRow + b]
                        continue
                    }
                    let word = scales[r * groups + b / blocksPerGroup], codes = traits.groupCodes!
                    var dot: Int32 = 0
                    for i in 0..<32 {
                        let w: Int32
                        if scheme.isFourBit {
                            let byte = wb.load(fromByteOffset: i % 16, as: UInt8.self)
                            w = Int32(codes.code(Int(i < 16 ? byte & 0x0F : byte >> 4), word))
                        } else {
                            w = Int32(wb.load(fromByteOffset: i, as: Int8.self))
                        }
                        dot += w * Int32(xb[i])
                    }
                    let ws = codes.scale(word)
                    acc += Float(dot) * (xs[t * blocksPerRow + b] * ws)
                }
                out[r * rowStride + t * tokenStride] = acc
            }
        }
    }

    /// out[r * rowStride + t * tokenStride] = Σ_i w[r * cols + i] * x[t * cols + i] for f32 weights.
    public static func matmulFloat(
        weights: UnsafePointer<Float>, cols: Int, rows: Range<Int>, x: UnsafePointer<Float>,
        tokens: Int, out: UnsafeMutablePointer<Float>, rowStride: Int, tokenStride: Int
    ) {
        for r in rows {
            for t in 0..<tokens {
                var acc: Float = 0
                for i in 0..<cols { acc += weights[r * cols + i] * x[t * cols + i] }
                out[r * rowStride + t * tokenStride] = acc
            }
        }
    }

    /// Dot product of two float vectors.
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var acc: Float = 0
        for i in 0..<count { acc += a[i] * b[i] }
        return acc
    }
}
