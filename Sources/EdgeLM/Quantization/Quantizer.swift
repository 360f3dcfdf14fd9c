import CEdgeKernels
import Foundation

/// The reference quantizer: turns f32 matrices into the stored layouts of `TensorLayout` and back.
/// The group fits are C (`quantize.c`: a scalar reference and vector versions that give its bytes); rows run
/// in parallel.
///
/// - q8: per group, scale = max|w| / 127 rounded to f16, codes = round(w / scale) clamped to [-127, 127]
///   (the -128 code is never produced, so kernels may use sign tricks).
/// - q4: per group, several candidate scales are tried (the group's largest-magnitude weight mapped to
///   -k for 16 k from 6.5 to 8.5 in steps of 2/15, plus the least-squares refit of each) and the one with the least squared
///   error wins; codes are in [-8, 7]. Scales are rounded to f16 *before* the codes are chosen, so the
///   stored scale is exactly the one the codes were fitted to.
/// - q4a: per group, a 12-bit scale and a zero point z (`edge_fit_q4a`: scaled ranges of the group, three zero
///   points each, and their least-squares refits); codes c = n - z in [-z, 15 - z].
/// - q4n: per group, a signed f16 scale (`edge_fit_q4n`: ±f max|w| / 127 for 71 f from 0.6 to 1.3); codes are
///   the codebook's nearest levels (values in [-127, 113]), stored as their indices.
/// - q4o: per group, d = (max - min) / 15 and m = min as halves, codes n = round((w - m) / d) in [0, 15] (ggml's
///   Q4_1 rounding; q4o is meant for Q4_1 and Q4_K tensors, whose groups are carried over from the GGUF).
/// - q5o: per group, d = (max - min) / 31 and m = min as halves, codes n = round((w - m) / d) in [0, 31] (ggml's
///   Q5_1 rounding); q6: per 16 weights, s = max|w| / 31 as a half, codes round(w / s) in [-32, 31]. Both are meant
///   for GGUF tensors (Q5_x and Q6_K), whose groups are carried over.
/// - All-zero groups get scale 0 and zero codes. Rounding is to nearest, ties to even.
public enum Quantizer {
    /// Encodes `values` (row-major, `layout.count` elements) into the layout's payload bytes.
    /// - Parameter rounding: how codes are rounded (only tests use anything but the default).
    /// - Parameters:
    ///   - importance: per input column (layout.cols values >= 0), how much an error in that column costs
    ///     (calibration's mean squared activation): q4 scales then minimise the importance-weighted error.
    ///     nil weighs every column alike. q8 ignores it (its scale is the group's largest weight).
    ///   - level: the kernel level whose vector code fits q4 groups (every level gives the same bytes).
    public static func encode(
        _ values: [Float], layout: TensorLayout, importance: [Float]? = nil,
        rounding: FloatingPointRoundingRule = .toNearestOrEven, level: KernelLevel = .detected
    ) -> [UInt8] {
        values.withUnsafeBufferPointer { encode($0, layout: layout, importance: importance, rounding: rounding, level: level) }
    }

    /// `encode` of values in a buffer (the converter's, reused across tensors).
    public static func encode(
        _ values: UnsafeBufferPointer<Float>, layout: TensorLayout, importance: [Float]? = nil,
        rounding: FloatingPointRoundingRule = .toNearestOrEven, level: KernelLevel = .detected
    ) -> [UInt8] {
        precondition(importance == nil || importance!.count == layout.cols)
        precondition(values.count == layout.count)
        var out = [UInt8](repeating: 0, count: layout.byteCount)
        // q8 ignores importance: its scale is the group's largest weight.
        let importance = layout.scheme.isFourBit ? importance : nil
        out.withUnsafeMutableBytes { dst in
            let s = UncheckedSendable(values), d = UncheckedSendable(dst)
            let chunk = max(1, 16_384 / max(1, layout.cols))
            let chunks = (layout.rows + chunk - 1) / chunk
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = c * chunk, hi = min(layout.rows, lo + chunk)
                encodeRows(lo..<hi, values: s.value, importance: importance, layout: layout, rounding: rounding, level: level, out: d.value)
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
        default:
            guard let codes = layout.scheme.traits?.groupCodes else { return decodePairRow(r, payload: payload, layout: layout, into: out) }
            let rowBase = r * layout.blocksPerRow * layout.blockBytes, fourBit = layout.scheme.isFourBit
            let scaleBase = layout.scalesOffset + r * layout.groupsPerRow * 2
            // Block by block: the scale word's scale and code offset once, then the block's values.
            for block in 0..<((cols + 31) / 32) {
                let word = payload.loadUnaligned(fromByteOffset: scaleBase + (block / layout.blocksPerGroup) * 2, as: UInt16.self)
                let scale = codes.scale(word), first = block * 32
                @inline(__always) func stored(_ j: Int) -> Int {
                    guard fourBit else { return Int(Int8(bitPattern: payload[rowBase + first + j])) }
                    let byte = payload[rowBase + block * 16 + j % 16]
                    return Int(j < 16 ? byte & 0x0F : byte >> 4)
                }
                switch codes.storage {
                case let .offset(offset):
                    let o = offset(word)
                    for j in 0..<min(32, cols - first) { out[first + j] = Float(stored(j) - o) * scale }
                case let .codebook(levels, _):
                    for j in 0..<min(32, cols - first) { out[first + j] = Float(levels[stored(j)]) * scale }
                }
            }
        }
    }

