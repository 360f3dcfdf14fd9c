import Foundation

/// Converts float checkpoints into `.edgelm` files.
public enum Converter {
    /// Converts `checkpoint` into `outputPath`. The output appears atomically at the end; on any error
    /// nothing is left at `outputPath` (an existing file there is untouched).
    public static func convert(
        _ checkpoint: Checkpoint, to outputPath: String, options: ConversionOptions,
        progress: (ConversionProgress) -> Void = { _ in }
    ) throws(EdgeLMError) -> ConversionReport {
        let level = options.level
        let importance = options.calibration?.importance ?? [:], gram = options.calibration?.gram ?? [:]
        return try convert(
            checkpoint, to: outputPath, options: options,
            encoder: { (name, values, layout) throws(EdgeLMError) in
                if layout.scheme.isFittable, let h = gram[name], h.count == layout.cols * layout.cols {
                    return try GPTQ.encode(values, layout: layout, gram: h, level: level)
                }
                return Quantizer.encode(values, layout: layout, importance: importance[name], level: level)
            }, progress: progress)
    }

    /// Converts with a given payload encoder (tests substitute deliberately degraded quantizers).
    static func convert(
        _ checkpoint: Checkpoint, to outputPath: String, options: ConversionOptions,
        encoder: (String, UnsafeBufferPointer<Float>, TensorLayout) throws(EdgeLMError) -> [UInt8],
        progress: (ConversionProgress) -> Void
    ) throws(EdgeLMError) -> ConversionReport {
        let options = options.adapted(to: checkpoint)
        try check(options, for: checkpoint.config)
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
                let (payload, carried, error) = try encode(
                    source, name: name, layout: layout, path: checkpoint.path, scratch: scratch, measureError: options.measureError, encoder: encoder)
                try finishPending()
                let zstd = options.zstdLevel
                writes.async(group: writing) {
                    written.set(
                        i,
                        Result { () throws(EdgeLMError) in
                            try withPayload(payload) { (buf) throws(EdgeLMError) in
                                try out.value.append(name: name, shape: shape, scheme: scheme, groupSize: groupSize, payload: buf, zstdLevel: zstd)
                            }
                        })
                }
                pending = (
                    i,
                    { entry in
                        TensorReport(
                            name: name, shape: shape, scheme: scheme, rawBytes: layout.byteCount, storedBytes: entry.length,
                            error: error, carriedOver: carried, sourceType: source.dtype.name)
                    }
                )
            }
            try finishPending()
            hashing.wait()
            try writer.finish(
                config: checkpoint.config, tokenizer: checkpoint.tokenizer, provenance: provenance(of: checkpoint, sha256: sourceHash.values[0]!),
                quantization: options.settings)
        } catch {
            writing.wait()
            writer.abort()
            throw error
        }
        let outputBytes = (try? FileManager.default.attributesOfItem(atPath: outputPath)[.size] as? Int) ?? 0
        return ConversionReport(
            tensors: reports, inputBytes: checkpoint.inputBytes, outputBytes: outputBytes,
            seconds: Date().timeIntervalSince(start), tiedOutput: checkpoint.config.tiedOutput)
    }

    /// Reads tensor `name` into `scratch` and encodes it: the source's own codes when they carry over (`carried`), else
    /// `encoder`'s; refuses a payload that overflows; measures its error when asked (never for f32, which is exact).
    private static func encode(
        _ source: SourceTensor, name: String, layout: TensorLayout, path: String, scratch: UnsafeMutablePointer<Float>, measureError: Bool,
        encoder: (String, UnsafeBufferPointer<Float>, TensorLayout) throws(EdgeLMError) -> [UInt8]
    ) throws(EdgeLMError) -> (payload: [UInt8], carried: Bool, error: QuantizationError?) {
        // Shapes were checked against the config when the checkpoint was opened (`validateTensors`).
        try source.floats(path: path, into: scratch)
        let values = UnsafeBufferPointer(start: scratch, count: layout.count)
        let carried = carriedPayload(source, layout)
        let payload: [UInt8]
        if let carried { payload = carried } else { payload = try encoder(name, values, layout) }
        try checkOverflow(payload, values: values, layout: layout, field: "tensor '\(name)'", path: path)
        let error = layout.scheme == .f32 || !measureError ? nil : Quantizer.error(of: Array(values), layout: layout, payload: payload)
        return (payload, carried != nil, error)
    }

    /// Where a file came from: the source file's name and hash, its format, this converter's version, the time.
    private static func provenance(of checkpoint: Checkpoint, sha256: String) -> Provenance {
        Provenance(
            sourceFile: (checkpoint.path as NSString).lastPathComponent, sourceSHA256: sha256, sourceFormat: checkpoint.format,
            converterVersion: EdgeLMVersion.string, created: ISO8601DateFormatter().string(from: Date()))
    }

    /// Refuses options whose `--tensor-type` rules match no matrix, or that quantize some but not all of the matrices
    /// reading one input: the forward pass feeds one input to several matrices at once (q, k and v; gate and up), as
    /// int8 activations or as floats.
    private static func check(_ options: ConversionOptions, for config: ModelConfig) throws(EdgeLMError) {
        try options.validate()
        let matrixNames = config.matrixNames
        if let unused = options.tensorTypes.first(where: { rule in !matrixNames.contains(where: rule.matches) }) {
            throw .invalidArgument(
                "--tensor-type \(unused): '\(unused.pattern)' matches none of the attention and FFN matrices (\(matrixNames.prefix(3).joined(separator: ", ")), ...)"
            )
        }
        let matrixSet = Set(matrixNames)
        for l in 0..<config.layers {
            for input in LinearInput.allCases {
                let names = input.tensors(layer: l).filter(matrixSet.contains)
                guard let first = names.first,
                    let other = names.first(where: { options.plan(for: $0).scheme.isQuantized != options.plan(for: first).scheme.isQuantized })
                else { continue }
                throw .invalidArgument(
                    "--tensor-type: \(first) is \(options.plan(for: first).scheme.rawValue) but \(other) is \(options.plan(for: other).scheme.rawValue); matrices that read one input (q, k and v; gate and up) must all be quantized or all float"
                )
            }
        }
    }

    /// Refuses a payload whose f16 values, f16 scales or q4a scale words overflowed (weights too large for the scheme).
    private static func checkOverflow(
        _ payload: [UInt8], values: UnsafeBufferPointer<Float>, layout: TensorLayout, field: String,
        path: String
    ) throws(EdgeLMError) {
        if layout.scheme == .f16, let bad = payload.withUnsafeBytes({ firstOverflowingHalf($0, count: layout.count) }) {
            throw .invalidField(path: path, field: field, message: "element \(bad) (\(values[bad])) does not fit in f16")
        }
        switch layout.scheme.traits?.overflow {
        case .halves?:
            if let bad = payload.withUnsafeBytes({
                firstOverflowingHalf(UnsafeRawBufferPointer(rebasing: $0[layout.scalesOffset...]), count: layout.scaleBytes / 2)
            }) {
                throw .invalidField(path: path, field: field, message: "scale \(bad) overflows f16: weights too large to quantize")
            }
        case let .zeroWords(what)?:
            if let bad = payload.withUnsafeBytes({ firstOverflowingGroup($0, values: values, layout: layout) }) {
                throw .invalidField(path: path, field: field, message: "scale \(bad) overflows \(what): weights too large to quantize")
            }
        case nil: break
        }
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
        var g = 0, finite = true, highBits = layout.scheme.traits!.highBits
        out.withUnsafeMutableBytes { dst in
            for b in 0..<sourceBlocks {
                t.codeGroups(UnsafeRawBufferPointer(rebasing: src[(b * t.blockBytes)..<((b + 1) * t.blockBytes)])) { first, second, code in
                    let words = (HalfFloat.fromFloat(first), HalfFloat.fromFloat(second))
                    finite = finite && words.0 & 0x7C00 != 0x7C00 && words.1 & 0x7C00 != 0x7C00
                    let row = g / layout.blocksPerRow, block = g % layout.blocksPerRow
                    for j in 0..<32 { Quantizer.storeCode(Int(code(j)), row: row, index: block * 32 + j, layout: layout, highBits: highBits, out: dst) }
                    Quantizer.storePair(words.0, words.1, row: row, group: block, layout: layout, out: dst)
                    g += 1
                }
            }
        }
        return finite ? out : nil
    }

    private static func withPayload(_ payload: [UInt8], _ body: (UnsafeRawBufferPointer) throws(EdgeLMError) -> TensorEntry) throws(EdgeLMError) -> TensorEntry
    {
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
