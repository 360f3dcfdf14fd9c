import Foundation

/// Options of `edgelm quantize`.
public struct ConversionOptions: Sendable {
    /// Scheme of the attention and FFN matrices.
    public var type: TensorScheme
    /// Weights per scale group (0: per channel); nil picks the scheme's default (q8: 0, q4: 32).
    public var groupSize: Int?
    /// Scheme of the token embedding and output head; nil picks the default (see `defaultEmbeddingType`).
    public var embeddingType: TensorScheme?
    /// zstd level, or nil for raw payloads.
    public var zstdLevel: Int?
    /// Replace an existing output file.
    public var overwrite: Bool
    /// Decode every quantized tensor again to report its error (`TensorReport.error`); costs a second
    /// pass over the weights, so it is off unless asked for (`edgelm quantize --verbose`).
    public var measureError: Bool
    /// Activation statistics from calibration text: q4 scales then minimise the importance-weighted error
    /// (`Calibration.collect`). Recorded in the file's quantization settings.
    public var calibration: Calibration?
    /// Per-tensor exceptions to `type` and `groupSize` for attention and FFN matrices (first match wins);
    /// recorded in the file's quantization settings.
    public var tensorTypes: [TensorTypeRule] = []
    /// Store every tensor in the scheme that holds the source's values (`edgelm quantize --type keep`, the default
    /// for a quantized GGUF): no second rounding where such a scheme exists (see `keptPlan`). `type`, `groupSize`
    /// and `embeddingType` are then set from the source by `adapted(to:)`.
    public var keepSource = false
    /// The kernel level of the fits, GPTQ and calibration (every level writes the same bytes; the CLI passes the one
    /// `EDGELM_KERNELS` selects).
    public var level = KernelLevel.detected
    /// The schemes `keepSource` chose, by tensor (filled by `adapted(to:)`).
    var keptPlans: [String: TensorPlan] = [:]

    /// Creates options.
    public init(
        type: TensorScheme, groupSize: Int? = nil, embeddingType: TensorScheme? = nil, zstdLevel: Int? = nil,
        overwrite: Bool = false, measureError: Bool = false
    ) {
        self.type = type
        self.groupSize = groupSize
        self.embeddingType = embeddingType
        self.zstdLevel = zstdLevel
        self.overwrite = overwrite
        self.measureError = measureError
    }

    /// The settings recorded in the file: scheme, group size, embedding scheme, compression, calibration, rules.
    var settings: QuantizationSettings {
        var settings = QuantizationSettings(
            type: type, groupSize: resolvedGroupSize, embeddingType: resolvedEmbeddingType,
            compression: zstdLevel == nil ? .raw : .zstd, zstdLevel: zstdLevel)
        settings.calibration = calibration?.provenance
        settings.tensorTypes = tensorTypes.isEmpty ? nil : tensorTypes.map(\.description)
        return settings
    }

    /// Default group size of a scheme: per channel for q8, 32 for the 4-, 5- and 6-bit schemes.
    public static func defaultGroupSize(_ scheme: TensorScheme) -> Int { scheme.isFourBit || scheme.hasHighPlanes ? 32 : 0 }

    /// Default embedding/output scheme: the matrices' scheme, except that q4 files keep the embedding and
    /// output head at q8 (see docs/QUANTIZATION.md for the measured error behind this choice); so do q4a and q4n files.
    public static func defaultEmbeddingType(_ scheme: TensorScheme) -> TensorScheme { scheme.isFourBit ? .q8 : scheme }

    /// Resolved group size of the matrices.
    public var resolvedGroupSize: Int { groupSize ?? Self.defaultGroupSize(type) }
    /// Resolved embedding scheme.
    public var resolvedEmbeddingType: TensorScheme { embeddingType ?? Self.defaultEmbeddingType(type) }

    /// A tensor's scheme and group size.
    public typealias TensorPlan = (scheme: TensorScheme, groupSize: Int)

