import CEdgeKernels
import Foundation

/// GPTQ (Frantar et al., 2022) for q4 matrices: the columns of W are rounded one at a time, and each
/// column's rounding error is pushed onto the columns not yet rounded through the inverse Hessian of the
/// layer's reconstruction error, H = E[x xᵀ] over the calibration activations, so that W·x rather than W
/// itself stays close. The stored layout is the ordinary q4 one: only which codes and scales are chosen
/// changes, not what the kernels read.
///
/// Each group's scale is fitted (as the calibrated q4 quantizer does, `edge_fit_q4` weighted by the
/// column importance E[x_j²]) to the group's weights as updated by the errors of the groups before it;
/// its codes are then rounded column by column with that scale. Rows are independent given H and run in
/// parallel. Cost: rows x cols² / 2 multiply-adds per matrix, plus a cols³ Cholesky factorisation.
enum GPTQ {
    /// Dampening added to H's diagonal, as a fraction of its mean (the paper's 1%), so that columns the
    /// calibration text barely reaches still give a positive definite H.
    static let dampening = 0.01

    /// Encodes `values` ([rows, cols] row-major) as `layout` (q4) with `gram` = E[x xᵀ] ([cols, cols]).
    static func encode(_ values: [Float], layout: TensorLayout, gram: [Float], level: KernelLevel) throws(EdgeLMError) -> [UInt8] {
        precondition(layout.scheme == .q4 && values.count == layout.count && gram.count == layout.cols * layout.cols)
        let cols = layout.cols
        let importance = (0..<cols).map { gram[$0 * cols + $0] }
        let u = try inverseFactor(gram, cols: cols)
        var out = [UInt8](repeating: 0, count: layout.byteCount)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { dst in
                let s = UncheckedSendable(src), d = UncheckedSendable(dst), uu = UncheckedSendable(u)
                let chunk = max(1, 64 / max(1, cols / 256))
                DispatchQueue.concurrentPerform(iterations: (layout.rows + chunk - 1) / chunk) { c in
                    let rows = (c * chunk)..<min(layout.rows, (c + 1) * chunk)
                    uu.value.withUnsafeBufferPointer { up in
                        encodeRows(rows, values: s.value, importance: importance, u: up.baseAddress!, layout: layout, level: level, out: d.value)
                    }
                }
            }
        }
        return out
    }

    /// The upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U) for H = gram + dampening, [cols, cols] row-major:
    /// row i of U carries column i's rounding error to the later columns. Columns the text never reached
    /// (zero diagonal) get a unit diagonal: they are rounded on their own.
    static func inverseFactor(_ gram: [Float], cols n: Int) throws(EdgeLMError) -> [Double] {
        var h = gram.map(Double.init)
        for i in 0..<n where h[i * n + i] <= 0 { h[i * n + i] = 1 }
        let mean = (0..<n).reduce(0.0) { $0 + h[$1 * n + $1] } / Double(n)
        for i in 0..<n { h[i * n + i] += dampening * mean }
        guard let l = cholesky(h, n) else {
            throw .invalidInput("the calibration activations give a Hessian that is not positive definite even after \(dampening * 100)% dampening")
        }
        // H⁻¹ = L⁻ᵀ L⁻¹: invert the lower factor, then form the product.
        var li = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            li[j * n + j] = 1 / l[j * n + j]
            for i in (j + 1)..<n {
                var s = 0.0
                for k in j..<i { s += l[i * n + k] * li[k * n + j] }
                li[i * n + j] = -s / l[i * n + i]
            }
        }
        var inv = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n {
                var s = 0.0
                for k in j..<n { s += li[k * n + i] * li[k * n + j] }
                inv[i * n + j] = s
                inv[j * n + i] = s
            }
        }
        // The upper factor of H⁻¹ is the transpose of its lower Cholesky factor.
        guard let m = cholesky(inv, n) else { throw .invalidInput("the inverse Hessian of the calibration activations is not positive definite") }
        var upper = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { upper[i * n + j] = m[j * n + i] } }
        return upper
    }

    /// The lower Cholesky factor of a symmetric [n, n] matrix, or nil if it is not positive definite.
    static func cholesky(_ a: [Double], _ n: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            var d = a[j * n + j]
            for k in 0..<j { d -= l[j * n + k] * l[j * n + k] }
            guard d > 0, d.isFinite else { return nil }
            let ljj = d.squareRoot()
            l[j * n + j] = ljj
            for i in (j + 1)..<n {
                var s = a[i * n + j]
                for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
                l[i * n + j] = s / ljj
            }
        }
        return l
    }

    private static func encodeRows(_ rows: Range<Int>, values: UnsafeBufferPointer<Float>, importance: [Float], u: UnsafePointer<Double>,
                                   layout: TensorLayout, level: KernelLevel, out: UnsafeMutableRawBufferPointer) {
        let cols = layout.cols, groupValues = layout.blocksPerGroup * 32
        let w = UnsafeMutablePointer<Double>.allocate(capacity: cols)  // the row as updated so far
        let x = UnsafeMutablePointer<Float>.allocate(capacity: groupValues)  // one group, zero-padded
        let weight = UnsafeMutablePointer<Float>.allocate(capacity: groupValues)
        let codes = UnsafeMutablePointer<Int8>.allocate(capacity: groupValues)
        defer { w.deallocate(); x.deallocate(); weight.deallocate(); codes.deallocate() }
        for r in rows {
            var rowVariance: Float = 0
            for j in 0..<cols {
                w[j] = Double(values[r * cols + j])
                rowVariance += values[r * cols + j] * values[r * cols + j]
            }
            rowVariance /= Float(cols)
            for g in 0..<layout.groupsPerRow {
                let lo = g * groupValues, hi = min(cols, lo + groupValues)
                let stored = min(groupValues, layout.blocksPerRow * 32 - lo)
                for i in 0..<stored {
                    x[i] = lo + i < hi ? Float(w[lo + i]) : 0
                    weight[i] = lo + i < hi ? importance[lo + i] * (rowVariance + x[i] * x[i]).squareRoot() : 1
                }
                let scaleBits = edge_fit_q4(level.rawValue, x, weight, Int64(stored), codes, 0)
                let scale = Double(HalfFloat.toFloat(scaleBits))
                for i in lo..<hi {
                    let q = scale == 0 ? 0 : min(7, max(-8, (w[i] / scale).rounded(.toNearestOrEven)))
                    codes[i - lo] = Int8(q)
                    let err = (w[i] - q * scale) / u[i * cols + i]
                    let ui = u + i * cols
                    for j in (i + 1)..<cols { w[j] -= err * ui[j] }
                }
                for i in (hi - lo)..<stored { codes[i] = 0 }
                Quantizer.store(codes: codes, scale: scaleBits, row: r, group: g, count: stored, layout: layout, out: out)
            }
        }
    }
}
