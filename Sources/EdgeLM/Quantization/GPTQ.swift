import CEdgeKernels
import Foundation

/// GPTQ (Frantar et al., 2022) for q4, q4a, q4n and q8 matrices: the columns of W are rounded one at a time, and each
/// column's rounding error is pushed onto the columns not yet rounded through the inverse Hessian of the
/// layer's reconstruction error, H = E[x xᵀ] over the calibration activations, so that W·x rather than W
/// itself stays close. The stored layout is the ordinary q4, q4a, q4n or q8 one: only which codes and scales are
/// chosen changes, not what the kernels read.
///
/// 4-bit (q4, q4a, q4n) columns go in order of decreasing E[x_j²] ("act order"). Each group's scale is fitted first, to the
/// original weights (q4: as the calibrated quantizer does, `edge_fit_q4` weighted by the column
/// importance E[x_j²]; q8: the largest weight over 127), then the codes are rounded column by column
/// with those scales. Once a row's codes are chosen, its scales are solved for jointly — the
/// least-squares scales of (w - Q s)ᵀ H (w - Q s), rounded to f16 — and kept when they lower that error.
/// Measured on stories260K q4 (second-half KLD): act order 0.0541 against 0.0567 in column order with
/// scales fitted to the updated weights; the joint refit 0.0567 against 0.0581 without it. Rows are
/// independent given H and run in parallel. Cost: about rows x cols² multiply-adds per matrix, plus
/// cols³ for the factorisations.
enum GPTQ {
    /// Dampening added to H's diagonal, as a fraction of its mean (the paper's 1%), so that columns the
    /// calibration text barely reaches still give a positive definite H.
    static let dampening = 0.01

    /// Encodes `values` ([rows, cols] row-major) as `layout` (q4 or q8) with `gram` = E[x xᵀ] ([cols, cols]).
    /// `level` runs the group scales' fit (`Quantizer.encode`) and GPTQ's own arithmetic (`gptq.c`); every level
    /// gives the same bits.
    static func encode(_ values: [Float], layout: TensorLayout, gram: [Float], level: KernelLevel) throws(EdgeLMError) -> [UInt8] {
        try values.withUnsafeBufferPointer { (buf) throws(EdgeLMError) in try encode(buf, layout: layout, gram: gram, level: level) }
    }

    /// `encode` of values in a buffer (the converter's).
    static func encode(_ values: UnsafeBufferPointer<Float>, layout: TensorLayout, gram: [Float], level: KernelLevel) throws(EdgeLMError) -> [UInt8] {
        precondition(layout.scheme.isQuantized && values.count == layout.count && gram.count == layout.cols * layout.cols)
        let cols = layout.cols
        let importance = (0..<cols).map { gram[$0 * cols + $0] }
        let h = damped(gram, cols: cols)
        // 4-bit columns in order of decreasing importance ("act order"): the columns whose errors cost most
        // are rounded first, while every other column can still absorb their error. q8 keeps column order
        // (measured on stories260K: 0.00090 against 0.00095 with act order).
        let perm = layout.scheme.isFourBit ? (0..<cols).sorted { (h[$0 * cols + $0], $1) > (h[$1 * cols + $1], $0) } : Array(0..<cols)
        var hp = [Double](repeating: 0, count: cols * cols)
        for i in 0..<cols { for j in 0..<cols { hp[i * cols + j] = h[perm[i] * cols + perm[j]] } }
        let u = try inverseFactor(hp, cols: cols, level: level)
        // The scales are the calibrated quantizer's fit of each group to the original weights (q4 weighted by
        // the importance, q8 max|w| / 127): with act order a group's columns are rounded at scattered times,
        // so its scale cannot wait for the errors of the columns before it. Its codes are replaced below.
        var out = Quantizer.encode(values, layout: layout, importance: importance, level: level)
        out.withUnsafeMutableBytes { dst in
            let s = UncheckedSendable(values), d = UncheckedSendable(dst), uu = UncheckedSendable(u), hh = UncheckedSendable(h)
            let chunk = max(1, 64 / max(1, cols / 256))
            DispatchQueue.concurrentPerform(iterations: (layout.rows + chunk - 1) / chunk) { c in
                let rows = (c * chunk)..<min(layout.rows, (c + 1) * chunk)
                uu.value.withUnsafeBufferPointer { up in
                    hh.value.withUnsafeBufferPointer { hp in
                        encodeRows(rows, values: s.value, h: hp.baseAddress!, u: up.baseAddress!, perm: perm, layout: layout, level: level, out: d.value)
                    }
                }
            }
        }
        return out
    }

