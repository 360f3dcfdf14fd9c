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

    /// Opens `path`; `verify` checks every tensor checksum first.
    public init(path: String, verify: Bool = false) throws(EdgeLMError) {
        let start = Date()
        let file = try ModelFile(path: path, verify: verify)
        self.file = file
        var storages: [TensorStorage] = []
        var decoded = 0
        func linear(_ name: String) throws(EdgeLMError) -> LinearWeight {
            let entry = try file.entry(name)
            let storage = try file.tensor(name)
            let weight = LinearWeight(storage: storage, layout: try entry.layout())
            if !weight.storage.isMapped { decoded += weight.storage.bytes.count }
            return weight
        }
        func vector(_ name: String) throws(EdgeLMError) -> UnsafePointer<Float> {
            let storage = try file.tensor(name)
            if !storage.isMapped { decoded += storage.bytes.count }
            storages.append(storage)
            return storage.bytes.baseAddress!.assumingMemoryBound(to: Float.self)
        }
        let config = file.metadata.config
        let embedding = try linear("token_embd")
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
        loadSeconds = Date().timeIntervalSince(start)
    }

    /// Weight bytes read to produce one token (every matrix once, plus one embedding row).
    public var weightBytesPerToken: Int {
        let perLayer = layers.first.map { l in [l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down].reduce(0) { $0 + $1.byteCount } } ?? 0
        return perLayer * layers.count + output.byteCount + embedding.byteCount / max(1, config.vocabSize)
    }
}
