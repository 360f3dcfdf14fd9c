import Foundation

/// Every reader of untrusted bytes, by name: the entry points that the fuzzers (Fuzz/) and the hardening
/// tests drive. A reader must return or throw `EdgeLMError` for any input; a trap, an out-of-bounds read
/// or an unbounded allocation is a bug.
public enum UntrustedInput: String, CaseIterable, Sendable {
    /// An `.edgelm` model file (all tensors decoded and checksums verified, tokenizer built).
    case edgelm
    /// A GGUF checkpoint (tokenizer built).
    case gguf
    /// A llama2.c checkpoint (without its tokenizer).
    case llama2c
    /// A llama2.c `tokenizer.bin` for a 512-piece vocabulary.
    case llama2cTokenizer
    /// A `.safetensors` file.
    case safetensors
    /// A Hugging Face `config.json`.
    case config
    /// A Hugging Face `tokenizer.json` for a 2,048-piece vocabulary (tokenizer built, a string encoded).
    case tokenizerJSON

    /// Parses `bytes` with this reader.
    public func parse(_ bytes: UnsafeRawBufferPointer) throws(EdgeLMError) {
        let file = MappedFile(copying: bytes, name: "<\(rawValue) input>")
        switch self {
        case .edgelm:
            let model = try ModelFile(mapping: file, verify: true)
            for entry in model.metadata.tensors { _ = try model.tensor(entry.name) }
            _ = try Tokenizer(data: model.metadata.tokenizer).encode("Once upon a time")
        case .gguf:
            let checkpoint = try GGUFReader.checkpoint(file: file)
            _ = try Tokenizer(data: checkpoint.tokenizer).encode("Once upon a time")
        case .llama2c:
            _ = try Llama2CReader.parseModel(file)
        case .llama2cTokenizer:
            _ = try Llama2CReader.readTokenizer(file, vocabSize: 512)
        case .safetensors:
            _ = try SafeTensors.read(file)
        case .config:
            _ = try HuggingFaceConfig.parse(Data(bytes), path: file.path).config.validate(source: file.path)
        case .tokenizerJSON:
            let data = try HuggingFaceTokenizer.parse(Data(bytes), path: file.path, tokenizerConfig: nil, vocabSize: 2048, bosId: 1, eosId: 2)
            try data.validate(source: file.path, vocabSize: 2048)
            _ = try Tokenizer(data: data).encode("Once upon a time, naïve 🙂")
        }
    }
}
