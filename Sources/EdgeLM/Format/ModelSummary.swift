import Foundation

/// A description of a model file for people (`text`) and machines (`Codable`, snake_case keys), as printed
/// by `edgelm inspect`.
public struct ModelSummary: Codable, Sendable {
    /// One tensor row.
    public struct Tensor: Codable, Sendable {
        public let name: String
        public let shape: [Int]
        public let scheme: TensorScheme
        public let groupSize: Int
        public let bytes: Int
        public let storedBytes: Int
        public let encoding: PayloadEncoding
        public let compressionRatio: Double
        public let bitsPerWeight: Double
        public let checksum: String

        enum CodingKeys: String, CodingKey {
            case name, shape, scheme, bytes, encoding, checksum
            case groupSize = "group_size"
            case storedBytes = "stored_bytes"
            case compressionRatio = "compression_ratio"
            case bitsPerWeight = "bits_per_weight"
        }
    }

    public let path: String
    public let formatVersion: Int
    public let config: ModelConfig
    public let tokenizer: TokenizerSummary
    public let provenance: Provenance
    public let quantization: QuantizationSettings
    public let tensors: [Tensor]
    /// Parameter count.
    public let parameters: Int
    /// File size.
    public let fileBytes: Int
    /// Bits per weight over the quantized attention and FFN matrices (codes + scales).
    public let bitsPerWeight: Double
    /// Bits per weight over all tensors, decoded.
    public let overallBitsPerWeight: Double
    /// True when every checksum was verified.
    public let checksumsVerified: Bool

    /// Vocabulary facts.
    public struct TokenizerSummary: Codable, Sendable {
        public let kind: TokenizerKind
        public let vocabSize: Int
        public let byteTokens: Int
        public let controlTokens: Int
        public let merges: Int
        public let bos: Int?
        public let eos: Int?
        public let unk: Int?
        public let addDummyPrefix: Bool
        public let removeExtraWhitespaces: Bool
        /// Whether prompts start with BOS and end with EOS.
        public let addBOS: Bool
        public let addEOS: Bool
        /// Every id that ends generation.
        public let endOfGeneration: [Int]
        /// The chat format recognised from the stored chat template: a `ChatTemplate` name, "unrecognised", or nil (no template).
        public let chatTemplate: String?
    }

    enum CodingKeys: String, CodingKey {
        case path, config, tokenizer, provenance, quantization, tensors, parameters
        case formatVersion = "format_version"
        case fileBytes = "file_bytes"
        case bitsPerWeight = "bits_per_weight"
        case overallBitsPerWeight = "overall_bits_per_weight"
        case checksumsVerified = "checksums_verified"
    }

    /// Summarises an opened file.
    public init(file: ModelFile, verified: Bool) {
        let meta = file.metadata
        path = file.path
        formatVersion = file.header.version
        config = meta.config
        let t = meta.tokenizer
        tokenizer = TokenizerSummary(
            kind: t.kind, vocabSize: t.pieces.count, byteTokens: t.types.filter { $0 == .byte }.count,
            controlTokens: t.types.filter { $0 == .control }.count, merges: t.merges?.count ?? 0,
            bos: t.bos, eos: t.eos, unk: t.unk, addDummyPrefix: t.addDummyPrefix,
            removeExtraWhitespaces: t.removeExtraWhitespaces, addBOS: t.addsBOS, addEOS: t.addsEOS,
            endOfGeneration: t.endOfGenerationIDs,
            chatTemplate: t.chatTemplate.map { ChatTemplate.recognise($0)?.rawValue ?? "unrecognised" })
        provenance = meta.provenance
        quantization = meta.quantization
        var rows: [Tensor] = []
        var matrixBytes = 0, matrixParams = 0, allBytes = 0, allParams = 0
        for e in meta.tensors {
            let layout = (try? e.layout())
            let raw = layout?.byteCount ?? e.length
            let n = e.shape.reduce(1, *)
            rows.append(
                Tensor(
                    name: e.name, shape: e.shape, scheme: e.scheme, groupSize: e.groupSize, bytes: raw,
                    storedBytes: e.length, encoding: e.encoding,
                    compressionRatio: Double(raw) / Double(max(1, e.length)),
                    bitsPerWeight: layout?.bitsPerWeight ?? 0, checksum: e.checksum))
            allBytes += raw
            allParams += n
            if TensorRole(name: e.name).isMatrix {
                matrixBytes += raw
                matrixParams += n
            }
        }
        tensors = rows
        parameters = allParams
        fileBytes = file.mapping.bytes.count
        bitsPerWeight = Double(matrixBytes * 8) / Double(max(1, matrixParams))
        overallBitsPerWeight = Double(allBytes * 8) / Double(max(1, allParams))
        checksumsVerified = verified
    }

