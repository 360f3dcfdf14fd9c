import CEdgeKernels

/// One integer scheme described once: its block layout, what its codes and scale words mean, how a group is fitted
/// and how GPTQ rounds, which scale words can overflow, and its C kernel. `TensorScheme.traits` gives each scheme's
/// (one file per scheme in this folder); the quantizer, GPTQ, the converter, the reference kernels and
/// `IntegerKernels` read them instead of testing the scheme.
public struct SchemeTraits: Sendable {
    /// Bytes of one block of 32 weights' codes.
    public let blockBytes: Int
    /// 16-bit scale words per group.
    public let wordsPerGroup: Int
    /// Codes stored as nibbles only, 16 bytes per block.
    public let isFourBit: Bool
    /// Codes calibration and GPTQ may choose (the others hold ggml's groups carried over from a GGUF).
    public let isFittable: Bool
    /// The C kernel (an `edge_scheme_` function's result).
    let kernel: @Sendable () -> OpaquePointer?
    /// How payloads are written and read.
    let codec: Codec
    /// How the converter finds scale words the weights overflowed.
    let overflow: Overflow

    /// How a scheme stores codes and scale words.
    enum Codec: Sendable {
        /// One scale word per group and signed codes chosen group by group.
        case groups(GroupCodes)
        /// Two halves per group, d then m, and unsigned codes n of `bits` bits (a plane of bit 4 past the nibbles
        /// for 5): weight = d n + m.
        case offsets(bits: Int)
        /// Two halves per block, one per 16 weights, and 6-bit codes n (bits 4-5 in a plane past the nibbles):
        /// weight = s (n - 32).
        case sixBit
    }

    /// How overflowed scale words show.
    enum Overflow: Sendable {
        /// As infinite halves.
        case halves
        /// As word 0 for a group whose weights are not all 0 (the named scale could not hold them).
        case zeroWords(String)
    }

    init(
        blockBytes: Int, wordsPerGroup: Int = 1, isFourBit: Bool, isFittable: Bool = false,
        kernel: @escaping @Sendable () -> OpaquePointer?, codec: Codec, overflow: Overflow = .halves
    ) {
        self.blockBytes = blockBytes
        self.wordsPerGroup = wordsPerGroup
        self.isFourBit = isFourBit
        self.isFittable = isFittable
        self.kernel = kernel
        self.codec = codec
        self.overflow = overflow
    }

    /// The group codes, for the schemes that have them.
    var groupCodes: GroupCodes? {
        if case let .groups(codes) = codec { return codes }
        return nil
    }

    /// Two scales per block, one per 16 weights (q6): groups are exactly one block.
    var hasHalfBlockScales: Bool {
        if case .sixBit = codec { return true }
        return false
    }

    /// Bits of each code held in the plane past a block's 16 nibble bytes: 0, 1 (q5o: bit j of a little-endian
    /// uint32) or 2 (q6: bits 2 (j / 8) of byte 16 + j % 8).
    var highBits: Int {
        switch codec {
        case .groups: 0
        case let .offsets(bits): bits - 4
        case .sixBit: 2
        }
    }
}

/// The codes of a scheme with one scale word per group (q8's are bytes, the others' nibbles). A class: copying a
/// scheme's traits then retains one object, not each of these closures.
final class GroupCodes: Sendable {
    /// How a code is stored in its nibble (or q8 byte).
    enum Storage: Sendable {
        /// The code plus an offset the word gives (q8: 0, q4: 8, q4a: its zero point).
        case offset(@Sendable (_ word: UInt16) -> Int)
        /// The index of the code among a 16-entry codebook's ascending `levels`; `index` finds a level's.
        case codebook([Int8], index: @Sendable (Float) -> Int32)
    }

    /// How codes are stored.
    let storage: Storage
    /// The scale `word` stands for.
    let scale: @Sendable (_ word: UInt16) -> Float
    /// Fits a group of n values (a multiple of 32; importance w, or nil for a plain fit) at a kernel level: returns
    /// its word and writes its n codes, rounded toward zero when `truncate` (tests only; codebooks refuse it).
    let fit:
        @Sendable (
            _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>?, _ n: Int, _ codes: UnsafeMutablePointer<Int8>,
            _ truncate: Bool, _ level: KernelLevel
        ) -> UInt16
    /// Calibrated fits weigh each weight by its column's importance times sqrt(row variance + w²); false: by the
    /// importance alone.
    let varianceWeighted: Bool
    /// GPTQ's code for v (a weight over its scale) under `word`.
    let nearestCode: @Sendable (_ v: Double, _ word: UInt16) -> Double
    /// GPTQ's refit: the word that stores scale s with the rest of `fitted` (q4a's zero point), nil when none can.
    let refitWord: @Sendable (_ s: Double, _ fitted: UInt16) -> UInt16?

    init(
        storage: Storage, scale: @escaping @Sendable (UInt16) -> Float,
        fit: @escaping @Sendable (UnsafePointer<Float>, UnsafePointer<Float>?, Int, UnsafeMutablePointer<Int8>, Bool, KernelLevel) -> UInt16,
        varianceWeighted: Bool, nearestCode: @escaping @Sendable (Double, UInt16) -> Double,
        refitWord: @escaping @Sendable (Double, UInt16) -> UInt16?
    ) {
        self.storage = storage
        self.scale = scale
        self.fit = fit
        self.varianceWeighted = varianceWeighted
        self.nearestCode = nearestCode
        self.refitWord = refitWord
    }

    /// The code that stored nibble (or q8 byte) n stands for under scale word `word`.
    func code(_ n: Int, _ word: UInt16) -> Int {
        switch storage {
        case let .offset(offset): n - offset(word)
        case let .codebook(levels, _): Int(levels[n])
        }
    }

    /// Codes n - offset clamped to [lo, hi] under an IEEE half scale, rounded to nearest even: q8's and q4's.
    static func symmetric(
        lo: Int, hi: Int, offset: Int,
        fit: @escaping @Sendable (UnsafePointer<Float>, UnsafePointer<Float>?, Int, UnsafeMutablePointer<Int8>, Bool, KernelLevel) -> UInt16
    )
        -> GroupCodes
    {
        GroupCodes(
            storage: .offset { _ in offset }, scale: HalfFloat.toFloat, fit: fit,
            varianceWeighted: true, nearestCode: { v, _ in min(Double(hi), max(Double(lo), v.rounded(.toNearestOrEven))) },
            refitWord: { s, _ in HalfFloat.fromFloat(Float(s)) })
    }

    /// Codes that are the levels of a 16-entry codebook under a signed IEEE half scale: q4n's and iq4nl's.
    static func codebook(
        _ levels: [Int8], index: @escaping @Sendable (Float) -> Int32,
        fit: @escaping @Sendable (UnsafePointer<Float>, UnsafePointer<Float>?, Int64, UnsafeMutablePointer<Int8>) -> UInt16
    ) -> GroupCodes {
        GroupCodes(
            storage: .codebook(levels, index: index), scale: HalfFloat.toFloat,
            fit: { x, w, n, codes, truncate, _ in
                precondition(!truncate, "codebook codes are the nearest level; they cannot round toward zero")
                return fit(x, w, Int64(n), codes)
            },
            varianceWeighted: false, nearestCode: { v, _ in Double(levels[Int(index(Float(v)))]) },
            refitWord: { s, _ in HalfFloat.fromFloat(Float(s)) })
    }
}
