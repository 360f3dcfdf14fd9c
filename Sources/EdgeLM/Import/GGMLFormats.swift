/// ggml's quantized block formats that EdgeLM reads from GGUF files, with reference dequantizers that
/// compute exactly what ggml (and gguf-py) compute: the same f32 operations in the same order.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case iq4_nl = 20

    /// ggml's name of the type.
    public var name: String {
        switch self {
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        case .iq4_nl: "IQ4_NL"
        }
    }

    /// Values per block.
    public var blockValues: Int { [.q4_K, .q5_K, .q6_K].contains(self) ? 256 : 32 }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .q4_0, .iq4_nl: 18
        case .q4_1: 20
        case .q5_0: 22
        case .q5_1: 24
        case .q8_0: 34
        case .q4_K: 144
        case .q5_K: 176
        case .q6_K: 210
        }
    }

    /// IQ4_NL's 16 non-uniform levels.
    static let iq4nlLevels: [Float] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

    /// Dequantizes `blocks` consecutive blocks at `src` into `out` (blocks * blockValues floats).
    public func dequantize(_ src: UnsafeRawBufferPointer, blocks: Int, into out: UnsafeMutablePointer<Float>) {
        let bb = blockBytes, bv = blockValues
        for b in 0..<blocks {
            let x = UnsafeRawBufferPointer(rebasing: src[(b * bb)..<((b + 1) * bb)])
            dequantizeBlock(x, out + b * bv)
        }
    }

    private func half(_ x: UnsafeRawBufferPointer, _ offset: Int) -> Float {
        HalfFloat.toFloat(x.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
    }

    private func dequantizeBlock(_ x: UnsafeRawBufferPointer, _ y: UnsafeMutablePointer<Float>) {
        switch self {
        case .q8_0:
            let d = half(x, 0)
            for j in 0..<32 { y[j] = Float(Int8(bitPattern: x[2 + j])) * d }
        case .q4_0, .iq4_nl:
            let d = half(x, 0)
            for j in 0..<16 {
                let byte = x[2 + j]
                if self == .q4_0 {
                    y[j] = Float(Int(byte & 0x0F) - 8) * d
                    y[j + 16] = Float(Int(byte >> 4) - 8) * d
                } else {
                    y[j] = d * Self.iq4nlLevels[Int(byte & 0x0F)]
                    y[j + 16] = d * Self.iq4nlLevels[Int(byte >> 4)]
                }
            }
        case .q4_1:
            let d = half(x, 0), m = half(x, 2)
            for j in 0..<16 {
                let byte = x[4 + j]
                y[j] = Float(byte & 0x0F) * d + m
                y[j + 16] = Float(byte >> 4) * d + m
            }
        case .q5_0, .q5_1:
            let d = half(x, 0), m: Float = self == .q5_1 ? half(x, 2) : 0
            let hOffset = self == .q5_1 ? 4 : 2
            let qh = x.loadUnaligned(fromByteOffset: hOffset, as: UInt32.self).littleEndian
            for j in 0..<16 {
                let byte = x[hOffset + 4 + j]
                let h0 = Int((qh >> UInt32(j)) << 4) & 0x10, h1 = Int(qh >> UInt32(j + 12)) & 0x10
                let q0 = Int(byte & 0x0F) | h0, q1 = Int(byte >> 4) | h1
                if self == .q5_0 {
                    y[j] = Float(q0 - 16) * d
                    y[j + 16] = Float(q1 - 16) * d
                } else {
                    y[j] = Float(q0) * d + m
                    y[j + 16] = Float(q1) * d + m
                }
            }
        case .q4_K, .q5_K:
            let d = half(x, 0), dmin = half(x, 2)
            let scales = UnsafeRawBufferPointer(rebasing: x[4..<16])
            let qhOffset = 16, qsOffset = self == .q5_K ? 48 : 16
            for chunk in 0..<4 {
                let (sc1, m1) = Self.scaleMinK4(2 * chunk, scales), (sc2, m2) = Self.scaleMinK4(2 * chunk + 1, scales)
                let d1 = d * Float(sc1), dm1 = dmin * Float(m1), d2 = d * Float(sc2), dm2 = dmin * Float(m2)
                let u1 = UInt8(1) << (2 * chunk), u2 = UInt8(2) << (2 * chunk)
                for l in 0..<32 {
                    let byte = x[qsOffset + chunk * 32 + l]
                    var lo = Int(byte & 0x0F), hi = Int(byte >> 4)
                    if self == .q5_K {
                        let h = x[qhOffset + l]
                        lo += h & u1 != 0 ? 16 : 0
                        hi += h & u2 != 0 ? 16 : 0
                    }
                    y[chunk * 64 + l] = d1 * Float(lo) - dm1
                    y[chunk * 64 + 32 + l] = d2 * Float(hi) - dm2
                }
            }
        case .q6_K:
            let d = half(x, 208)
            for half128 in 0..<2 {
                let ql = 64 * half128, qh = 128 + 32 * half128, sc = 192 + 8 * half128
                for l in 0..<32 {
                    let s = l / 16, h = x[qh + l]
                    let q1 = Int((x[ql + l] & 0x0F) | ((h & 3) << 4)) - 32
                    let q2 = Int((x[ql + l + 32] & 0x0F) | (((h >> 2) & 3) << 4)) - 32
                    let q3 = Int((x[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32
                    let q4 = Int((x[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32
                    func scale(_ i: Int) -> Float { d * Float(Int8(bitPattern: x[sc + i])) }
                    y[128 * half128 + l] = scale(s) * Float(q1)
                    y[128 * half128 + l + 32] = scale(s + 2) * Float(q2)
                    y[128 * half128 + l + 64] = scale(s + 4) * Float(q3)
                    y[128 * half128 + l + 96] = scale(s + 6) * Float(q4)
                }
            }
        }
    }

    /// The scheme whose groups of 32 hold this type's blocks as they are (see `codeGroups`), if any.
    var groupScheme: TensorScheme? {
        switch self {
        case .q4_1, .q4_K: .q4o
        case .q5_0, .q5_1, .q5_K: .q5o
        case .q6_K: .q6
        default: nil
        }
    }

    /// A block as groups of 32 weights in element order, calling `group(first, second, code)` per group with the
    /// unsigned code of each weight and two f32 values computed as ggml computes them. For the offset types
    /// (Q4_1, Q4_K, Q5_0, Q5_1, Q5_K) weight = first · n + second: Q4_1's and Q5_1's d and m, Q5_0's d and -16 d,
    /// Q4_K's and Q5_K's d·scale and -dmin·min. For Q6_K weight = s (n - 32) with s = first for weights 0-15 and
    /// second for 16-31 (d·scale of each 16-weight sub-block). A precondition: `groupScheme` is not nil.
    func codeGroups(_ x: UnsafeRawBufferPointer, _ group: (Float, Float, (Int) -> UInt8) -> Void) {
        switch self {
        case .q4_1:
            group(half(x, 0), half(x, 2)) { i in i < 16 ? x[4 + i] & 0x0F : x[4 + i - 16] >> 4 }
        case .q5_0, .q5_1:
            let d = half(x, 0), hOffset = self == .q5_1 ? 4 : 2
            let qh = x.loadUnaligned(fromByteOffset: hOffset, as: UInt32.self).littleEndian
            group(d, self == .q5_1 ? half(x, 2) : -16 * d) { i in
                (i < 16 ? x[hOffset + 4 + i] & 0x0F : x[hOffset + 4 + i - 16] >> 4) | UInt8((qh >> UInt32(i)) & 1) << 4
            }
        case .q4_K, .q5_K:
            let d = half(x, 0), dmin = half(x, 2), scales = UnsafeRawBufferPointer(rebasing: x[4..<16])
            let qs = self == .q5_K ? 48 : 16
            for chunk in 0..<4 {
                let (sc1, m1) = Self.scaleMinK4(2 * chunk, scales), (sc2, m2) = Self.scaleMinK4(2 * chunk + 1, scales)
                func high(_ l: Int, _ bit: UInt8) -> UInt8 { self == .q5_K && x[16 + l] & (bit << (2 * chunk)) != 0 ? 16 : 0 }
                group(d * Float(sc1), -(dmin * Float(m1))) { l in x[qs + chunk * 32 + l] & 0x0F | high(l, 1) }
                group(d * Float(sc2), -(dmin * Float(m2))) { l in x[qs + chunk * 32 + l] >> 4 | high(l, 2) }
            }
        case .q6_K:
            let d = half(x, 208)
            for half128 in 0..<2 {
                let ql = 64 * half128, qh = 128 + 32 * half128, sc = 192 + 8 * half128
                for k in 0..<4 {
                    func scale(_ i: Int) -> Float { d * Float(Int8(bitPattern: x[sc + i])) }
                    group(scale(2 * k), scale(2 * k + 1)) { l in
                        let low = k % 2 == 0 ? x[ql + l] : x[ql + l + 32]
                        return (k < 2 ? low & 0x0F : low >> 4) | ((x[qh + l] >> (2 * k)) & 3) << 4
                    }
                }
            }
        default:
            preconditionFailure("\(name) has no code groups")
        }
    }

    /// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K super-block.
    private static func scaleMinK4(_ j: Int, _ q: UnsafeRawBufferPointer) -> (UInt8, UInt8) {
        if j < 4 { return (q[j] & 63, q[j + 4] & 63) }
        return ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}
