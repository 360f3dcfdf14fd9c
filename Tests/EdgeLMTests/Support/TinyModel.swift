import EdgeLM

/// A tiny random Llama checkpoint written as GGUF, for tests that need a model with chosen properties.
enum TinyModel {
    static let config = ModelConfig(
        dim: 64, layers: 2, heads: 4, kvHeads: 2, ffnDim: 96, vocabSize: 300, contextLength: 32,
        ropeLayout: .interleaved, normEpsilon: 1e-5, tiedOutput: true)

    static var tokenizer: TokenizerData {
        var pieces = ["<unk>", "<s>", "</s>"]
        var types: [TokenType] = [.unknown, .control, .control]
        for b in 0..<256 {
            pieces.append("<0x" + String(b, radix: 16, uppercase: true).leftPadded(2) + ">")
            types.append(.byte)
        }
        let words = ["\u{2581}a", "\u{2581}b", "ab", "\u{2581}ab", "ba"]
        var i = 0
        while pieces.count < config.vocabSize {
            pieces.append(i < words.count ? words[i] : "w\(i)")
            types.append(.normal)
            i += 1
        }
        var data = TokenizerData(
            kind: .sentencePieceBPE, pieces: pieces, scores: (0..<pieces.count).map { -Float($0) }, types: types,
            bos: 1, eos: 2, unk: 0, pad: nil, addDummyPrefix: true, removeExtraWhitespaces: false,
            byteFallback: true)
        // What a GGUF reader records for a SentencePiece vocabulary that does not say (llama.cpp's defaults).
        data.addBOS = true
        data.addEOS = false
        return data
    }

    /// A GGUF with normal(0, 0.02) weights; `poison` replaces one weight of that tensor with NaN.
    static func gguf(version: Int = 3, seed: UInt64 = 1, poison: String? = nil) -> GGUFWriter {
        var rng = TestRandom(seed: seed)
        var w = GGUFWriter(version: version)
        w.setLlama(config, tokenizer: tokenizer)
        for (name, shape) in config.tensorShapes {
            var values = name.hasSuffix("_norm") ? [Float](repeating: 1, count: shape.reduce(1, *)) : rng.normals(shape.reduce(1, *), std: 0.02)
            if name == poison { values[values.count / 2] = .nan }
            w.addTensor(name + ".weight", shape: shape, type: .f32, values: values)
        }
        return w
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