    /// Row r of a scheme with two halves per group: d n + m (q4o, q5o) or s (n - 32) with s per 16 weights (q6).
    private static func decodePairRow(_ r: Int, payload: UnsafeRawBufferPointer, layout: TensorLayout, into out: UnsafeMutablePointer<Float>) {
        let rowBase = r * layout.blocksPerRow * layout.blockBytes, pairs = layout.scalesOffset + r * layout.groupsPerRow * 4
        let traits = layout.scheme.traits!, highBits = traits.highBits, halves = traits.hasHalfBlockScales
        for i in 0..<layout.cols {
            let block = i / 32, pair = pairs + (block / layout.blocksPerGroup) * 4
            let n = unsignedCode(UnsafeRawBufferPointer(rebasing: payload[(rowBase + block * layout.blockBytes)...]), i % 32, highBits: highBits)
            let first = HalfFloat.toFloat(payload.loadUnaligned(fromByteOffset: pair, as: UInt16.self))
            let second = HalfFloat.toFloat(payload.loadUnaligned(fromByteOffset: pair + 2, as: UInt16.self))
            out[i] = halves ? (i % 32 < 16 ? first : second) * Float(n - 32) : first * Float(n) + second
        }
    }

    static func encodeRows(
        _ rows: Range<Int>, values: UnsafeBufferPointer<Float>, importance: [Float]?, layout: TensorLayout,
        rounding: FloatingPointRoundingRule, level: KernelLevel, out: UnsafeMutableRawBufferPointer
    ) {
        let cols = layout.cols
        switch layout.scheme {
        case .f32:
            for i in (rows.lowerBound * cols)..<(rows.upperBound * cols) { out.storeBytes(of: values[i], toByteOffset: i * 4, as: Float.self) }
        case .f16:
            for i in (rows.lowerBound * cols)..<(rows.upperBound * cols) {
                out.storeBytes(of: HalfFloat.fromFloat(values[i]), toByteOffset: i * 2, as: UInt16.self)
            }
        default:
            guard let fitted = layout.scheme.traits?.groupCodes else {
                if case let .offsets(bits)? = layout.scheme.traits?.codec {
                    for r in rows { encodeOffsetRow(r, bits: bits, values: values, layout: layout, out: out) }
                } else {
                    for r in rows { encodeSixBitRow(r, values: values, layout: layout, out: out) }
                }
                return
            }
            let groupValues = layout.blocksPerGroup * 32, truncate = rounding == .towardZero
            precondition(rounding == .toNearestOrEven || rounding == .towardZero, "codes round to nearest even (or toward zero in tests)")
            // One group at a time, padded with zeros to whole blocks (zeros cost nothing at any scale).
            let x = UnsafeMutablePointer<Float>.allocate(capacity: groupValues)
            let w = UnsafeMutablePointer<Float>.allocate(capacity: groupValues)
            let codes = UnsafeMutablePointer<Int8>.allocate(capacity: groupValues)
            defer { x.deallocate(); w.deallocate(); codes.deallocate() }
            // q4n weighs by importance alone (after sequential GPTQ, stories260K: 0.0317 against 0.0345 with the
            // row-variance factor and a refit); the other 4-bit fits by importance times that factor.
            let calibrated = importance != nil, varianceWeighted = calibrated && fitted.varianceWeighted
            for r in rows {
                var rowVariance: Float = 0
                if varianceWeighted {
                    for j in 0..<cols { rowVariance += values[r * cols + j] * values[r * cols + j] }
                    rowVariance /= Float(cols)
                }
                for g in 0..<layout.groupsPerRow {
                    let lo = g * groupValues, hi = min(cols, lo + groupValues)
                    let stored = min(groupValues, layout.blocksPerRow * 32 - lo)
                    x.update(from: values.baseAddress! + r * cols + lo, count: hi - lo)
                    (x + (hi - lo)).initialize(repeating: 0, count: stored - (hi - lo))
                    if let importance {
                        // Calibrated: column importance times sqrt(row variance + w²), so large weights of
                        // important columns count most (measured: 3.4% lower KLD than importance alone).
                        importance.withUnsafeBufferPointer { w.update(from: $0.baseAddress! + lo, count: hi - lo) }
                        if varianceWeighted { for i in 0..<(hi - lo) { w[i] *= (rowVariance + x[i] * x[i]).squareRoot() } }
                        (w + (hi - lo)).initialize(repeating: 1, count: stored - (hi - lo))
                    }
                    let scale = fitted.fit(x, calibrated ? UnsafePointer(w) : nil, stored, codes, truncate, level)
                    store(codes: codes, scale: scale, row: r, group: g, count: stored, layout: layout, out: out)
                }
            }
        }
    }