    /// The human-readable report.
    public var text: String {
        var s = "\(path)  (EdgeLM format v\(formatVersion), \(fileBytes) bytes)\n"
        let c = config
        s += "config: \(c.architecture) dim \(c.dim), \(c.layers) layers, \(c.heads) heads / \(c.kvHeads) kv heads (head dim \(c.headDim)), "
        s += "FFN \(c.ffnDim), vocab \(c.vocabSize), context \(c.contextLength)\n"
        s +=
            "        RoPE \(c.ropeLayout.rawValue) \(ropeDescription), RMSNorm eps \(c.normEpsilon), output head \(c.tiedOutput ? "tied to embedding" : "separate")\n"
        let features = familyFeatures
        if !features.isEmpty { s += "        \(c.architecture): \(features.joined(separator: ", "))\n" }
        let t = tokenizer
        s += "tokenizer: \(t.kind.rawValue), \(t.vocabSize) pieces (\(t.byteTokens) byte, \(t.controlTokens) control)"
        s += t.merges > 0 ? ", \(t.merges) merges" : ""
        s += ", bos \(t.bos.map(String.init) ?? "-") eos \(t.eos.map(String.init) ?? "-") unk \(t.unk.map(String.init) ?? "-")"
        s += ", dummy prefix \(t.addDummyPrefix), collapse spaces \(t.removeExtraWhitespaces), chat template \(t.chatTemplate ?? "none")\n"
        s +=
            "           prompts: \(t.addBOS ? "BOS first" : "no BOS")\(t.addEOS ? ", EOS last" : ""); generation ends at \(t.endOfGeneration.map(String.init).joined(separator: ", "))\n"
        let q = quantization
        s += "quantization: \(q.type.rawValue), group \(q.groupSize == 0 ? "per channel" : String(q.groupSize)), embedding/output \(q.embeddingType.rawValue)"
        s += q.compression == .zstd ? ", zstd level \(q.zstdLevel ?? 0)" : ", raw payloads"
        if let c = q.calibration {
            let how =
                switch c.method {
                case .gptq: "scales and codes calibrated (GPTQ)"
                case .sequentialGPTQ: "scales and codes calibrated (sequential GPTQ with error compensation)"
                case .importance, nil: "scales calibrated"
                }
            s += ", \(q.type.rawValue) \(how) on \(c.tokens) tokens"
            s += " (\(c.windows) windows of \(c.context); text sha256 \(c.textSHA256))"
        }
        if let rules = q.tensorTypes { s += "\n        per-tensor types: \(rules.joined(separator: ", "))" }
        s += "\n"
        let p = provenance
        s += "provenance: \(p.sourceFile) (\(p.sourceFormat), sha256 \(p.sourceSHA256)), EdgeLM \(p.converterVersion), \(p.created)\n\n"
        s += "name                 shape          scheme  group   bytes      stored     ratio  bits/w\n"
        for r in tensors {
            let shape = r.shape.map(String.init).joined(separator: "x")
            s +=
                pad(r.name, 20) + " " + pad(shape, 14) + " " + pad(r.scheme.rawValue, 7) + " "
                + pad(r.scheme.isQuantized ? (r.groupSize == 0 ? "row" : String(r.groupSize)) : "-", 7)
            s +=
                " " + pad(String(r.bytes), 10) + " " + pad(String(r.storedBytes), 10) + " " + pad(fixed(r.compressionRatio, 2), 6) + " "
                + fixed(r.bitsPerWeight, 3) + "\n"
        }
        s += "\ntotal: \(parameters) parameters, \(fixed(bitsPerWeight, 3)) bits/weight in attention+FFN matrices, \(fixed(overallBitsPerWeight, 3)) overall"
        s += checksumsVerified ? "\nchecksums: all \(tensors.count) verified" : ""
        return s
    }

    /// The rotary tables: variant, base and parameters, and which layers use which.
    var ropeDescription: String {
        let tables = config.resolvedRopeTables.map { t -> String in
            let params = t.parameters.sorted { $0.key < $1.key }.map { "\($0.key) \(fixed($0.value, 4))" }
            let extra = params.isEmpty ? "" : " (\(params.joined(separator: ", ")))"
            return "\(t.kind.rawValue) theta \(fixed(t.theta, 0))\(extra)\(t.attentionFactor == 1 ? "" : " attention factor \(fixed(t.attentionFactor, 4))")"
        }
        guard tables.count > 1, let map = config.rotary.layerTable else { return tables.joined(separator: "; ") }
        return tables.enumerated().map { i, t in "\(t) for layers \(map.indices.filter { map[$0] == i }.map(String.init).joined(separator: ","))" }
            .joined(separator: "; ")
    }

    /// What the family adds to the Llama block, in words.
    var familyFeatures: [String] {
        let c = config
        var f: [String] = []
        if c.headDimension != nil { f.append("head dim \(c.headDim) (q width \(c.qDim))") }
        if c.attention.qkvBias == true { f.append("q/k/v biases") }
        if c.attention.qkNorm == true { f.append("q/k RMSNorm") }
        if c.block.sandwichNorms == true { f.append("post-attention and post-FFN norms") }
        if let a = c.block.activation, a != .silu { f.append(a == .geluTanh ? "GeGLU (tanh GELU)" : a.rawValue) }
        if let e = c.block.embeddingScale { f.append("embeddings x \(fixed(Double(e), 4))") }
        if let a = c.attention.scale { f.append("attention scale \(fixed(Double(a), 4))") }
        if let s = c.attention.softcap { f.append("attention soft-cap \(fixed(Double(s), 1))") }
        if let s = c.block.finalSoftcap { f.append("logit soft-cap \(fixed(Double(s), 1))") }
        if let w = c.attention.slidingWindow, let layers = c.attention.slidingLayers {
            f.append("sliding window \(w) on layers \(layers.indices.filter { layers[$0] }.map(String.init).joined(separator: ","))")
        }
        return f
    }

    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
    private func fixed(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }
}
