import CEdgeKernels

/// The instruction-set level the integer kernels run at, detected once from the CPU.
public enum KernelLevel: Int32, Sendable, CaseIterable, CustomStringConvertible {
    /// Portable C (auto-vectorised where the compiler can).
    case generic = 0
    /// AVX2 + FMA + F16C (`vpmaddubsw`/`vpmaddwd`).
    case avx2 = 1
    /// AVX-512 VNNI (`vpdpbusd`).
    case avx512vnni = 2

    /// The best level this CPU supports.
    public static let detected = KernelLevel(rawValue: edge_detect_isa()) ?? .generic

    /// Levels this CPU can run (for tests comparing every level against the reference).
    public static var supported: [KernelLevel] { allCases.filter { $0.rawValue <= detected.rawValue } }

    public var description: String {
        switch self {
        case .generic: return "generic C"
        case .avx2: return "AVX2"
        case .avx512vnni: return "AVX-512 VNNI"
        }
    }
}

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
        if scheme == .q4 {
            edge_matmul_q4(level.rawValue, weights.assumingMemoryBound(to: UInt8.self), scales, Int64(blocksPerRow), Int64(blocksPerGroup),
                           Int64(rows.lowerBound), Int64(rows.upperBound), x, xs, Int64(tokens), out, Int64(rowStride), Int64(tokenStride))
        } else {
            edge_matmul_q8(level.rawValue, weights.assumingMemoryBound(to: Int8.self), scales, Int64(blocksPerRow), Int64(blocksPerGroup),
                           Int64(rows.lowerBound), Int64(rows.upperBound), x, xs, Int64(tokens), out, Int64(rowStride), Int64(tokenStride))
        }
    }
}
