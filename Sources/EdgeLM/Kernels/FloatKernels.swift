#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Float kernels in Swift SIMD: explicit 16-lane accumulators, because float reductions are never
/// auto-vectorised without fast-math. Each has a scalar twin in `ReferenceKernels` or is simple enough
/// (element-wise) to be its own reference.
public enum FloatKernels {
    /// Dot product with two independent 16-lane accumulators.
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) -> Float {
        var s0 = SIMD16<Float>(), s1 = SIMD16<Float>()
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 32 <= n {
            s0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            s1 += ra.loadUnaligned(fromByteOffset: i * 4 + 64, as: SIMD16<Float>.self) * rb.loadUnaligned(fromByteOffset: i * 4 + 64, as: SIMD16<Float>.self)
            i += 32
        }
        while i + 16 <= n {
            s0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        var acc = (s0 + s1).sum()
        while i < n {
            acc += a[i] * b[i]
            i += 1
        }
        return acc
    }

    /// Matrix times `tokens` vectors for f32 weights (rows range of a [rows, cols] matrix).
    public static func matmul(
        weights: UnsafePointer<Float>, cols: Int, rows: Range<Int>, x: UnsafePointer<Float>,
        tokens: Int, out: UnsafeMutablePointer<Float>, rowStride: Int, tokenStride: Int
    ) {
        for r in rows {
            let w = weights + r * cols
            for t in 0..<tokens { out[r * rowStride + t * tokenStride] = dot(w, x + t * cols, count: cols) }
        }
    }

    /// out = x * weight / sqrt(mean(x^2) + eps), over `n` values.
    public static func rmsNorm(
        _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        count n: Int, epsilon: Float
    ) {
        var ss: Float = 0
        for i in 0..<n { ss += x[i] * x[i] }
        let scale = 1 / (ss / Float(n) + epsilon).squareRoot()
        for i in 0..<n { out[i] = weight[i] * (scale * x[i]) }
    }

    /// In-place softmax over `n` values.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        var m = -Float.infinity
        for i in 0..<n { m = max(m, x[i]) }
        var sum: Float = 0
        for i in 0..<n {
            x[i] = expf(x[i] - m)
            sum += x[i]
        }
        let inv = 1 / sum
        for i in 0..<n { x[i] *= inv }
    }

    /// out += a * x over `n` values.
    @inline(__always)
    public static func addScaled(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ a: Float, count n: Int) {
        for i in 0..<n { out[i] += a * x[i] }
    }

    /// out += x over `n` values.
    @inline(__always)
    public static func add(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { out[i] += x[i] }
    }

    /// Soft-capping in place: x = cap * tanh(x / cap).
    public static func softcap(_ x: UnsafeMutablePointer<Float>, count n: Int, cap: Float) {
        let inverse = 1 / cap
        for i in 0..<n { x[i] = cap * tanhf(x[i] * inverse) }
    }
}
