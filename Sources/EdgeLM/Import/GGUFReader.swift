/// Reads GGUF versions 1, 2 and 3 (float and ggml-quantized tensors) into a `Checkpoint`. Every count, length
/// and offset is checked against the bytes that remain before anything is allocated for it.
enum GGUFReader {
    /// Limits on untrusted GGUF headers.
    enum Limits {
        static let maxTensors = 1 << 16
        static let maxKeyValues = 1 << 16
        static let maxStringBytes = 64 << 20
        static let maxDims = 4
        static let maxAlignment = 1 << 16
    }

    static let typeNames: [UInt32: String] = [
        0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K",
        12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL",
        21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 30: "BF16",
    ]

    private struct Parser {
        let path: String
        var c: ByteCursor
        let version: Int
        /// Tensor infos the header announces.
        var tensorCount = 0

        func fail(_ field: String, _ message: String) -> EdgeLMError {
            .invalidField(path: path, field: field, message: message)
        }

        mutating func count(_ field: String) throws(EdgeLMError) -> Int {
            try parsing(path: path, field: field) {
                let v: UInt64 = version == 1 ? UInt64(try c.read(UInt32.self)) : try c.read(UInt64.self)
                guard v <= UInt64(c.bytes.count) else { throw fail(field, "\(v) is larger than the file") }
                return Int(v)
            }
        }

        mutating func u32(_ field: String) throws(EdgeLMError) -> UInt32 {
            do { return try c.read(UInt32.self) } catch { throw error.edgeError(path: path, field: field) }
        }

        mutating func string(_ field: String) throws(EdgeLMError) -> String {
            let n = try count(field + " length")
            guard n <= Limits.maxStringBytes else { throw fail(field, "string of \(n) bytes exceeds \(Limits.maxStringBytes)") }
            let raw: UnsafeRawBufferPointer
            do { raw = try c.readBytes(n) } catch { throw error.edgeError(path: path, field: field) }
            guard let s = String(validating: raw, as: UTF8.self) else { throw fail(field, "string is not valid UTF-8") }
            return s
        }

