import Foundation

/// Random-weight checkpoints of real shapes, written as GGUF so that any engine can read the same weights:
/// normal(0, 0.02) matrices, norms of 1, a SentencePiece-style vocabulary of the shape's size.
public enum SyntheticCheckpoint {
    /// The benchmark shapes (Llama: vocabulary 32,000, the Llama-2 size; g270m: Gemma 3 270M's, a gemma3 GGUF
    /// whose 262,144 x 640 embedding is also the output head), and a tiny one for tests and fuzzing seeds.
    public enum Shape: String, CaseIterable, Sendable {
        case tiny, s15m, s110m, tl1b, g270m

        /// Hyper-parameters of the shape.
        public var config: ModelConfig {
            switch self {
            case .tiny:
                return ModelConfig(
                    dim: 64, layers: 2, heads: 4, kvHeads: 2, ffnDim: 96, vocabSize: 384, contextLength: 64,
                    ropeLayout: .interleaved, normEpsilon: 1e-5, tiedOutput: false)
            case .s15m:
                return ModelConfig(
                    dim: 288, layers: 6, heads: 6, kvHeads: 6, ffnDim: 768, vocabSize: 32000, contextLength: 256,
                    ropeLayout: .interleaved, normEpsilon: 1e-5, tiedOutput: false)
            case .s110m:
                return ModelConfig(
                    dim: 768, layers: 12, heads: 12, kvHeads: 12, ffnDim: 2048, vocabSize: 32000, contextLength: 1024,
                    ropeLayout: .interleaved, normEpsilon: 1e-5, tiedOutput: false)
            case .tl1b:
                return ModelConfig(
                    dim: 2048, layers: 22, heads: 32, kvHeads: 4, ffnDim: 5632, vocabSize: 32000, contextLength: 2048,
                    ropeLayout: .interleaved, normEpsilon: 1e-5, tiedOutput: false)
            case .g270m:
                var c = ModelConfig(
                    architecture: "gemma3", dim: 640, layers: 18, heads: 4, kvHeads: 1, ffnDim: 2048, vocabSize: 262_144,
                    contextLength: 32768, ropeTheta: 1_000_000, ropeLayout: .halves, normEpsilon: 1e-6, tiedOutput: true)
                c.headDimension = 256
                c.attention.qkNorm = true
                c.block.sandwichNorms = true
                return c
            }
        }

        /// Keys the architecture needs besides `GGUFWriter.setLlama`'s (Gemma 3 270M's head width, window and
        /// local RoPE base).
        var extraKeys: [(String, GGUFWriter.Value)] {
            guard self == .g270m else { return [] }
            return [
                ("gemma3.attention.key_length", .u32(256)), ("gemma3.attention.value_length", .u32(256)),
                ("gemma3.attention.sliding_window", .u32(512)), ("gemma3.rope.freq_base_swa", .f32(10000)),
            ]
        }
    }

    /// A vocabulary of `size` pieces: unk/bos/eos, the 256 byte tokens, printable ASCII, then filler words.
    public static func tokenizer(size: Int) -> TokenizerData {
        var pieces = ["<unk>", "<s>", "</s>"]
        var types: [TokenType] = [.unknown, .control, .control]
        for b in 0..<256 {
            pieces.append(String(format: "<0x%02X>", b))
            types.append(.byte)
        }
        for c in 0x21...0x7E { pieces.append(String(UnicodeScalar(UInt8(c)))); types.append(.normal) }
        pieces.append("\u{2581}")
        types.append(.normal)
        var i = 0
        while pieces.count < size {
            pieces.append("\u{2581}w\(i)")
            types.append(.normal)
            i += 1
        }
        return TokenizerData(
            kind: .sentencePieceBPE, pieces: pieces, scores: (0..<size).map { -Float($0) }, types: types,
            bos: 1, eos: 2, unk: 0, pad: nil, addDummyPrefix: true, removeExtraWhitespaces: false, byteFallback: true)
    }

    /// Writes `shape` as a GGUF file of `type` (f16 or f32) to `path`.
    public static func write(_ shape: Shape, type: GGUFWriter.TensorType, seed: UInt64 = 1, to path: String) throws(EdgeLMError) {
        let config = shape.config
        var writer = GGUFWriter()
        writer.setLlama(config, tokenizer: tokenizer(size: config.vocabSize), architecture: config.architecture)
        for (key, value) in shape.extraKeys { writer.set(key, value) }
        for (index, (name, dims)) in config.tensorShapes.enumerated() {
            let count = dims.reduce(1, *)
            let norm = name.hasSuffix("_norm")
            writer.addTensor(name + ".weight", shape: dims, type: norm ? .f32 : type) {
                norm ? [Float](repeating: 1, count: count) : normals(count, std: 0.02, seed: seed &* 1_000_003 &+ UInt64(index))
            }
        }
        try writer.write(to: path)
    }

    /// `count` normal(0, std) values (Box-Muller over SplitMix64), generated in parallel chunks.
    static func normals(_ count: Int, std: Float, seed: UInt64) -> [Float] {
        let chunk = 1 << 20
        let chunks = (count + chunk - 1) / chunk
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { buffer in
            let dst = UncheckedSendable(buffer)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                var rng = SplitMix64(seed: seed ^ (UInt64(c) &* 0x9E37_79B9_7F4A_7C15))
                let lo = c * chunk, hi = min(count, lo + chunk)
                var i = lo
                while i < hi {
                    let u1 = max(Float(rng.next() >> 40) / Float(1 << 24), 1e-7), u2 = Float(rng.next() >> 40) / Float(1 << 24)
                    let r = (-2 * log(u1)).squareRoot() * std
                    dst.value[i] = r * cos(2 * .pi * u2)
                    if i + 1 < hi { dst.value[i + 1] = r * sin(2 * .pi * u2) }
                    i += 2
                }
            }
        }
        return out
    }
}