    /// Scheme and group size of a canonical tensor.
    public func plan(for name: String) -> TensorPlan {
        if keepSource, let kept = keptPlans[name] { return kept }
        switch TensorRole(name: name) {
        case .norm: return (.f32, 0)
        case .embedding, .output:
            // The output head decides every logit: it always gets 32-weight groups when quantized.
            let s = resolvedEmbeddingType
            return (s, s.isQuantized ? 32 : 0)
        case .attention, .ffn:
            if let rule = tensorTypes.first(where: { $0.matches(name) }) { return (rule.scheme, rule.groupSize) }
            return (type, resolvedGroupSize)
        }
    }

    /// The scheme that holds a source tensor's values: floats as they are (bf16 as f32, which holds it
    /// exactly), Q8_0 and Q4_0 as q8 and q4 with groups of 32 (codes and scales carried over), and every other
    /// Q4_1 and Q4_K as q4o, Q5_0, Q5_1 and Q5_K as q5o, Q6_K as q6 (exact, and for the K types to the f16 rounding
    /// of their sub-block scales and minimums), IQ4_NL as iq4nl (exact).
    public static func keptPlan(_ dtype: SourceDType) -> TensorPlan {
        switch dtype {
        case .f32, .bf16: return (.f32, 0)
        case .f16: return (.f16, 0)
        case .ggml(.q4_0): return (.q4, 32)
        case .ggml(.iq4_nl): return (.iq4nl, 32)
        case .ggml(.q8_0): return (.q8, 32)
        case let .ggml(t): return (t.groupScheme!, 32)
        }
    }

    /// These options for `checkpoint`: with `keepSource`, each tensor's kept scheme (`type`, `groupSize` and
    /// `embeddingType` become the most common matrix plan and the embedding's, and matrices with another plan
    /// are listed as `tensorTypes`, as recorded in the file); a q8 conversion of a GGUF whose matrices are all
    /// Q8_0 defaults to groups of 32, where every code and scale carries over unchanged (see
    /// `Converter.carriedPayload`).
    public func adapted(to checkpoint: Checkpoint) -> ConversionOptions {
        var o = self
        let matrices = checkpoint.config.matrixNames
        if keepSource {
            for (name, _) in checkpoint.config.tensorShapes where TensorRole(name: name) != .norm {
                if let dtype = checkpoint.tensors[name]?.dtype { o.keptPlans[name] = Self.keptPlan(dtype) }
            }
            var counts: [String: (plan: TensorPlan, count: Int)] = [:]
            for name in matrices { if let p = o.keptPlans[name] { counts["\(p.scheme):\(p.groupSize)", default: (p, 0)].count += 1 } }
            if let common = counts.values.max(by: { $0.count < $1.count || ($0.count == $1.count && $0.plan.scheme.rawValue > $1.plan.scheme.rawValue) }) {
                o.type = common.plan.scheme
                o.groupSize = common.plan.groupSize
                o.tensorTypes = matrices.compactMap { name in
                    guard let p = o.keptPlans[name], p.scheme != common.plan.scheme || p.groupSize != common.plan.groupSize else { return nil }
                    return try? TensorTypeRule(parsing: "\(name)=\(p.scheme.rawValue):\(p.groupSize)")
                }
            }
            o.embeddingType = o.keptPlans["token_embd"]?.scheme
            return o
        }
        if groupSize == nil, type == .q8, !matrices.isEmpty, matrices.allSatisfy({ checkpoint.tensors[$0]?.dtype == .ggml(.q8_0) }) {
            o.groupSize = 32
        }
        return o
    }

    /// True for the group sizes a quantized layout takes: 0 (per channel) or a multiple of 32 up to 2^20.
    static func isValidGroupSize(_ g: Int) -> Bool { g >= 0 && g % TensorLayout.blockSize == 0 && g <= 1 << 20 }

    /// Checks option values.
    public func validate() throws(EdgeLMError) {
        let g = resolvedGroupSize
        guard Self.isValidGroupSize(g) else {
            throw .invalidArgument("--group-size \(g): must be 0 (per channel) or a multiple of \(TensorLayout.blockSize)")
        }
        if let level = zstdLevel, !Zstd.levels.contains(level) {
            throw .invalidArgument("--zstd-level \(level): must be in \(Zstd.levels.lowerBound)...\(Zstd.levels.upperBound)")
        }
    }
}