        mutating func value(type: UInt32, field: String, allowArray: Bool) throws(EdgeLMError) -> GGUFValue {
            try parsing(path: path, field: field) {
                switch type {
                case 0: return .uint(UInt64(try c.read(UInt8.self)))
                case 1: return .int(Int64(try c.read(Int8.self)))
                case 2: return .uint(UInt64(try c.read(UInt16.self)))
                case 3: return .int(Int64(try c.read(Int16.self)))
                case 4: return .uint(UInt64(try c.read(UInt32.self)))
                case 5: return .int(Int64(try c.read(Int32.self)))
                case 6: return .float(Double(try c.readFloat()))
                case 7:
                    let b = try c.read(UInt8.self)
                    guard b <= 1 else { throw fail(field, "bool byte \(b)") }
                    return .bool(b == 1)
                case 8: return .string(try string(field))
                case 9:
                    guard allowArray else { throw fail(field, "nested arrays are not supported") }
                    let et = try c.read(UInt32.self)
                    let n = try count(field + " count")
                    let minSize = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: version == 1 ? 4 : 8, 10: 8, 11: 8, 12: 8][Int(et)]
                    guard let minSize else { throw fail(field, "array element type \(et) is not supported") }
                    guard n <= c.remaining / minSize else { throw fail(field, "array of \(n) elements is larger than the file") }
                    var items: [GGUFValue] = []
                    items.reserveCapacity(n)
                    for _ in 0..<n { items.append(try value(type: et, field: field, allowArray: false)) }
                    return .array(items, elementType: et)
                case 10: return .uint(try c.read(UInt64.self))
                case 11: return .int(try c.read(Int64.self))
                case 12: return .float(try c.readDouble())
                default: throw fail(field, "unknown value type \(type)")
                }
            }
        }
    }

    static func checkpoint(file: MappedFile) throws(EdgeLMError) -> Checkpoint {
        let path = file.path
        var (p, kv, alignment) = try header(file: file)
        let infos = try tensorInfos(&p, file: file, alignment: alignment)
        let dataStart = (p.c.offset + alignment - 1) / alignment * alignment
        guard dataStart <= file.bytes.count else {
            throw .truncated(path: path, field: "tensor data", offset: dataStart, needed: 0, available: 0)
        }
        var tensors = try sourceTensors(infos, p: p, file: file, dataStart: dataStart)
        let config = try makeConfig(kv: kv, tensors: &tensors, path: path)
        let tokenizer = try makeTokenizer(kv: kv, path: path)
        try tokenizer.validate(source: path, vocabSize: config.vocabSize)
        let checkpoint = Checkpoint(
            path: path, format: "gguf v\(p.version)", config: config, tokenizer: tokenizer,
            tensors: tensors, mappings: [file])
        try checkpoint.validateTensors()
        return checkpoint
    }

    /// The magic, version, counts and metadata; the parser is left at the tensor infos.
    private static func header(file: MappedFile) throws(EdgeLMError) -> (Parser, [String: GGUFValue], alignment: Int) {
        let path = file.path
        guard file.bytes.count >= 4, Array(file.bytes[0..<4]) == Array("GGUF".utf8) else {
            throw .badMagic(path: path, found: file.bytes.prefix(4).map { String($0, radix: 16) }.joined(separator: " "))
        }
        var c = ByteCursor(file.bytes, offset: 4)
        let version: Int
        do { version = Int(try c.read(UInt32.self)) } catch { throw error.edgeError(path: path, field: "GGUF version") }
        guard (1...3).contains(version) else { throw .unsupportedVersion(path: path, version: version, supported: "GGUF 1, 2 and 3") }
        var p = Parser(path: path, c: c, version: version)
        let tensorCount = try p.count("tensor count")
        guard tensorCount <= Limits.maxTensors else { throw p.fail("tensor count", "\(tensorCount) exceeds \(Limits.maxTensors)") }
        p.tensorCount = tensorCount
        let kvCount = try p.count("metadata count")
        guard kvCount <= Limits.maxKeyValues else { throw p.fail("metadata count", "\(kvCount) exceeds \(Limits.maxKeyValues)") }
        var kv: [String: GGUFValue] = [:]
        for _ in 0..<kvCount {
            let key = try p.string("metadata key")
            let type = try p.u32("metadata '\(key)' type")
            kv[key] = try p.value(type: type, field: "metadata '\(key)'", allowArray: true)
        }
        var alignment = 32
        if let a = kv["general.alignment"] {
            guard let v = a.asInt, v > 0, v <= Limits.maxAlignment, v & (v - 1) == 0 else {
                throw p.fail("general.alignment", "must be a power of two up to \(Limits.maxAlignment)")
            }
            alignment = v
        }
        return (p, kv, alignment)
    }

    /// A tensor as the GGUF header describes it: ggml's dimension order, offset from the data section.
    private struct TensorInfo { let name: String; let dims: [Int]; let type: UInt32; let offset: Int }

    /// The tensor infos after the metadata, each checked for sane dimensions and an aligned offset inside the file.
    private static func tensorInfos(_ p: inout Parser, file: MappedFile, alignment: Int) throws(EdgeLMError) -> [TensorInfo] {
        var infos: [TensorInfo] = []
        for i in 0..<p.tensorCount {
            let name = try p.string("tensor \(i) name")
            let nd = Int(try p.u32("tensor '\(name)' n_dims"))
            guard (1...Limits.maxDims).contains(nd) else { throw p.fail("tensor '\(name)' n_dims", "\(nd) is outside 1...\(Limits.maxDims)") }
            var dims: [Int] = []
            var elements = 1
            for _ in 0..<nd {
                let d = try p.count("tensor '\(name)' dims")
                guard d > 0 else { throw p.fail("tensor '\(name)' dims", "dimension 0") }
                // Every type EdgeLM reads takes at least 4 bits per element; the exact size is checked per type below.
                let (m, o) = elements.multipliedReportingOverflow(by: d)
                guard !o, m <= file.bytes.count * 2 else { throw p.fail("tensor '\(name)' dims", "\(dims + [d]) holds more elements than the file has bytes") }
                elements = m
                dims.append(d)
            }
            let type = try p.u32("tensor '\(name)' type")
            let offset: UInt64
            do { offset = try p.c.read(UInt64.self) } catch { throw error.edgeError(path: file.path, field: "tensor '\(name)' offset") }
            guard offset < UInt64(file.bytes.count), Int(offset) % alignment == 0 else {
                throw p.fail("tensor '\(name)' offset", "\(offset) is past the end or not \(alignment)-aligned")
            }
            infos.append(TensorInfo(name: name, dims: dims, type: type, offset: Int(offset)))
        }
        return infos
    }

    /// The tensors by canonical name (no `.weight`), each of a type EdgeLM reads, inside the data section and
    /// overlapping no other.
    private static func sourceTensors(_ infos: [TensorInfo], p: Parser, file: MappedFile, dataStart: Int) throws(EdgeLMError) -> [String: SourceTensor] {
        let path = file.path, dataBytes = file.bytes.count - dataStart
        var tensors: [String: SourceTensor] = [:]
        var ranges: [(Int, Int, String)] = []
        for info in infos {
            let dtype: SourceDType
            switch info.type {
            case 0: dtype = .f32
            case 1: dtype = .f16
            case 30: dtype = .bf16
            default:
                guard let t = GGMLType(rawValue: info.type) else {
                    let supported = (["F32", "F16", "BF16"] + GGMLType.allCases.map(\.name)).joined(separator: ", ")
                    throw .unsupportedTensorType(
                        path: path, tensor: info.name, type: "GGML \(typeNames[info.type] ?? "type \(info.type)") (EdgeLM reads \(supported))")
                }
                guard info.dims[0] % t.blockValues == 0 else {
                    throw p.fail("tensor '\(info.name)'", "rows of \(info.dims[0]) values are not whole \(t.name) blocks of \(t.blockValues)")
                }
                dtype = .ggml(t)
            }
            let length = dtype.bytes(info.dims[0]) * info.dims.dropFirst().reduce(1, *)
            guard info.offset <= dataBytes, length <= dataBytes - info.offset else {
                throw .tensorOutOfBounds(path: path, tensor: info.name, offset: dataStart + info.offset, length: length, fileSize: file.bytes.count)
            }
            ranges.append((info.offset, length, info.name))
            let canonical = info.name.hasSuffix(".weight") ? String(info.name.dropLast(7)) : info.name
            let shape = info.dims.count == 2 ? [info.dims[1], info.dims[0]] : info.dims.reversed()
            let start = dataStart + info.offset
            guard tensors[canonical] == nil else { throw p.fail("tensor '\(info.name)'", "appears twice") }
            tensors[canonical] = SourceTensor(
                name: canonical, shape: Array(shape), dtype: dtype,
                bytes: UnsafeRawBufferPointer(rebasing: file.bytes[start..<(start + length)]))
        }
        ranges.sort { $0.0 < $1.0 }
        for (a, b) in zip(ranges, ranges.dropFirst()) where a.0 + a.1 > b.0 {
            throw .tensorsOverlap(path: path, first: a.2, second: b.2)
        }
        return tensors
    }

    /// The families read from GGUF, by `general.architecture`.
    static let families: [String: any ModelFamily.Type] = Dictionary(
        uniqueKeysWithValues: ModelFamilies.all.compactMap { f in f.ggufArchitecture.map { ($0, f) } })

    /// `<arch>.` keys that never change the computation.
    static let harmlessArchKeys: Set<String> = ["rope.scaling.finetuned", "tensor_data_layout"]

    private static func makeConfig(
        kv: [String: GGUFValue], tensors: inout [String: SourceTensor],
        path: String
    ) throws(EdgeLMError) -> ModelConfig {
        func fail(_ field: String, _ message: String) -> EdgeLMError { .invalidField(path: path, field: field, message: message) }
        guard let arch = kv["general.architecture"]?.asString else { throw fail("general.architecture", "missing") }
        guard let family = families[arch] else {
            throw fail("general.architecture", "'\(arch)' is not supported (\(families.keys.sorted().joined(separator: ", ")))")
        }
        var keys = GGUFKeys(prefix: arch, kv: kv, path: path)
        guard let embedding = tensors["token_embd"] else { throw .missingTensor(path: path, tensor: "token_embd.weight") }
        let heads = try keys.int("attention.head_count")
        let dim = try keys.int("embedding_length")
        var tied = tensors["output"] == nil
        if let output = tensors["output"], output.shape == embedding.shape, output.dtype == embedding.dtype,
            output.bytes.elementsEqual(embedding.bytes)
        {
            tied = true
            tensors["output"] = nil
        }
        let headDim = try keys.int("attention.key_length", default: heads > 0 ? dim / heads : 0)
        guard try keys.int("attention.value_length", default: headDim) == headDim else {
            throw keys.fail("attention.value_length", "value heads wider or narrower than key heads are not supported")
        }
        let rotated = try keys.int("rope.dimension_count", default: headDim)
        if rotated != headDim { throw keys.fail("rope.dimension_count", "partial rotary embedding (\(rotated) of \(headDim) dims) is not supported") }
        if try keys.int("expert_count", default: 0) > 0 { throw keys.fail("expert_count", "mixture-of-experts models are not supported") }
        _ = try keys.int("expert_used_count", default: 0)
        if let v = keys.value("vocab_size"), v.asInt != embedding.shape[0] {
            throw keys.fail("vocab_size", "\(v.asInt ?? -1) differs from the embedding's \(embedding.shape[0]) rows")
        }
        var config = ModelConfig(
            architecture: family.name, dim: dim, layers: try keys.int("block_count"), heads: heads,
            kvHeads: try keys.int("attention.head_count_kv", default: heads), ffnDim: try keys.int("feed_forward_length"),
            vocabSize: embedding.shape[0], contextLength: try keys.int("context_length"),
            ropeTheta: Float(try keys.float("rope.freq_base", default: 10000)), ropeLayout: family.ggufRopeLayout,
            normEpsilon: Float(try keys.float("attention.layer_norm_rms_epsilon", default: 1e-5)), tiedOutput: tied)
        if heads > 0, headDim != dim / heads || dim % heads != 0 { config.headDimension = headDim }
        guard (2...4096).contains(config.headDim), config.headDim % 2 == 0 else {
            throw keys.fail("attention.key_length", "head width \(config.headDim) must be even and in 2...4096")
        }
        guard (1...ModelConfig.Limits.maxLayers).contains(config.layers) else {
            throw keys.fail("block_count", "\(config.layers) is outside 1...\(ModelConfig.Limits.maxLayers)")
        }
        config.rotary.tables = [try ropeTable(config: config, keys: &keys, tensors: &tensors)]
        try family.configureGGUF(&config, &keys, tensors: &tensors)
        try keys.finish(harmless: harmlessArchKeys)
        config = config.normalized()
        try config.validate(source: path)
        let expected = Set(config.tensorShapes.map(\.name))
        if let extra = tensors.keys.sorted().first(where: { !expected.contains($0) }) {
            throw fail("tensor '\(extra)'", "is not a tensor of a '\(arch)' model with this configuration (it would be ignored)")
        }
        return config
    }

    /// The rotary table: `<arch>.rope.scaling.*` keys, or llama.cpp's `rope_freqs` tensor of per-frequency
    /// divisors (how its converter stores Llama 3.1 scaling), which is removed from the tensors.
    private static func ropeTable(config: ModelConfig, keys: inout GGUFKeys, tensors: inout [String: SourceTensor]) throws(EdgeLMError) -> RopeTable {
        let theta = Double(config.ropeTheta), dims = config.headDim, path = keys.path
        var table = RopeTable.standard(theta: theta, dims: dims)
        let type = keys.value("rope.scaling.type")?.asString ?? "none"
        switch type {
        case "none":
            break
        case "linear":
            table = try RopeTable.compute(
                kind: .linear, theta: theta, dims: dims, parameters: ["factor": try keys.float("rope.scaling.factor", default: 1)],
                contextLength: config.contextLength, field: "\(keys.prefix).rope.scaling", path: path)
        default:
            throw keys.fail("rope.scaling.type", "'\(type)' is not supported (none, linear\(type == "yarn" ? RopeKind.yarnRefusal : ""))")
        }
        if let freqs = tensors.removeValue(forKey: "rope_freqs") {
            guard type == "none", freqs.shape == [dims / 2] else {
                throw .invalidField(path: path, field: "tensor 'rope_freqs'", message: "must be \(dims / 2) frequency divisors, without rope.scaling.type")
            }
            let divisors = try freqs.floats(path: path)
            guard divisors.allSatisfy({ $0 > 0 }) else { throw .invalidField(path: path, field: "tensor 'rope_freqs'", message: "divisors must be > 0") }
            table = RopeTable(
                kind: .factors, theta: theta, parameters: [:],
                inverseFrequencies: zip(table.inverseFrequencies, divisors).map { $0 / Double($1) }, attentionFactor: 1)
        }
        return table
    }

    /// `tokenizer.` keys that never change what a prompt encodes to or where generation ends (named chat
    /// templates, `tokenizer.chat_template.NAME`, are read as harmless too).
    static let harmlessTokenizerKeys: Set<String> = [
        "ggml.padding_token_id", "ggml.unknown_token_id", "ggml.seperator_token_id", "ggml.cls_token_id", "ggml.mask_token_id",
        "ggml.prefix_token_id", "ggml.suffix_token_id", "ggml.middle_token_id", "ggml.fim_pre_token_id", "ggml.fim_suf_token_id",
        "ggml.fim_mid_token_id", "ggml.fim_pad_token_id", "ggml.fim_rep_token_id", "ggml.fim_sep_token_id", "ggml.token_type_count",
        "ggml.precompiled_charsmap", "huggingface.json",
    ]
}
