import Foundation

/// Writes float GGUF files (versions 1-3): the format any engine reads, used for synthetic checkpoints
/// (benchmarks, tests) so that EdgeLM and other engines can be fed the very same weights.
public struct GGUFWriter {
    /// A metadata value.
    public enum Value {
        case u32(UInt32)
        case i32(Int32)
        case f32(Float)
        case bool(Bool)
        case string(String)
        case strings([String])
        case f32s([Float])
        case i32s([Int32])
        case bools([Bool])
    }

    /// Tensor element type.
    public enum TensorType: UInt32 {
        case f32 = 0
        case f16 = 1
    }

    private var metadata: [(String, Value)] = []
    private var tensors: [(name: String, shape: [Int], type: TensorType, values: () -> [Float])] = []
    /// GGUF version to write (1 uses 32-bit counts).
    public var version: Int
    /// Data alignment.
    public var alignment = 32

    /// An empty file of `version`.
    public init(version: Int = 3) { self.version = version }

    /// Adds a metadata key.
    public mutating func set(_ key: String, _ value: Value) { metadata.append((key, value)) }

    /// Adds a tensor with its row-major shape ([rows, cols] or [n]); GGUF stores dims fastest first.
    public mutating func addTensor(_ name: String, shape: [Int], type: TensorType, values: [Float]) {
        precondition(values.count == shape.reduce(1, *))
        tensors.append((name, shape, type, { values }))
    }

    /// Adds a tensor whose values are produced only when the file is written (large synthetic models).
    public mutating func addTensor(_ name: String, shape: [Int], type: TensorType, generator: @escaping () -> [Float]) {
        tensors.append((name, shape, type, generator))
    }

    /// Metadata of a Llama-shaped model under architecture name `a`, with its vocabulary: SentencePiece, or
    /// byte-level BPE (`gpt2`) with merges and the split named `pre`.
    public mutating func setLlama(_ c: ModelConfig, tokenizer t: TokenizerData, architecture a: String = "llama", pre: String = "llama-bpe") {
        set("general.architecture", .string(a))
        set("\(a).context_length", .u32(UInt32(c.contextLength)))
        set("\(a).embedding_length", .u32(UInt32(c.dim)))
        set("\(a).block_count", .u32(UInt32(c.layers)))
        set("\(a).feed_forward_length", .u32(UInt32(c.ffnDim)))
        set("\(a).rope.dimension_count", .u32(UInt32(c.headDim)))
        set("\(a).attention.head_count", .u32(UInt32(c.heads)))
        set("\(a).attention.head_count_kv", .u32(UInt32(c.kvHeads)))
        set("\(a).rope.freq_base", .f32(c.ropeTheta))
        set("\(a).attention.layer_norm_rms_epsilon", .f32(c.normEpsilon))
        if t.kind == .mergesBPE {
            set("tokenizer.ggml.model", .string("gpt2"))
            set("tokenizer.ggml.pre", .string(pre))
            set("tokenizer.ggml.merges", .strings(t.merges ?? []))
        } else {
            set("tokenizer.ggml.model", .string("llama"))
            set("tokenizer.ggml.scores", .f32s(t.scores))
        }
        set("tokenizer.ggml.tokens", .strings(t.pieces))
        set("tokenizer.ggml.token_type", .i32s(t.types.map { Int32($0.rawValue) }))
        if let bos = t.bos { set("tokenizer.ggml.bos_token_id", .u32(UInt32(bos))) }
        if let eos = t.eos { set("tokenizer.ggml.eos_token_id", .u32(UInt32(eos))) }
        if let unk = t.unk { set("tokenizer.ggml.unknown_token_id", .u32(UInt32(unk))) }
        if let addBOS = t.addBOS { set("tokenizer.ggml.add_bos_token", .bool(addBOS)) }
        if let addEOS = t.addEOS { set("tokenizer.ggml.add_eos_token", .bool(addEOS)) }
        if t.preTokenizer?.addPrefixSpace == true { set("tokenizer.ggml.add_space_prefix", .bool(true)) }
        for (key, id) in zip(["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"], t.endOfGeneration ?? []) { set(key, .u32(UInt32(id))) }
        if let template = t.chatTemplate { set("tokenizer.chat_template", .string(template)) }
    }