    /// Row r as q4o or q5o (`bits` 4 or 5): per group, d = (max - min) / (2^bits - 1) and m = min rounded to halves,
    /// n = round((w - m) / d). Padding past the last column stores the code nearest 0.
    static func encodeOffsetRow(_ r: Int, bits: Int, values: UnsafeBufferPointer<Float>, layout: TensorLayout, out: UnsafeMutableRawBufferPointer) {
        let cols = layout.cols, groupValues = layout.blocksPerGroup * 32, top = Float((1 << bits) - 1), highBits = bits - 4
        for g in 0..<layout.groupsPerRow {
            let lo = g * groupValues, hi = min(cols, lo + groupValues)
            let group = UnsafeBufferPointer(rebasing: values[(r * cols + lo)..<(r * cols + hi)])
            let low = min(group.min()!, hi - lo < groupValues ? 0 : .infinity), high = max(group.max()!, hi - lo < groupValues ? 0 : -.infinity)
            let dWord = HalfFloat.fromFloat((high - low) / top), mWord = HalfFloat.fromFloat(low)
            let d = HalfFloat.toFloat(dWord), m = HalfFloat.toFloat(mWord), inverse: Float = d != 0 ? 1 / d : 0
            storePair(dWord, mWord, row: r, group: g, layout: layout, out: out)
            let stored = min(groupValues, layout.blocksPerRow * 32 - lo)
            for i in 0..<stored {
                let w = lo + i < hi ? values[r * cols + lo + i] : 0
                storeCode(
                    Int(max(0, min(top, ((w - m) * inverse).rounded(.toNearestOrEven)))), row: r, index: lo + i, layout: layout,
                    highBits: highBits, out: out)
            }
        }
    }

    /// Row r as q6: per half block of 16, s = max|w| / 31 rounded to a half, n = round(w / s) + 32 in [0, 63].
    static func encodeSixBitRow(_ r: Int, values: UnsafeBufferPointer<Float>, layout: TensorLayout, out: UnsafeMutableRawBufferPointer) {
        let cols = layout.cols
        for b in 0..<layout.blocksPerRow {
            var words: [UInt16] = []
            for h in 0..<2 {
                let lo = b * 32 + h * 16, hi = min(cols, lo + 16)
                let amax = lo < hi ? (lo..<hi).map { abs(values[r * cols + $0]) }.max()! : 0
                let word = HalfFloat.fromFloat(amax / 31), s = HalfFloat.toFloat(word), inverse: Float = s != 0 ? 1 / s : 0
                words.append(word)
                for i in lo..<(lo + 16) {
                    let w = i < hi ? values[r * cols + i] : 0
                    storeCode(
                        Int(max(-32, min(31, (w * inverse).rounded(.toNearestOrEven)))) + 32, row: r, index: i, layout: layout,
                        highBits: 2, out: out)
                }
            }
            storePair(words[0], words[1], row: r, group: b, layout: layout, out: out)
        }
    }

