import CEdgeKernels
import Foundation

/// The instruction-set level the integer kernels run at: detected from the CPU, or forced with the
/// `EDGELM_KERNELS` environment variable (named as `name` spells it) to test and benchmark every level
/// a machine has. The levels, their names and what each runs are defined once, in C (`edge_isa`,
/// dispatch.c); this type only wraps them.
public struct KernelLevel: Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The C `edge_isa` value.
    public let rawValue: Int32

    private init(_ isa: edge_isa) { rawValue = Int32(isa.rawValue) }

    /// The level with C value `rawValue`, if there is one.
    public init?(rawValue: Int32) {
        guard rawValue >= 0, rawValue < Int32(EDGE_ISA_COUNT.rawValue) else { return nil }
        self.rawValue = rawValue
    }

    /// Portable C.
    public static let generic = KernelLevel(EDGE_ISA_GENERIC)
    /// x86-64 AVX2 + FMA + F16C.
    public static let avx2 = KernelLevel(EDGE_ISA_AVX2)
    /// x86-64 AVX-VNNI (VEX `vpdpbusd` on 256-bit registers).
    public static let avxVNNI = KernelLevel(EDGE_ISA_AVX_VNNI)
    /// x86-64 AVX-512 VNNI.
    public static let avx512vnni = KernelLevel(EDGE_ISA_AVX512_VNNI)
    /// arm64 Advanced SIMD without dot products.
    public static let neon = KernelLevel(EDGE_ISA_NEON)
    /// arm64 FEAT_DotProd.
    public static let dotprod = KernelLevel(EDGE_ISA_DOTPROD)
    /// arm64 FEAT_I8MM.
    public static let i8mm = KernelLevel(EDGE_ISA_I8MM)

    /// Every level the kernels know, supported by this CPU or not.
    public static let allCases = (0..<Int32(EDGE_ISA_COUNT.rawValue)).compactMap(KernelLevel.init(rawValue:))

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
        guard let level = KernelLevel(rawValue: raw) else {
            let names = KernelLevel.allCases.map(\.name).joined(separator: ", ")
            throw .invalidArgument("unknown kernel level '\(name)' (one of: \(names))")
        }
        guard level.isSupported else {
            let names = KernelLevel.supported.map(\.name).joined(separator: ", ")
            throw .invalidArgument("kernel level '\(name)' is not supported by this CPU (it supports: \(names))")
        }
        self = level
    }

    /// The level `EDGELM_KERNELS` forces, or the detected one when it is unset or empty. Programs read it once,
    /// where they start (the CLI's commands do), and pass the level down in their options.
    public static func selected(environment: [String: String] = ProcessInfo.processInfo.environment) throws(EdgeLMError) -> KernelLevel {
        guard let name = environment["EDGELM_KERNELS"], !name.isEmpty else { return detected }
        do {
            return try KernelLevel(named: name)
        } catch {
            throw .invalidArgument("EDGELM_KERNELS: \(error)")
        }
    }

    /// The level's name for people: generic C, AVX2, AVX-VNNI, AVX-512 VNNI, NEON, NEON dotprod, NEON i8mm.
    public var description: String { String(cString: edge_isa_title(rawValue)) }
}
