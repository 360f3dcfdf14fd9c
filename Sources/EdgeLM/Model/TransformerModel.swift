import Foundation

/// Weights of one transformer block; the optional ones exist in the families whose config asks for them.
struct LayerWeights: @unchecked Sendable {
    let attnNorm: UnsafePointer<Float>  // [dim]
    let wq: LinearWeight  // [qDim, dim]
    let wk: LinearWeight  // [kvDim, dim]
    let wv: LinearWeight  // [kvDim, dim]
    let wo: LinearWeight  // [dim, qDim]
    let ffnNorm: UnsafePointer<Float>  // [dim]
    let gate: LinearWeight  // [ffn, dim]
    let up: LinearWeight  // [ffn, dim]
    let down: LinearWeight  // [dim, ffn]
    let qBias, kBias, vBias: UnsafePointer<Float>?  // [qDim], [kvDim], [kvDim] (qkvBias)
    let qNorm, kNorm: UnsafePointer<Float>?  // [headDim] each (qkNorm)
    let postAttnNorm, postFFNNorm: UnsafePointer<Float>?  // [dim] each (sandwichNorms)
}

/// A model of any supported family (one decoder-only transformer block shape, the families differing in what
/// `ModelConfig` says) opened from an `.edgelm` file. Raw payloads are used in place from the memory
/// map (loading costs O(metadata)); zstd payloads are decoded once, and f16 weights widened to f32.
public final class TransformerModel: @unchecked Sendable {
    /// The opened file.
    public let file: ModelFile
    /// Hyper-parameters.
    public var config: ModelConfig { file.metadata.config }
    /// Vocabulary data.
    public var tokenizerData: TokenizerData { file.metadata.tokenizer }
    let embedding: LinearWeight  // [vocab, dim]
    let output: LinearWeight  // [vocab, dim] (the embedding when tied)
    let outputNorm: UnsafePointer<Float>  // [dim]
    let layers: [LayerWeights]
    private var storages: [TensorStorage] = []
    /// Seconds spent opening, validating and decoding.
    public let loadSeconds: Double
    /// Heap bytes holding decoded (zstd) or widened (f16) weights; 0 for a raw quantized or f32 file.
    public let decodedBytes: Int
    /// Heap bytes holding packed copies of q8/q4 matrices (`LinearWeight.pack(for:mapping:)`; their mapped pages
    /// are released).
    public let packedBytes: Int

    /// Opens `path`; `verify` checks every tensor checksum first. `level`: the kernel level whose sessions find the
    /// matrices packed for them where it has a packed kernel (`LinearWeight.pack(for:mapping:)`; default: the level
    /// `EDGELM_KERNELS` selects); sessions at other levels read the row-major matrices. `pack`: whether to pack
    /// (default: unless `EDGELM_PACK=0`); packing stops where the copies would pass half the physical memory, since
    /// they are heap memory where the mapped weights could be dropped and read again under memory pressure.
    public init(path: String, verify: Bool = false, level: KernelLevel? = nil, pack: Bool? = nil) throws(EdgeLMError) {
        let start = Date()
        let file = try ModelFile(path: path, verify: verify)
        self.file = file
        var storages: [TensorStorage] = []
        var decoded = 0
        let packLevel: KernelLevel
        if let level { packLevel = level } else { packLevel = try KernelLevel.selected() }
        let packing: Bool
        if let pack { packing = pack } else { packing = try Self.packingSelected() }
        var packBudget = packing ? Self.physicalMemory / 2 : 0, packed = 0
        /// A matrix of the products (packed for packLevel while the budget lasts) or the untied embedding table
        /// (looked up by row).
        func linear(_ name: String, product: Bool = true) throws(EdgeLMError) -> LinearWeight {
            let entry = try file.entry(name)
            let storage = try file.tensor(name)
            var weight = LinearWeight(storage: storage, layout: try entry.layout())
            if !weight.storage.isMapped { decoded += weight.storage.bytes.count }
            if product, let bytes = weight.packedByteCount(for: packLevel), bytes <= packBudget {
                weight.pack(for: packLevel, mapping: file.mapping)
                packBudget -= bytes
                packed += bytes
            }
            return weight
        }
        func vector(_ name: String) throws(EdgeLMError) -> UnsafePointer<Float> {
            let storage = try file.tensor(name)
            if !storage.isMapped { decoded += storage.bytes.count }
            storages.append(storage)
            return storage.bytes.baseAddress!.assumingMemoryBound(to: Float.self)
        }
        let config = file.metadata.config
        let embedding = try linear("token_embd", product: config.tiedOutput)
        self.embedding = embedding
        output = config.tiedOutput ? embedding : try linear("output")
        // A token reads one row of an untied table: only the rows used become resident.
        if !config.tiedOutput, embedding.storage.isMapped { file.mapping.adviseRandomAccess(embedding.storage.bytes) }
        outputNorm = try vector("output_norm")
        var layers: [LayerWeights] = []
        func optional(_ name: String, _ present: Bool?) throws(EdgeLMError) -> UnsafePointer<Float>? {
            present == true ? try vector(name) : nil
        }
        for l in 0..<config.layers {
            let p = "blk.\(l)."
            layers.append(
                LayerWeights(
                    attnNorm: try vector(p + "attn_norm"), wq: try linear(p + "attn_q"), wk: try linear(p + "attn_k"),
                    wv: try linear(p + "attn_v"), wo: try linear(p + "attn_output"), ffnNorm: try vector(p + "ffn_norm"),
                    gate: try linear(p + "ffn_gate"), up: try linear(p + "ffn_up"), down: try linear(p + "ffn_down"),
                    qBias: try optional(p + "attn_q.bias", config.attention.qkvBias), kBias: try optional(p + "attn_k.bias", config.attention.qkvBias),
                    vBias: try optional(p + "attn_v.bias", config.attention.qkvBias),
                    qNorm: try optional(p + "attn_q_norm", config.attention.qkNorm), kNorm: try optional(p + "attn_k_norm", config.attention.qkNorm),
                    postAttnNorm: try optional(p + "post_attention_norm", config.block.sandwichNorms),
                    postFFNNorm: try optional(p + "post_ffw_norm", config.block.sandwichNorms)))
        }
        self.layers = layers
        self.storages = storages
        decodedBytes = decoded
        packedBytes = packed
        loadSeconds = Date().timeIntervalSince(start)
    }

    /// Weight bytes read to produce one token (every matrix once, plus one embedding row).
    public var weightBytesPerToken: Int {
        let perLayer = layers.first.map { l in [l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down].reduce(0) { $0 + $1.byteCount } } ?? 0
        return perLayer * layers.count + output.byteCount + embedding.byteCount / max(1, config.vocabSize)
    }

    /// Whether `EDGELM_PACK` lets models pack their matrices: unset, empty or 1 yes, 0 no.
    static func packingSelected(environment: [String: String] = ProcessInfo.processInfo.environment) throws(EdgeLMError) -> Bool {
        switch environment["EDGELM_PACK"] ?? "" {
        case "", "1": return true
        case "0": return false
        case let other: throw .invalidArgument("EDGELM_PACK: expected 0 or 1, got '\(other)'")
        }
    }

    /// Bytes of physical memory.
    static let physicalMemory = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
}
