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
    public init(type: TensorScheme, groupSize: Int? = nil, embeddingType: TensorScheme? = nil, zstdLevel: Int? = nil,
                overwrite: Bool = false, measureError: Bool = false) {
        self.type = type
        self.groupSize = groupSize
        self.embeddingType = embeddingType
        self.zstdLevel = zstdLevel
        self.overwrite = overwrite
        self.measureError = measureError
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

/// One converted tensor, as reported to the user.
public struct TensorReport: Sendable {
    /// Canonical name.
    public let name: String
    /// Shape.
    public let shape: [Int]
    /// Stored scheme.
    public let scheme: TensorScheme
    /// Decoded payload bytes.
    public let rawBytes: Int
    /// Stored bytes (differs from raw when compressed).
    public let storedBytes: Int
    /// Error against the source floats (nil for f32 tensors, which are exact, and unless
    /// `ConversionOptions.measureError` is set).
    public let error: QuantizationError?
    /// True when the source's codes and scales were stored as they were (a GGUF Q8_0 or Q4_0 tensor
    /// written as q8 or q4 with groups of 32), with no second rounding.
    public let carriedOver: Bool
    /// The source tensor's type ("F32", "Q4_K", ...).
    public let sourceType: String
}

/// Progress events during conversion.
public struct ConversionProgress: Sendable {
    /// Index of the tensor just finished (1-based).
    public let done: Int
    /// Number of tensors.
    public let total: Int
    /// The tensor just finished.
    public let tensor: TensorReport
}

/// Summary of a conversion.
public struct ConversionReport: Sendable {
    /// Per-tensor results in file order.
    public let tensors: [TensorReport]
    /// Parameters written.
    public let parameters: Int
    /// Size of the input checkpoint.
    public let inputBytes: Int
    /// Size of the output file.
    public let outputBytes: Int
    /// Wall time in seconds.
    public let seconds: Double
    /// Bits per weight over the attention and FFN matrices (codes + scales).
    public let matrixBitsPerWeight: Double
    /// Bits per weight over all tensors, from decoded payload bytes.
    public let bitsPerWeight: Double
    /// Decoded payload bytes over stored payload bytes.
    public let compressionRatio: Double
    /// True when the source's output head was identical to its embedding and stored once.
    public let tiedOutput: Bool
}

/// Converts float checkpoints into `.edgelm` files.
public enum Converter {
    /// Converts `checkpoint` into `outputPath`. The output appears atomically at the end; on any error
    /// nothing is left at `outputPath` (an existing file there is untouched).
    public static func convert(_ checkpoint: Checkpoint, to outputPath: String, options: ConversionOptions,
                               progress: (ConversionProgress) -> Void = { _ in }) throws(EdgeLMError) -> ConversionReport {
        let level = options.level
        let importance = options.calibration?.importance ?? [:], gram = options.calibration?.gram ?? [:]
        return try convert(checkpoint, to: outputPath, options: options, encoder: { (name, values, layout) throws(EdgeLMError) in
            if layout.scheme.isFittable, let h = gram[name], h.count == layout.cols * layout.cols {
                return try GPTQ.encode(values, layout: layout, gram: h, level: level)
            }
            return Quantizer.encode(values, layout: layout, importance: importance[name], level: level)
        }, progress: progress)
    }

    /// Converts with a given payload encoder (tests substitute deliberately degraded quantizers).
    static func convert(_ checkpoint: Checkpoint, to outputPath: String, options: ConversionOptions,
                        encoder: (String, UnsafeBufferPointer<Float>, TensorLayout) throws(EdgeLMError) -> [UInt8],
                        progress: (ConversionProgress) -> Void) throws(EdgeLMError) -> ConversionReport {
        let options = options.adapted(to: checkpoint)
        try options.validate()
        let matrixNames = checkpoint.config.matrixNames
        if let unused = options.tensorTypes.first(where: { rule in !matrixNames.contains(where: rule.matches) }) {
            throw .invalidArgument("--tensor-type \(unused): '\(unused.pattern)' matches none of the attention and FFN matrices (\(matrixNames.prefix(3).joined(separator: ", ")), ...)")
        }
        // The forward pass feeds one input to several matrices at once (q, k and v; gate and up): they must
        // all take int8 activations or all take floats.
        let matrixSet = Set(matrixNames)
        for l in 0..<checkpoint.config.layers {
            for input in LinearInput.allCases {
                let names = input.tensors(layer: l).filter(matrixSet.contains)
                guard let first = names.first, let other = names.first(where: { options.plan(for: $0).scheme.isQuantized != options.plan(for: first).scheme.isQuantized }) else { continue }
                throw .invalidArgument("--tensor-type: \(first) is \(options.plan(for: first).scheme.rawValue) but \(other) is \(options.plan(for: other).scheme.rawValue); matrices that read one input (q, k and v; gate and up) must all be quantized or all float")
            }
        }
        let start = Date()
        // The provenance hash reads the whole input once; it runs beside the conversion, not after it.
        let sourceHash = ConcurrentSlots<String>(count: 1), hashing = DispatchGroup()
        DispatchQueue.global().async(group: hashing) { sourceHash.set(0, checkpoint.sha256()) }
        let writer = try ModelWriter(path: outputPath, overwrite: options.overwrite)
        let shapes = checkpoint.config.tensorShapes
        var reports: [TensorReport] = []
        // Tensor i is written (and checksummed) on `writes` while tensor i + 1 is converted; at most one
        // write is in flight, so two payloads are in memory at most.
        let writes = DispatchQueue(label: "edgelm.convert.write"), writing = DispatchGroup()
        let written = ConcurrentSlots<Result<TensorEntry, EdgeLMError>>(count: shapes.count)
        let out = UncheckedSendable(writer)
        var pending: (index: Int, report: (TensorEntry) -> TensorReport)?
        // Every tensor's f32 values go through one buffer of the largest tensor's size: fresh pages for each
        // would cost a page fault per 4 KiB (tl1b: 4.4 GB of them, a third of the q4 conversion's kernel time).
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: shapes.map { $0.shape.reduce(1, *) }.max() ?? 0)
        defer { scratch.deallocate() }
        func finishPending() throws(EdgeLMError) {
            writing.wait()
            guard let (index, report) = pending else { return }
            pending = nil
            let entry = try written.values[index]!.get()
            reports.append(report(entry))
            progress(ConversionProgress(done: index + 1, total: shapes.count, tensor: reports[index]))
        }
        // On any error the write in flight (which holds the writer) finishes first, then the temporary file
        // goes: nothing half-written is left behind when this throws (not even for a moment after it).
        do throws(EdgeLMError) {
            for (i, (name, shape)) in shapes.enumerated() {
                guard let source = checkpoint.tensors[name] else { throw .missingTensor(path: checkpoint.path, tensor: name) }
                let (scheme, groupSize) = options.plan(for: name)
                let layout = try TensorLayout(shape: shape, scheme: scheme, groupSize: groupSize)
                // Shapes were checked against the config when the checkpoint was opened (`validateTensors`).
                try source.floats(path: checkpoint.path, into: scratch)
                let values = UnsafeBufferPointer(start: scratch, count: layout.count)
                let carried = carriedPayload(source, layout)
                let payload: [UInt8]
                if let carried { payload = carried } else { payload = try encoder(name, values, layout) }
                if scheme == .f16, let bad = payload.withUnsafeBytes({ firstOverflowingHalf($0, count: layout.count) }) {
                    throw .invalidField(path: checkpoint.path, field: "tensor '\(name)'", message: "element \(bad) (\(values[bad])) does not fit in f16")
                }
                if [.q8, .q4, .q4o, .q5o, .q6].contains(scheme),
                   let bad = payload.withUnsafeBytes({ firstOverflowingHalf(UnsafeRawBufferPointer(rebasing: $0[layout.scalesOffset...]), count: layout.scaleBytes / 2) }) {
                    throw .invalidField(path: checkpoint.path, field: "tensor '\(name)'", message: "scale \(bad) overflows f16: weights too large to quantize")
                }
                if scheme == .q4a || scheme == .q4n || scheme == .iq4nl, let bad = payload.withUnsafeBytes({ firstOverflowingGroup($0, values: values, layout: layout) }) {
                    let what = scheme == .q4a ? "q4a's 12-bit scale" : "f16"
                    throw .invalidField(path: checkpoint.path, field: "tensor '\(name)'", message: "scale \(bad) overflows \(what): weights too large to quantize")
                }
                let error = scheme == .f32 || !options.measureError ? nil : Quantizer.error(of: Array(values), layout: layout, payload: payload)
                try finishPending()
                let zstd = options.zstdLevel
                writes.async(group: writing) {
                    written.set(i, Result { () throws(EdgeLMError) in
                        try withPayload(payload) { (buf) throws(EdgeLMError) in
                            try out.value.append(name: name, shape: shape, scheme: scheme, groupSize: groupSize, payload: buf, zstdLevel: zstd)
                        }
                    })
                }
                pending = (i, { entry in
                    TensorReport(name: name, shape: shape, scheme: scheme, rawBytes: layout.byteCount, storedBytes: entry.length,
                                 error: error, carriedOver: carried != nil, sourceType: source.dtype.name)
                })
            }
            try finishPending()
            hashing.wait()
            let provenance = Provenance(sourceFile: (checkpoint.path as NSString).lastPathComponent, sourceSHA256: sourceHash.values[0]!,
                                        sourceFormat: checkpoint.format, converterVersion: EdgeLMVersion.string,
                                        created: ISO8601DateFormatter().string(from: Date()))
            var settings = QuantizationSettings(type: options.type, groupSize: options.resolvedGroupSize,
                                                embeddingType: options.resolvedEmbeddingType,
                                                compression: options.zstdLevel == nil ? .raw : .zstd, zstdLevel: options.zstdLevel)
            settings.calibration = options.calibration?.provenance
            settings.tensorTypes = options.tensorTypes.isEmpty ? nil : options.tensorTypes.map(\.description)
            try writer.finish(config: checkpoint.config, tokenizer: checkpoint.tokenizer, provenance: provenance, quantization: settings)
        } catch {
            writing.wait()
            writer.abort()
            throw error
        }
        let outputBytes = (try? FileManager.default.attributesOfItem(atPath: outputPath)[.size] as? Int) ?? 0
        let matrices = reports.filter { TensorRole(name: $0.name).isMatrix }
        let matrixParams = matrices.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let params = reports.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let raw = reports.reduce(0) { $0 + $1.rawBytes }
        let stored = reports.reduce(0) { $0 + $1.storedBytes }
        return ConversionReport(
            tensors: reports, parameters: params, inputBytes: checkpoint.inputBytes, outputBytes: outputBytes,
            seconds: Date().timeIntervalSince(start),
            matrixBitsPerWeight: Double(matrices.reduce(0) { $0 + $1.rawBytes } * 8) / Double(max(1, matrixParams)),
            bitsPerWeight: Double(raw * 8) / Double(max(1, params)),
            compressionRatio: Double(raw) / Double(max(1, stored)), tiedOutput: checkpoint.config.tiedOutput)
    }

    /// The payload of `source` in `layout` without requantizing, when the GGUF blocks are the layout's own:
    /// Q8_0 stored as q8 and Q4_0 as q4, both with one f16 scale per 32 weights (ggml's Q4_0 nibble order, low
    /// nibbles first, is EdgeLM's). nil otherwise, or when a Q8_0 block holds the code -128, which EdgeLM's
    /// kernels exclude (the tensor is then quantized again from its exact dequantized values).
    static func carriedPayload(_ source: SourceTensor, _ layout: TensorLayout) -> [UInt8]? {
        guard case let .ggml(t) = source.dtype, source.addend == 0, layout.blocksPerGroup == 1, layout.cols % 32 == 0 else { return nil }
        if let scheme = t.groupScheme, layout.scheme == scheme { return carriedGroupPayload(source, t, layout) }
        guard (t == .q8_0 && layout.scheme == .q8) || (t == .q4_0 && layout.scheme == .q4) || (t == .iq4_nl && layout.scheme == .iq4nl) else { return nil }
        var out = [UInt8](repeating: 0, count: layout.byteCount)
        let src = source.bytes, bb = t.blockBytes, codes = layout.blockBytes, blocks = layout.rows * layout.blocksPerRow
        for b in 0..<blocks {
            let at = b * bb
            let d = src.loadUnaligned(fromByteOffset: at, as: UInt16.self)
            if d & 0x7C00 == 0x7C00 { return nil }
            if t == .q8_0, src[(at + 2)..<(at + 2 + codes)].contains(0x80) { return nil }
            for i in 0..<codes { out[b * codes + i] = src[at + 2 + i] }
            out[layout.scalesOffset + 2 * b] = UInt8(truncatingIfNeeded: d)
            out[layout.scalesOffset + 2 * b + 1] = UInt8(truncatingIfNeeded: d >> 8)
        }
        return out
    }

    /// Blocks of a type with code groups (`GGMLType.codeGroups`) as groups of 32 of its scheme (q4o, q5o, q6): the
    /// codes in EdgeLM's block layout, each group's two values as halves (exact for Q4_1, Q5_0 and Q5_1; the K types'
    /// products rounded to f16). nil when a value overflows a half.
    private static func carriedGroupPayload(_ source: SourceTensor, _ t: GGMLType, _ layout: TensorLayout) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: layout.byteCount)
        let src = source.bytes, sourceBlocks = layout.rows * layout.cols / t.blockValues
        var g = 0, finite = true
        out.withUnsafeMutableBytes { dst in
            for b in 0..<sourceBlocks {
                t.codeGroups(UnsafeRawBufferPointer(rebasing: src[(b * t.blockBytes)..<((b + 1) * t.blockBytes)])) { first, second, code in
                    let words = (HalfFloat.fromFloat(first), HalfFloat.fromFloat(second))
                    finite = finite && words.0 & 0x7C00 != 0x7C00 && words.1 & 0x7C00 != 0x7C00
                    let row = g / layout.blocksPerRow, block = g % layout.blocksPerRow
                    for j in 0..<32 { Quantizer.storeCode(Int(code(j)), row: row, index: block * 32 + j, layout: layout, out: dst) }
                    Quantizer.storePair(words.0, words.1, row: row, group: block, layout: layout, out: dst)
                    g += 1
                }
            }
        }
        return finite ? out : nil
    }

    private static func withPayload(_ payload: [UInt8], _ body: (UnsafeRawBufferPointer) throws(EdgeLMError) -> TensorEntry) throws(EdgeLMError) -> TensorEntry {
        var entry: TensorEntry?
        try withBytes(of: payload) { (buf) throws(EdgeLMError) in entry = try body(buf) }
        return entry!
    }

    /// The first q4a or q4n group stored as word 0 (no scale) although a weight exceeds the largest half: its
    /// scale overflowed. Word 0 below that is an all-zero group or one whose scale underflows, as with f16 scales.
    static func firstOverflowingGroup(_ payload: UnsafeRawBufferPointer, values: UnsafeBufferPointer<Float>, layout: TensorLayout) -> Int? {
        let groupValues = layout.blocksPerGroup * 32
        for r in 0..<layout.rows {
            for g in 0..<layout.groupsPerRow
            where payload.loadUnaligned(fromByteOffset: layout.scalesOffset + (r * layout.groupsPerRow + g) * 2, as: UInt16.self) == 0 {
                let row = values.baseAddress! + r * layout.cols
                if (g * groupValues..<min(layout.cols, (g + 1) * groupValues)).contains(where: { !(abs(row[$0]) <= 65504) }) {
                    return r * layout.groupsPerRow + g
                }
            }
        }
        return nil
    }

    /// Index of the first infinite half value among `count` halves, if any.
    private static func firstOverflowingHalf(_ bytes: UnsafeRawBufferPointer, count: Int) -> Int? {
        for i in 0..<count where bytes.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self) & 0x7C00 == 0x7C00 { return i }
        return nil
    }
}
