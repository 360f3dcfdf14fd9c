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
