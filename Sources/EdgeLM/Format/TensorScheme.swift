/// How a tensor's values are stored.
public enum TensorScheme: String, Codable, Sendable, CaseIterable {
    /// IEEE single precision.
    case f32
    /// IEEE half precision.
    case f16
    /// Symmetric int8 in [-127, 127] with f16 scales per group of weights along a row.
    case q8
    /// Symmetric int4 in [-8, 7] packed two per byte, with f16 scales per group along a row.
    case q4
    /// Asymmetric int4: unsigned codes n in [0, 15] packed as q4's, weight = s (n - z), with one 16-bit word per
    /// group holding a 12-bit scale (an IEEE half's exponent and top 7 mantissa bits) and the zero point z.
    case q4a
    /// Non-uniform int4: indices n in [0, 15] packed as q4's into a fixed codebook of 16 int8 levels
    /// (`edge_q4n_levels`), weight = s · levels[n], with a signed f16 scale per group.
    case q4n
    /// Offset int4: unsigned codes n in [0, 15] packed as q4's, weight = d n + m, with an f16 scale d and an f16
    /// offset m per group (a pair of halves in the scale array). Holds ggml's Q4_1 exactly, and Q4_K to the f16
    /// rounding of its sub-block scales and minimums.
    case q4o
    /// IQ4_NL's non-uniform int4: indices n in [0, 15] packed as q4's into ggml's IQ4_NL codebook
    /// (`edge_iq4nl_levels`), weight = s · levels[n], with a signed f16 scale per group. Holds GGUF IQ4_NL exactly.
    case iq4nl
    /// Offset int5: unsigned codes n in [0, 31] stored as q4's nibbles plus a plane of bit 4 (20-byte blocks), weight
    /// = d n + m with an f16 scale d and an f16 offset m per group, as q4o's. Holds ggml's Q5_0 and Q5_1 exactly, and
    /// Q5_K to the f16 rounding of its sub-block scales and minimums.
    case q5o
    /// Symmetric int6: codes n - 32 for n in [0, 63] stored as q4's nibbles plus a plane of bits 4-5 (24-byte
    /// blocks), with an f16 scale per 16 weights (two per block; groups of 32 only). Holds ggml's Q6_K to the f16
    /// rounding of its sub-block scales.
    case q6

    /// The integer scheme's description (nil for f32 and f16); each scheme's is in `Quantization/Schemes/`.
    public var traits: SchemeTraits? {
        switch self {
        case .f32, .f16: nil
        case .q8: .q8
        case .q4: .q4
        case .q4a: .q4a
        case .q4n: .q4n
        case .q4o: .q4o
        case .iq4nl: .iq4nl
        case .q5o: .q5o
        case .q6: .q6
        }
    }

    /// True for the integer schemes.
    public var isQuantized: Bool { self != .f32 && self != .f16 }
    /// True for the 4-bit schemes (16-byte blocks of nibbles).
    public var isFourBit: Bool { traits?.isFourBit ?? false }
    /// 16-bit scale words per group: q4o's and q5o's scale and offset, q6's two half-block scales, one word for the
    /// other integer schemes.
    public var wordsPerGroup: Int { traits?.wordsPerGroup ?? 1 }
    /// True for the schemes whose codes calibration and GPTQ can choose (every integer scheme but q4o, iq4nl, q5o
    /// and q6, which hold ggml's groups carried over from a GGUF).
    public var isFittable: Bool { traits?.isFittable ?? false }
    /// Bytes of one stored block of 32 codes (quantized schemes).
    public var blockBytes: Int { traits?.blockBytes ?? 32 }
    /// True for the schemes with a plane of high bits after the nibbles of each block (q5o, q6).
    public var hasHighPlanes: Bool { (traits?.highBits ?? 0) > 0 }
}

/// The exact byte layout of one stored tensor, derived from its shape and scheme. Quantized rows are
/// padded with zero codes to whole blocks of 32 so every kernel works on whole blocks.
public struct TensorLayout: Equatable, Sendable {
    /// Values per quantization block.
    public static let blockSize = 32
    /// Alignment of every payload and of the scale array inside a quantized payload.
    public static let alignment = 64

    /// Rows (the output dimension of a matrix; 1 for a vector).
    public let rows: Int
    /// Values per row.
    public let cols: Int
    /// Storage scheme.
    public let scheme: TensorScheme
    /// Blocks of 32 per row (quantized schemes).
    public let blocksPerRow: Int
    /// Blocks sharing one scale (quantized schemes); `blocksPerRow` for per-channel scales.
    public let blocksPerGroup: Int

    /// Creates the layout; `groupSize` 0 means one scale per row. Throws for group sizes that are not
    /// positive multiples of 32 and for sizes that would overflow.
    public init(shape: [Int], scheme: TensorScheme, groupSize: Int) throws(EdgeLMError) {
        guard !shape.isEmpty, shape.count <= 2, shape.allSatisfy({ $0 > 0 && $0 <= 1 << 31 }) else {
            throw .invalidArgument("tensor shape \(shape) must have 1 or 2 positive dimensions below 2^31")
        }
        rows = shape.count == 2 ? shape[0] : 1
        cols = shape.last!
        self.scheme = scheme
        blockBytes = scheme.blockBytes
        blocksPerRow = (cols + Self.blockSize - 1) / Self.blockSize
        if scheme.isQuantized {
            guard groupSize >= 0, groupSize % Self.blockSize == 0 else {
                throw .invalidArgument("group size \(groupSize) must be 0 (per channel) or a positive multiple of \(Self.blockSize)")
            }
            blocksPerGroup = groupSize == 0 ? blocksPerRow : min(blocksPerRow, groupSize / Self.blockSize)
            guard scheme.traits?.hasHalfBlockScales != true || groupSize == Self.blockSize else {
                throw .invalidArgument("\(scheme.rawValue) has scales per 16 weights: its group size must be \(Self.blockSize), not \(groupSize)")
            }
        } else {
            blocksPerGroup = 0
        }
        let (_, overflow) = rows.multipliedReportingOverflow(by: blocksPerRow * Self.blockSize * 4)
        guard !overflow, byteCount < 1 << 46 else { throw .invalidArgument("tensor shape \(shape) is too large") }
    }

    /// Number of values.
    public var count: Int { rows * cols }
    /// Scale groups per row.
    public var groupsPerRow: Int { blocksPerGroup == 0 ? 0 : (blocksPerRow + blocksPerGroup - 1) / blocksPerGroup }
    /// Bytes of one stored block of 32 codes.
    public let blockBytes: Int
    /// Bytes of the code array (quantized) or of all values (float).
    public var codeBytes: Int {
        switch scheme {
        case .f32: return count * 4
        case .f16: return count * 2
        default: return rows * blocksPerRow * blockBytes
        }
    }
    /// Offset of the f16 scale array inside the payload.
    public var scalesOffset: Int { (codeBytes + Self.alignment - 1) / Self.alignment * Self.alignment }
    /// Total payload bytes.
    public var byteCount: Int { scheme.isQuantized ? scalesOffset + scaleBytes : codeBytes }
    /// Bytes of the scale array (quantized schemes).
    public var scaleBytes: Int { rows * groupsPerRow * 2 * scheme.wordsPerGroup }
    /// Bits per weight counting codes and scales over the logical (unpadded) values.
    public var bitsPerWeight: Double {
        scheme.isQuantized ? Double((codeBytes + scaleBytes) * 8) / Double(count) : Double(codeBytes * 8) / Double(count)
    }
}