    /// Stores the two scale words of group g of row r (q4o, q5o, q6).
    static func storePair(_ first: UInt16, _ second: UInt16, row r: Int, group g: Int, layout: TensorLayout, out: UnsafeMutableRawBufferPointer) {
        let pair = layout.scalesOffset + (r * layout.groupsPerRow + g) * 4
        out.storeBytes(of: first, toByteOffset: pair, as: UInt16.self)
        out.storeBytes(of: second, toByteOffset: pair + 2, as: UInt16.self)
    }

    /// Stores the unsigned code n of weight `index` of row r in its block: the low nibble (weights j and j + 16 share
    /// byte j), and its `highBits` (`SchemeTraits.highBits`: 1 for q5o, 2 for q6) in the block's plane (see `unsignedCode`).
    static func storeCode(_ n: Int, row r: Int, index: Int, layout: TensorLayout, highBits: Int, out: UnsafeMutableRawBufferPointer) {
        let block = (r * layout.blocksPerRow + index / 32) * layout.blockBytes, j = index % 32
        let at = block + j % 16, nibble = UInt8(n & 15)
        out[at] = j < 16 ? (out[at] & 0xF0) | nibble : (out[at] & 0x0F) | nibble << 4
        switch highBits {
        case 1:
            let byte = block + 16 + j / 8, bit = UInt8(1) << (j % 8)
            out[byte] = n & 16 != 0 ? out[byte] | bit : out[byte] & ~bit
        case 2:
            let byte = block + 16 + j % 8, shift = UInt8(2 * (j / 8))
            out[byte] = (out[byte] & ~(3 << shift)) | UInt8((n >> 4) & 3) << shift
        default: break
        }
    }

    /// The unsigned code of weight j (0-31) of a q4o, q5o or q6 block: its nibble and its `highBits` from the plane
    /// after the 16 nibble bytes (1, q5o: bit j of a little-endian uint32; 2, q6: bits 2 (j / 8) of byte 16 + j % 8).
    static func unsignedCode(_ block: UnsafeRawBufferPointer, _ j: Int, highBits: Int) -> Int {
        let nibble = Int(j < 16 ? block[j] & 15 : block[j - 16] >> 4)
        switch highBits {
        case 1: return nibble | Int((block[16 + j / 8] >> (j % 8)) & 1) << 4
        case 2: return nibble | Int((block[16 + j % 8] >> (2 * (j / 8))) & 3) << 4
        default: return nibble
        }
    }

    /// q4n's codebook (`edge_q4n_levels`), ascending.
    static let q4nLevels: [Int8] = withUnsafeBytes(of: edge_q4n_levels) { Array($0.bindMemory(to: Int8.self)) }
    /// iq4nl's codebook (`edge_iq4nl_levels`, IQ4_NL's), ascending.
    static let iq4nlLevels: [Int8] = withUnsafeBytes(of: edge_iq4nl_levels) { Array($0.bindMemory(to: Int8.self)) }

    /// Stores group g of row r: its scale word and its `count` codes (the group's stored values, padding
    /// included: padding past the last column stores code 0, nibble 8 for q4, z for q4a and the index of level 0
    /// for q4n, like every zero). q4n codes are levels of its codebook.
    static func store(
        codes: UnsafePointer<Int8>, scale: UInt16, row r: Int, group g: Int, count: Int, layout: TensorLayout,
        out: UnsafeMutableRawBufferPointer
    ) {
        let rowBase = r * layout.blocksPerRow * layout.blockBytes, lo = g * layout.blocksPerGroup * 32
        out.storeBytes(of: scale, toByteOffset: layout.scalesOffset + (r * layout.groupsPerRow + g) * 2, as: UInt16.self)
        if !layout.scheme.isFourBit {
            for i in 0..<count { out[rowBase + lo + i] = UInt8(bitPattern: codes[i]) }
        } else {
            let nibble: (Int8) -> UInt8
            switch layout.scheme.traits!.groupCodes!.storage {
            case let .offset(offset):
                let zero = offset(scale)
                nibble = { UInt8(Int($0) + zero) }
            case let .codebook(_, index):
                nibble = { UInt8(index(Float($0))) }
            }
            for b in 0..<(count / 32) {
                let block = rowBase + (lo / 32 + b) * 16, c = codes + b * 32
                for j in 0..<16 { out[block + j] = nibble(c[j]) | nibble(c[j + 16]) << 4 }
            }
        }
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