    /// H = gram + dampening x mean diagonal, in Double. Columns the text never reached (zero diagonal)
    /// get a unit diagonal first: they are rounded on their own.
    static func damped(_ gram: [Float], cols n: Int) -> [Double] {
        var h = gram.map(Double.init)
        for i in 0..<n where h[i * n + i] <= 0 { h[i * n + i] = 1 }
        let mean = (0..<n).reduce(0.0) { $0 + h[$1 * n + $1] } / Double(n)
        for i in 0..<n { h[i * n + i] += dampening * mean }
        return h
    }

    /// The upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U) of a damped H, [cols, cols] row-major: row i of U
    /// carries column i's rounding error to the later columns. With P the order-reversing permutation and
    /// P H P = L Lᵀ, U = P L⁻¹ P: one factorisation and one triangular inverse.
    static func inverseFactor(_ h: [Double], cols n: Int, level: KernelLevel) throws(EdgeLMError) -> [Double] {
        var reversed = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { reversed[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)] } }
        guard let l = cholesky(reversed, n, level: level) else {
            throw .invalidInput("the calibration activations give a Hessian that is not positive definite even after \(dampening * 100)% dampening")
        }
        var u = [Double](repeating: 0, count: n * n), x = [Double](repeating: 0, count: n)
        l.withUnsafeBufferPointer { lp in
            u.withUnsafeMutableBufferPointer { up in
                x.withUnsafeMutableBufferPointer { xp in
                    // Column j of L⁻¹ by forward substitution (rows j..<n), stored as U[n-1-i, n-1-j].
                    for j in 0..<n {
                        for i in j..<n {
                            let row = lp.baseAddress! + i * n
                            let s = (i == j ? 1.0 : 0.0) - dot(row + j, xp.baseAddress! + j, i - j, level: level)
                            xp[i] = s / row[i]
                            up[(n - 1 - i) * n + (n - 1 - j)] = xp[i]
                        }
                    }
                }
            }
        }
        return u
    }

    /// Σ a[k]·b[k] for k < n, in C with the level's vectors (every level gives the same bits).
    static func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ n: Int, level: KernelLevel) -> Double {
        edge_dot_f64(level.rawValue, a, b, Int64(n))
    }

    /// The lower Cholesky factor of a symmetric [n, n] matrix, or nil if it is not positive definite.
    static func cholesky(_ a: [Double], _ n: Int, level: KernelLevel) -> [Double]? {
        var l = [Double](repeating: 0, count: n * n)
        let ok = l.withUnsafeMutableBufferPointer { lp -> Bool in
            let base = lp.baseAddress!
            for j in 0..<n {
                let rj = base + j * n
                let d = a[j * n + j] - dot(rj, rj, j, level: level)
                guard d > 0, d.isFinite else { return false }
                let ljj = d.squareRoot()
                rj[j] = ljj
                for i in (j + 1)..<n {
                    let ri = base + i * n
                    ri[j] = (a[i * n + j] - dot(ri, rj, j, level: level)) / ljj
                }
            }
            return true
        }
        return ok ? l : nil
    }

    /// Rows rounded (and their scales refitted) together: each row of U and of H is read once per tile while
    /// it is in cache, not once per row (a 2048-wide U or H is 32 MiB).
    static let tileRows = 8

    /// Rounds rows `rows` of `out` (a payload holding the fitted scales) with error feedback, refits their
    /// scales and stores both.
    private static func encodeRows(
        _ rows: Range<Int>, values: UnsafeBufferPointer<Float>, h: UnsafePointer<Double>, u: UnsafePointer<Double>,
        perm: [Int], layout: TensorLayout, level: KernelLevel, out: UnsafeMutableRawBufferPointer
    ) {
        let cols = layout.cols, groupValues = layout.blocksPerGroup * 32, groups = layout.groupsPerRow, tile = tileRows
        // [tile, cols]: the tile's rows in rounding order, as updated so far.
        let w = UnsafeMutablePointer<Double>.allocate(capacity: tile * cols)
        // [tile, groups * groupValues]: the rows' codes, group by group; the padding past the last column stays 0.
        let stride = groups * groupValues
        let codes = UnsafeMutablePointer<Int8>.allocate(capacity: tile * stride)
        codes.initialize(repeating: 0, count: tile * stride)
        let scales = UnsafeMutablePointer<UInt16>.allocate(capacity: tile * groups)  // [tile, groups]
        defer { w.deallocate(); codes.deallocate(); scales.deallocate() }
        let codec = layout.scheme.traits!.groupCodes!
        for first in Swift.stride(from: rows.lowerBound, to: rows.upperBound, by: tile) {
            let n = min(tile, rows.upperBound - first)
            for t in 0..<n {
                let row = values.baseAddress! + (first + t) * cols
                for g in 0..<groups {
                    scales[t * groups + g] = out.loadUnaligned(fromByteOffset: layout.scalesOffset + ((first + t) * groups + g) * 2, as: UInt16.self)
                }
                for k in 0..<cols { w[t * cols + k] = Double(row[perm[k]]) }
            }
            for k in 0..<cols {
                let i = perm[k], uk = u + k * cols, diagonal = uk[k]
                for t in 0..<n {
                    let word = scales[t * groups + i / groupValues], wt = w + t * cols, scale = Double(codec.scale(word))
                    let q = scale == 0 ? 0 : codec.nearestCode(wt[k] / scale, word)
                    codes[t * stride + i] = Int8(q)
                    let err = (wt[k] - q * scale) / diagonal
                    edge_sub_scaled_f64(level.rawValue, wt + k + 1, uk + k + 1, err, Int64(cols - k - 1))
                }
            }
            refitScales(
                rows: n, values: values.baseAddress! + first * cols, codes: codes, codeStride: stride, scales: scales, h: h, layout: layout, level: level)
            for t in 0..<n {
                let r = first + t
                for g in 0..<groups {
                    Quantizer.store(
                        codes: codes + t * stride + g * groupValues, scale: scales[t * groups + g], row: r, group: g,
                        count: min(groupValues, layout.blocksPerRow * 32 - g * groupValues), layout: layout, out: out)
                }
            }
        }
    }

    /// Replaces the group scales of `rows` consecutive rows (values `layout.cols` apart, codes `codeStride`
    /// apart, scales `layout.groupsPerRow` apart) by the f16-rounded solution of min_s (w - Q s)ᵀ H (w - Q s),
    /// where column j of Q holds group j's codes, when that lowers the row's error; groups whose codes are all
    /// zero keep their scale (it multiplies nothing). Each row of H is read once for all the rows while it is
    /// in cache.
    static func refitScales(
        rows: Int, values w: UnsafePointer<Float>, codes: UnsafePointer<Int8>, codeStride: Int,
        scales: UnsafeMutablePointer<UInt16>, h: UnsafePointer<Double>, layout: TensorLayout, level: KernelLevel
    ) {
        let cols = layout.cols, gv = layout.blocksPerGroup * 32, groups = layout.groupsPerRow
        // Per row: the groups with a nonzero code, and each group's place among them (-1: unused).
        var used = [[Int]](repeating: [], count: rows), place = [Int](repeating: -1, count: rows * groups)
        for t in 0..<rows {
            let c = codes + t * codeStride
            used[t] = (0..<groups).filter { g in (g * gv..<min(cols, (g + 1) * gv)).contains { c[$0] != 0 } }
            for (k, g) in used[t].enumerated() { place[t * groups + g] = k }
        }
        // b[k] = q_kᵀ H w and m[k, l] = q_kᵀ H q_l per row, q_k: group used[k]'s codes in place.
        let wd = UnsafeMutablePointer<Double>.allocate(capacity: rows * cols), qd = UnsafeMutablePointer<Double>.allocate(capacity: rows * cols)
        defer { wd.deallocate(); qd.deallocate() }
        for t in 0..<rows {
            for j in 0..<cols {
                wd[t * cols + j] = Double(w[t * cols + j])
                qd[t * cols + j] = Double(codes[t * codeStride + j])
            }
        }
        // Row t's m ([n_t, n_t]) and b ([n_t]) at mAt[t] and bAt[t] of one buffer each.
        let mAt = used.reduce(into: [0]) { $0.append($0.last! + $1.count * $1.count) }, bAt = used.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        let m = UnsafeMutablePointer<Double>.allocate(capacity: mAt[rows]), b = UnsafeMutablePointer<Double>.allocate(capacity: bAt[rows])
        let segments = UnsafeMutablePointer<Double>.allocate(capacity: groups)  // row i of H times each group of q_t
        m.initialize(repeating: 0, count: mAt[rows])
        b.initialize(repeating: 0, count: bAt[rows])
        defer { m.deallocate(); b.deallocate(); segments.deallocate() }
        for i in 0..<cols {
            let row = h + i * cols
            for t in 0..<rows where qd[t * cols + i] != 0 {
                let q = qd[t * cols + i], k = place[t * groups + i / gv], n = used[t].count, mt = m + mAt[t] + k * n
                b[bAt[t] + k] += q * dot(row, wd + t * cols, cols, level: level)
                edge_dots_f64(level.rawValue, row, qd + t * cols, Int64(cols), Int64(gv), segments)
                for (l, gl) in used[t].enumerated() { mt[l] += q * segments[gl] }
            }
        }
        for t in 0..<rows where !used[t].isEmpty {
            solveScales(
                used: used[t], m: Array(UnsafeBufferPointer(start: m + mAt[t], count: mAt[t + 1] - mAt[t])),
                b: Array(UnsafeBufferPointer(start: b + bAt[t], count: bAt[t + 1] - bAt[t])), scales: scales + t * groups,
                codes: layout.scheme.traits!.groupCodes!, level: level)
        }
    }

    /// Solves m s = b for one row's used groups and keeps the f16-rounded solution when it lowers the error.
    private static func solveScales(used: [Int], m: [Double], b: [Double], scales: UnsafeMutablePointer<UInt16>, codes: GroupCodes, level: KernelLevel) {
        let n = used.count
        guard let lower = cholesky(m, n, level: level) else { return }
        // Forward and back substitution: m s = b.
        var y = [Double](repeating: 0, count: n), s = [Double](repeating: 0, count: n)
        for k in 0..<n {
            var t = b[k]
            for l in 0..<k { t -= lower[k * n + l] * y[l] }
            y[k] = t / lower[k * n + k]
        }
        for k in stride(from: n - 1, through: 0, by: -1) {
            var t = y[k]
            for l in (k + 1)..<n { t -= lower[l * n + k] * s[l] }
            s[k] = t / lower[k * n + k]
        }
        // error(s) = wᵀHw - 2 sᵀb + sᵀ m s; wᵀHw is common to both candidates.
        func error(_ s: [Double]) -> Double {
            var e = 0.0
            for k in 0..<n {
                e -= 2 * s[k] * b[k]
                for l in 0..<n { e += s[k] * m[k * n + l] * s[l] }
            }
            return e
        }
        let fitted = used.map { scales[$0] }
        // A scale a group's word cannot store (q4a's, with its zero point) is no solution.
        let words = zip(s, fitted).map { codes.refitWord($0, $1) }
        guard words.allSatisfy({ $0 != nil }) else { return }
        let solved = words.map { $0! }
        let value = { (bits: [UInt16]) in bits.map { Double(codes.scale($0)) } }
        guard value(solved).allSatisfy(\.isFinite), error(value(solved)) < error(value(fitted)) else { return }
        for (k, g) in used.enumerated() { scales[g] = solved[k] }
    }
}
