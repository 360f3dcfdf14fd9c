import CEdgeKernels
import Foundation

/// The instruction-set level the integer kernels run at: detected from the CPU, or forced with the
/// `EDGELM_KERNELS` environment variable (named as `name` spells it) to test and benchmark every level
/// a machine has.
public enum KernelLevel: Int32, Sendable, CaseIterable, CustomStringConvertible {
    /// Portable C.
    case generic = 0
    /// x86-64 AVX2 + FMA + F16C (`vpmaddubsw`/`vpmaddwd`).
    case avx2 = 1
    /// x86-64 AVX-VNNI (VEX `vpdpbusd` on 256-bit registers).
    case avxVNNI = 2
    /// x86-64 AVX-512 VNNI (`vpdpbusd` on 512-bit registers).
    case avx512vnni = 3
    /// arm64 Advanced SIMD without dot products (`smull`/`sadalp`).
    case neon = 4
    /// arm64 FEAT_DotProd (`sdot`).
    case dotprod = 5
    /// arm64 FEAT_I8MM (`smmla` for prompt batches).
    case i8mm = 6

    /// The fastest level this CPU supports.
    public static let detected = KernelLevel(rawValue: edge_detect_isa()) ?? .generic

    /// Levels this CPU can run (for tests comparing every level against the reference).
    public static var supported: [KernelLevel] { allCases.filter(\.isSupported) }

    /// Whether this CPU can run the level.
    public var isSupported: Bool { edge_isa_supported(rawValue) != 0 }

    /// The level as `EDGELM_KERNELS` names it: generic, avx2, avx-vnni, avx512, neon, dotprod, i8mm.
    public var name: String { String(cString: edge_isa_name(rawValue)) }

    /// The level named `name`, if this CPU supports it.
    public init(named name: String) throws(EdgeLMError) {
        let raw = edge_isa_from_name(name)
        guard raw >= 0, let level = KernelLevel(rawValue: raw) else {
            let names = KernelLevel.allCases.map(\.name).joined(separator: ", ")
            throw .invalidArgument("unknown kernel level '\(name)' (one of: \(names))")
        }
        guard level.isSupported else {
            let names = KernelLevel.supported.map(\.name).joined(separator: ", ")
            throw .invalidArgument("kernel level '\(name)' is not supported by this CPU (it supports: \(names))")
        }
        self = level
    }

    /// The level `EDGELM_KERNELS` forces, or the detected one when it is unset or empty.
    public static func selected(environment: [String: String] = ProcessInfo.processInfo.environment) throws(EdgeLMError) -> KernelLevel {
        guard let name = environment["EDGELM_KERNELS"], !name.isEmpty else { return detected }
        do {
            return try KernelLevel(named: name)
        } catch {
            throw .invalidArgument("EDGELM_KERNELS: \(error)")
        }
    }

    public var description: String {
        switch self {
        case .generic: return "generic C"
        case .avx2: return "AVX2"
        case .avxVNNI: return "AVX-VNNI"
        case .avx512vnni: return "AVX-512 VNNI"
        case .neon: return "NEON"
        case .dotprod: return "NEON dotprod"
        case .i8mm: return "NEON i8mm"
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
        guard scheme != .q8 else {
            edge_matmul_q8(level.rawValue, weights.assumingMemoryBound(to: Int8.self), scales, Int64(blocksPerRow), Int64(blocksPerGroup),
                           Int64(rows.lowerBound), Int64(rows.upperBound), x, xs, Int64(tokens), out, Int64(rowStride), Int64(tokenStride))
            return
        }
        let kernel = switch scheme {
        case .q4a: edge_matmul_q4a
        case .q4o: edge_matmul_q4o
        case .q4n: edge_matmul_q4n
        case .iq4nl: edge_matmul_iq4nl
        case .q5o: edge_matmul_q5o
        case .q6: edge_matmul_q6
        default: edge_matmul_q4
        }
        kernel(level.rawValue, weights.assumingMemoryBound(to: UInt8.self), scales, Int64(blocksPerRow), Int64(blocksPerGroup),
               Int64(rows.lowerBound), Int64(rows.upperBound), x, xs, Int64(tokens), out, Int64(rowStride), Int64(tokenStride))
    }

    /// `matmul` computing each of `tokens` tokens exactly as a call with that token alone would, bit for bit
    /// (`edge_matmul_q8_tokenwise`): q8, q4, q4a and q4o run the row-major multi-token tiles; other schemes take the
    /// rows `chunkRows` at a time, each chunk for every token while it is in cache.
    static func matmulTokenwise(_ level: KernelLevel, scheme: TensorScheme, weights: UnsafeRawPointer, scales: UnsafePointer<UInt16>,
                                blocksPerRow: Int, blocksPerGroup: Int, rows: Range<Int>, chunkRows: Int, x: UnsafePointer<Int8>,
                                xs: UnsafePointer<Float>, tokens: Int, out: UnsafeMutablePointer<Float>, tokenStride: Int) {
        let (nb, gb, r0, r1, n) = (Int64(blocksPerRow), Int64(blocksPerGroup), Int64(rows.lowerBound), Int64(rows.upperBound), Int64(tokens))
        switch scheme {
        case .q8:
            edge_matmul_q8_tokenwise(level.rawValue, weights.assumingMemoryBound(to: Int8.self), scales, nb, gb, r0, r1, x, xs, n, out, 1, Int64(tokenStride))
        case .q4, .q4a, .q4o:
            let kernel = scheme == .q4 ? edge_matmul_q4_tokenwise : scheme == .q4a ? edge_matmul_q4a_tokenwise : edge_matmul_q4o_tokenwise
            kernel(level.rawValue, weights.assumingMemoryBound(to: UInt8.self), scales, nb, gb, r0, r1, x, xs, n, out, 1, Int64(tokenStride))
        default:
            for c0 in stride(from: rows.lowerBound, to: rows.upperBound, by: chunkRows) {
                for t in 0..<tokens {
                    matmul(level, scheme: scheme, weights: weights, scales: scales, blocksPerRow: blocksPerRow, blocksPerGroup: blocksPerGroup,
                           rows: c0..<min(rows.upperBound, c0 + chunkRows), x: x + t * blocksPerRow * 32, xs: xs + t * blocksPerRow, tokens: 1,
                           out: out + t * tokenStride, rowStride: 1, tokenStride: tokenStride)
                }
            }
        }
    }
}