    /// The file's bytes.
    public func encoded() -> [UInt8] {
        var out = header()
        for (i, t) in tensors.enumerated() {
            out += tensorBytes(i, t.values())
        }
        return out
    }

    /// Header, metadata, tensor directory and the padding before the first tensor.
    private func header() -> [UInt8] {
        var out: [UInt8] = Array("GGUF".utf8)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func count(_ n: Int) { if version == 1 { put(UInt32(n)) } else { put(UInt64(n)) } }
        func string(_ s: String) {
            count(s.utf8.count)
            out.append(contentsOf: s.utf8)
        }
        put(UInt32(version))
        count(tensors.count)
        count(metadata.count)
        for (key, value) in metadata {
            string(key)
            switch value {
            case let .u32(v): put(UInt32(4)); put(v)
            case let .i32(v): put(UInt32(5)); put(v)
            case let .f32(v): put(UInt32(6)); put(v.bitPattern)
            case let .bool(v): put(UInt32(7)); put(UInt8(v ? 1 : 0))
            case let .string(v): put(UInt32(8)); string(v)
            case let .strings(v): put(UInt32(9)); put(UInt32(8)); count(v.count); v.forEach(string)
            case let .f32s(v): put(UInt32(9)); put(UInt32(6)); count(v.count); v.forEach { put($0.bitPattern) }
            case let .i32s(v): put(UInt32(9)); put(UInt32(5)); count(v.count); v.forEach { put($0) }
            case let .bools(v): put(UInt32(9)); put(UInt32(7)); count(v.count); v.forEach { put(UInt8($0 ? 1 : 0)) }
            }
        }
        var offset = 0
        for t in tensors {
            string(t.name)
            put(UInt32(t.shape.count))
            for d in t.shape.reversed() { count(d) }
            put(t.type.rawValue)
            put(UInt64(offset))
            offset += paddedSize(t.shape.reduce(1, *) * (t.type == .f32 ? 4 : 2))
        }
        while out.count % alignment != 0 { out.append(0) }
        return out
    }

    private func paddedSize(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// Tensor `i`'s payload with its alignment padding.
    private func tensorBytes(_ i: Int, _ values: [Float]) -> [UInt8] {
        let t = tensors[i]
        precondition(values.count == t.shape.reduce(1, *), "tensor \(t.name) has \(values.count) values for shape \(t.shape)")
        let size = t.type == .f32 ? 4 : 2
        var out = [UInt8](repeating: 0, count: paddedSize(values.count * size))
        out.withUnsafeMutableBytes { buf in
            for (j, v) in values.enumerated() {
                if t.type == .f32 {
                    buf.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: j * 4, as: UInt32.self)
                } else {
                    buf.storeBytes(of: HalfFloat.fromFloat(v).littleEndian, toByteOffset: j * 2, as: UInt16.self)
                }
            }
        }
        return out
    }

    /// Writes the file to `path`, one tensor at a time (atomically: a temporary file renamed into place).
    public func write(to path: String) throws(EdgeLMError) {
        let temporary = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: nil), let handle = FileHandle(forWritingAtPath: temporary) else {
            throw .io(path: path, message: "cannot create the output file")
        }
        do {
            try handle.write(contentsOf: header())
            for (i, t) in tensors.enumerated() { try handle.write(contentsOf: tensorBytes(i, t.values())) }
            try handle.synchronize()
            try handle.close()
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            try FileManager.default.moveItem(atPath: temporary, toPath: path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw .io(path: path, message: "cannot write: \(error.localizedDescription)")
        }
    }
}
