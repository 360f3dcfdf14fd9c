import Foundation

/// The reference quantizer: turns f32 matrices into the stored layouts of `TensorLayout` and back.
/// It is plain scalar Swift on purpose; conversion speed comes from running rows in parallel.
///
/// - q8: per group, scale = max|w| / 127 rounded to f16, codes = round(w / scale) clamped to [-127, 127]
///   (the -128 code is never produced, so kernels may use sign tricks).
/// - q4: per group, several candidate scales are tried (the group's largest-magnitude weight mapped to
///   -k for k in 6.5...8.5, plus the least-squares refit of each) and the one with the least squared
///   error wins; codes are in [-8, 7]. Scales are rounded to f16 *before* the codes are chosen, so the
///   stored scale is exactly the one the codes were fitted to.
/// - All-zero groups get scale 0 and zero codes. Rounding is to nearest, ties to even.
public enum Quantizer {
    /// Encodes `values` (row-major, `layout.count` elements) into the layout's payload bytes.
    /// - Parameter rounding: how codes are rounded (only tests use anything but the default).
    public static func encode(_ values: [Float], layout: TensorLayout,
                              rounding: FloatingPointRoundingRule = .toNearestOrEven) -> [UInt8] {
        precondition(values.count == layout.count)
        var out = [UInt8](repeating: 0, count: layout.byteCount)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { dst in
                let s = UncheckedSendable(src), d = UncheckedSendable(dst)
                let chunk = max(1, 16_384 / max(1, layout.cols))
                let chunks = (layout.rows + chunk - 1) / chunk
                DispatchQueue.concurrentPerform(iterations: chunks) { c in
                    let lo = c * chunk, hi = min(layout.rows, lo + chunk)
                    encodeRows(lo..<hi, values: s.value, layout: layout, rounding: rounding, out: d.value)
                }
            }
        }
        return out
    }

    /// Decodes a payload back to f32 values (row-major, padding dropped).
    public static func decode(_ payload: UnsafeRawBufferPointer, layout: TensorLayout) -> [Float] {
        var out = [Float](repeating: 0, count: layout.count)
        out.withUnsafeMutableBufferPointer { dst in
            for r in 0..<layout.rows { decodeRow(r, payload: payload, layout: layout, into: dst.baseAddress! + r * layout.cols) }
        }
        return out
    }

    /// Decodes row `r` of a payload into `out` (`layout.cols` floats).
    public static func decodeRow(_ r: Int, payload: UnsafeRawBufferPointer, layout: TensorLayout, into out: UnsafeMutablePointer<Float>) {
        let cols = layout.cols
        switch layout.scheme {
        case .f32:
            for i in 0..<cols { out[i] = payload.loadUnaligned(fromByteOffset: (r * cols + i) * 4, as: Float.self) }
        case .f16:
            for i in 0..<cols { out[i] = HalfFloat.toFloat(payload.loadUnaligned(fromByteOffset: (r * cols + i) * 2, as: UInt16.self)) }
        case .q8, .q4:
            let rowBase = r * layout.blocksPerRow * layout.blockBytes
            let scaleBase = layout.scalesOffset + r * layout.groupsPerRow * 2
            for i in 0..<cols {
                let block = i / 32, j = i % 32
                let scale = HalfFloat.toFloat(payload.loadUnaligned(fromByteOffset: scaleBase + (block / layout.blocksPerGroup) * 2, as: UInt16.self))
                let code: Int
                if layout.scheme == .q8 {
                    code = Int(Int8(bitPattern: payload[rowBase + i]))
                } else {
                    let byte = payload[rowBase + block * 16 + j % 16]
                    code = Int(j < 16 ? byte & 0x0F : byte >> 4) - 8
                }
                out[i] = Float(code) * scale
            }
        }
    }

    static func encodeRows(_ rows: Range<Int>, values: UnsafeBufferPointer<Float>, layout: TensorLayout,
                           rounding: FloatingPointRoundingRule, out: UnsafeMutableRawBufferPointer) {
        let cols = layout.cols
        switch layout.scheme {
        case .f32:
            for i in (rows.lowerBound * cols)..<(rows.upperBound * cols) { out.storeBytes(of: values[i], toByteOffset: i * 4, as: Float.self) }
        case .f16:
            for i in (rows.lowerBound * cols)..<(rows.upperBound * cols) {
                out.storeBytes(of: HalfFloat.fromFloat(values[i]), toByteOffset: i * 2, as: UInt16.self)
            }
        case .q8, .q4:
            let groupValues = layout.blocksPerGroup * 32
            var codes = [Int8](repeating: 0, count: groupValues)
            for r in rows {
                let row = UnsafeBufferPointer(rebasing: values[(r * cols)..<((r + 1) * cols)])
                for g in 0..<layout.groupsPerRow {
                    let lo = g * groupValues, hi = min(cols, lo + groupValues)
                    let group = UnsafeBufferPointer(rebasing: row[lo..<hi])
                    let scale = layout.scheme == .q8 ? fitQ8(group, codes: &codes, rounding: rounding)
                        : fitQ4(group, codes: &codes, rounding: rounding)
                    out.storeBytes(of: scale, toByteOffset: layout.scalesOffset + (r * layout.groupsPerRow + g) * 2, as: UInt16.self)
                    let rowBase = r * layout.blocksPerRow * layout.blockBytes
                    for i in 0..<(hi - lo) {
                        let col = lo + i
                        if layout.scheme == .q8 {
                            out[rowBase + col] = UInt8(bitPattern: codes[i])
                        } else {
                            let block = col / 32, j = col % 32
                            let nibble = UInt8(Int(codes[i]) + 8)
                            out[rowBase + block * 16 + j % 16] |= j < 16 ? nibble : nibble << 4
                        }
                    }
                    if layout.scheme == .q4 {
                        // Padding past the last column must decode to 0, i.e. nibble 8.
                        for col in hi..<(lo + groupValues) where col < layout.blocksPerRow * 32 {
                            let block = col / 32, j = col % 32
                            out[rowBase + block * 16 + j % 16] |= j < 16 ? 8 : 8 << 4
                        }
                    }
                }
            }
        }
    }

    /// Rounds `x / scale` and clamps to `lo...hi`.
    @inline(__always)
    static func code(_ x: Float, _ inverse: Float, _ lo: Float, _ hi: Float, _ rounding: FloatingPointRoundingRule) -> Int8 {
        Int8(min(hi, max(lo, (x * inverse).rounded(rounding))))
    }

    /// Fits one q8 group; returns the f16 scale bits and writes `group.count` codes.
    static func fitQ8(_ group: UnsafeBufferPointer<Float>, codes: inout [Int8], rounding: FloatingPointRoundingRule) -> UInt16 {
        var amax: Float = 0
        for x in group { amax = max(amax, abs(x)) }
        let half = HalfFloat.fromFloat(amax / 127)
        let scale = HalfFloat.toFloat(half)
        let inverse: Float = scale > 0 ? 1 / scale : 0
        for (i, x) in group.enumerated() { codes[i] = code(x, inverse, -127, 127, rounding) }
        return half
    }

    /// Fits one q4 group by scale search; returns the f16 scale bits and writes `group.count` codes.
    static func fitQ4(_ group: UnsafeBufferPointer<Float>, codes: inout [Int8], rounding: FloatingPointRoundingRule) -> UInt16 {
        var peak: Float = 0
        for x in group where abs(x) > abs(peak) { peak = x }
        if peak == 0 {
            for i in 0..<group.count { codes[i] = 0 }
            return 0
        }
        var bestHalf: UInt16 = 0
        var bestError = Float.infinity
        var trial = [Int8](repeating: 0, count: group.count)
        func evaluate(_ candidate: Float) {
            let half = HalfFloat.fromFloat(candidate)
            let scale = HalfFloat.toFloat(half)
            guard scale != 0, scale.isFinite else { return }
            let inverse = 1 / scale
            var err: Float = 0
            for (i, x) in group.enumerated() {
                let q = code(x, inverse, -8, 7, rounding)
                trial[i] = q
                let e = x - Float(q) * scale
                err += e * e
            }
            if err < bestError {
                bestError = err
                bestHalf = half
                for i in 0..<group.count { codes[i] = trial[i] }
            }
        }
        for step in 0...20 {
            let k = 6.5 + Float(step) * 0.1
            evaluate(-peak / k)
            // Least-squares refit of the scale for the codes this candidate produced.
            var xq: Float = 0, qq: Float = 0
            for (i, x) in group.enumerated() { xq += x * Float(trial[i]); qq += Float(trial[i]) * Float(trial[i]) }
            if qq > 0 { evaluate(xq / qq) }
        }
        return bestHalf
    }

    /// Quantization error of `values` stored in `layout`.
    public static func error(of values: [Float], layout: TensorLayout, payload: [UInt8]) -> QuantizationError {
        let back = payload.withUnsafeBytes { decode($0, layout: layout) }
        var maxAbs: Float = 0
        var se: Double = 0, ss: Double = 0
        for (x, y) in zip(values, back) {
            maxAbs = max(maxAbs, abs(x - y))
            se += Double((x - y) * (x - y))
            ss += Double(x * x)
        }
        return QuantizationError(maxAbs: maxAbs, relativeRMS: ss > 0 ? (se / ss).squareRoot() : 0)
    }
}

/// How far a quantized tensor is from its float values.
public struct QuantizationError: Sendable, Equatable {
    /// Largest absolute error of any element.
    public let maxAbs: Float
    /// RMS error divided by the RMS of the tensor.
    public let relativeRMS: Double
}
