/// Reads Karpathy's llama2.c float checkpoints (`run.c` legacy format) and their `tokenizer.bin`.
///
/// Checkpoint: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
/// vocab_size means an untied classifier), then f32 arrays: token embedding, attention norms, wq, wk, wv, wo,
/// FFN norms, w1 (gate), w2 (down), w3 (up), final norm, the legacy RoPE tables, and the classifier if untied.
enum Llama2CReader {
    static func checkpoint(file: MappedFile, tokenizerPath: String) throws(EdgeLMError) -> Checkpoint {
        let (config, tensors) = try parseModel(file)
        let tokenizer = try readTokenizer(try MappedFile(path: tokenizerPath), vocabSize: config.vocabSize)
        let checkpoint = Checkpoint(
            path: file.path, format: "llama2.c", config: config, tokenizer: tokenizer, tensors: tensors,
            mappings: [file])
        try checkpoint.validateTensors()
        return checkpoint
    }

    /// The configuration and tensor views of a checkpoint file.
    static func parseModel(_ file: MappedFile) throws(EdgeLMError) -> (ModelConfig, [String: SourceTensor]) {
        let path = file.path
        var c = ByteCursor(file.bytes)
        var h: [Int] = []
        do {
            for _ in 0..<7 { h.append(Int(try c.read(Int32.self))) }
        } catch {
            throw error.edgeError(path: path, field: "llama2.c header")
        }
        let (dim, hidden, layers, heads, kvHeads, signedVocab, seqLen) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6])
        let vocab = abs(signedVocab)
        for (field, v) in [
            ("dim", dim), ("hidden_dim", hidden), ("n_layers", layers), ("n_heads", heads),
            ("n_kv_heads", kvHeads), ("vocab_size", vocab), ("seq_len", seqLen),
        ] where v <= 0 {
            throw .invalidField(path: path, field: "llama2.c header \(field)", message: "\(v) must be positive")
        }
        let config = ModelConfig(
            dim: dim, layers: layers, heads: heads, kvHeads: kvHeads, ffnDim: hidden,
            vocabSize: vocab, contextLength: seqLen, ropeTheta: 10000, ropeLayout: .interleaved,
            normEpsilon: 1e-5, tiedOutput: signedVocab > 0)
        try config.validate(source: path)
        let headDim = dim / heads, kvDim = headDim * kvHeads

        // (canonical name pattern, shape, per-layer?) in file order.
        var order: [(String, [Int], Bool)] = [
            ("token_embd", [vocab, dim], false), ("attn_norm", [dim], true), ("attn_q", [dim, dim], true),
            ("attn_k", [kvDim, dim], true), ("attn_v", [kvDim, dim], true), ("attn_output", [dim, dim], true),
            ("ffn_norm", [dim], true), ("ffn_gate", [hidden, dim], true), ("ffn_down", [dim, hidden], true),
            ("ffn_up", [hidden, dim], true), ("output_norm", [dim], false),
            ("<rope tables>", [seqLen, headDim], false),
        ]
        if signedVocab < 0 { order.append(("output", [vocab, dim], false)) }
        let expected = 28 + order.reduce(0) { $0 + $1.1.reduce(1, *) * ($1.2 ? layers : 1) } * 4
        guard file.bytes.count == expected else {
            if file.bytes.count < expected {
                throw .truncated(path: path, field: "llama2.c weights", offset: 28, needed: expected - 28, available: file.bytes.count - 28)
            }
            throw .invalidField(path: path, field: "llama2.c weights", message: "file has \(file.bytes.count) bytes, the header implies \(expected)")
        }
        var tensors: [String: SourceTensor] = [:]
        var offset = 28
        for (name, shape, perLayer) in order {
            let bytes = shape.reduce(1, *) * 4
            for l in 0..<(perLayer ? layers : 1) {
                let canonical = perLayer ? "blk.\(l).\(name)" : name
                if name != "<rope tables>" {
                    tensors[canonical] = SourceTensor(
                        name: canonical, shape: shape, dtype: .f32,
                        bytes: UnsafeRawBufferPointer(rebasing: file.bytes[offset..<(offset + bytes)]))
                }
                offset += bytes
            }
        }
        return (config, tensors)
    }

    /// Reads a llama2.c `tokenizer.bin`: int32 max token length, then per token an f32 score, an int32
    /// length and the bytes. Spaces are mapped back to SentencePiece's U+2581 and the `<s>`/`</s>` pieces
    /// (exported as "\n<s>\n") to their plain names; token types are inferred.
    static func readTokenizer(_ file: MappedFile, vocabSize: Int) throws(EdgeLMError) -> TokenizerData {
        let path = file.path
        var c = ByteCursor(file.bytes)
        var pieces: [String] = [], scores: [Float] = [], types: [TokenType] = []
        try parsing(path: path, field: "tokenizer entry \(pieces.count)") {
            let maxLen = Int(try c.read(Int32.self))
            guard (1...TokenizerData.Limits.maxPieceBytes).contains(maxLen) else {
                throw EdgeLMError.invalidField(path: path, field: "max token length", message: "\(maxLen)")
            }
            for i in 0..<vocabSize {
                let score = try c.readFloat()
                let len = Int(try c.read(Int32.self))
                guard (0...maxLen).contains(len) else {
                    throw EdgeLMError.invalidField(path: path, field: "token \(i) length", message: "\(len) is outside 0...\(maxLen)")
                }
                guard let text = String(validating: try c.readBytes(len), as: UTF8.self) else {
                    throw EdgeLMError.invalidField(path: path, field: "token \(i)", message: "not valid UTF-8")
                }
                var piece = text.trimmingNewlines(ifWrapping: "<s>", "</s>")
                let type: TokenType
                if i == 0 {
                    type = .unknown
                } else if piece == "<s>" || piece == "</s>" {
                    type = .control
                } else if piece.isByteToken {
                    type = .byte
                } else {
                    type = .normal; piece = piece.replacingOccurrences(of: " ", with: "\u{2581}")
                }
                pieces.append(piece)
                scores.append(score)
                types.append(type)
            }
        }
        guard c.remaining == 0 else {
            throw .invalidField(path: path, field: "tokenizer", message: "\(c.remaining) bytes after \(vocabSize) tokens: vocabulary size mismatch")
        }
        return TokenizerData(
            kind: .sentencePieceBPE, pieces: pieces, scores: scores, types: types,
            bos: pieces.firstIndex(of: "<s>"), eos: pieces.firstIndex(of: "</s>"), unk: 0, pad: nil,
            addDummyPrefix: true, removeExtraWhitespaces: false, byteFallback: types.contains(.byte))
    }
}

extension String {
    /// "\n<s>\n" -> "<s>" for the given names; other strings unchanged.
    fileprivate func trimmingNewlines(ifWrapping names: String...) -> String {
        for n in names where self == "\n\(n)\n" { return n }
        return self
    }
}
