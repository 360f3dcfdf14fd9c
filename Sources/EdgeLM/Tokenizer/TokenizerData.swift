/// SentencePiece token types (the values GGUF's `tokenizer.ggml.token_type` uses).
public enum TokenType: Int, Codable, Sendable {
    case normal = 1
    case unknown = 2
    case control = 3
    case userDefined = 4
    case unused = 5
    case byte = 6
}

/// Which algorithm encodes text with the vocabulary.
public enum TokenizerKind: String, Codable, Sendable {
    /// SentencePiece BPE: merge the adjacent pair whose result has the highest score.
    case sentencePieceBPE
    /// Merge-list BPE (Hugging Face `tokenizer.json`): merge the pair with the lowest merge rank.
    case mergesBPE
}

/// A byte-level pre-tokenizer (GPT-2 / Llama 3): split text with a regular expression, then map every byte
/// to a printable character (the GPT-2 byte-to-unicode table) before merging.
public struct PreTokenizer: Codable, Sendable, Equatable {
    /// The splitting pattern (ICU regular expression).
    public var pattern: String
    /// Prepend a space to the text (ByteLevel `add_prefix_space`).
    public var addPrefixSpace: Bool

    /// Split out first, each match a word of its own, before `pattern` splits the text between them
    /// (a Hugging Face Split with Isolated behaviour ahead of the main one).
    public var isolate: String?

    /// GPT-2's pattern, the ByteLevel default.
    public static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    /// Llama 3's pattern (contractions case-insensitive, numbers in groups of up to three digits).
    public static let llama3Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    /// Qwen2's pattern: Llama 3's with every digit a word of its own.
    public static let qwen2Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The byte-level pre-tokenizers of GGUF's `tokenizer.ggml.pre` names that EdgeLM reads, as llama.cpp
    /// splits them.
    public static let llamaCppPreTokenizers: [String: PreTokenizer] = [
        "default": PreTokenizer(), "gpt-2": PreTokenizer(), "phi-2": PreTokenizer(), "llama-bpe": PreTokenizer(pattern: llama3Pattern),
        "llama3": PreTokenizer(pattern: llama3Pattern), "qwen2": PreTokenizer(pattern: qwen2Pattern),
        "deepseek-r1-qwen": PreTokenizer(pattern: qwen2Pattern),
        "smollm": PreTokenizer(isolate: #"\p{N}"#),
    ]

    /// The `tokenizer.ggml.pre` names whose vocabularies llama.cpp starts prompts with BOS for when the file
    /// does not say (`tokenizer.ggml.add_bos_token`).
    public static let llamaCppAddingBOS: Set<String> = ["llama-bpe", "llama3"]

    /// Creates a byte-level pre-tokenizer.
    public init(pattern: String = gpt2Pattern, addPrefixSpace: Bool = false, isolate: String? = nil) {
        self.pattern = pattern
        self.addPrefixSpace = addPrefixSpace
        self.isolate = isolate
    }
}

/// Everything needed to tokenize and detokenize, as stored in the model file.
public struct TokenizerData: Codable, Sendable, Equatable {
    /// Encoding algorithm.
    public var kind: TokenizerKind
    /// Token strings; SentencePiece marks spaces with U+2581.
    public var pieces: [String]
    /// Merge priorities for `sentencePieceBPE` (higher merges first).
    public var scores: [Float]
    /// Token types.
    public var types: [TokenType]
    /// Merge rules "left right" in priority order, for `mergesBPE`.
    public var merges: [String]?
    /// Beginning-of-sequence id.
    public var bos: Int?
    /// End-of-sequence id.
    public var eos: Int?
    /// Unknown-token id.
    public var unk: Int?
    /// Padding id.
    public var pad: Int?
    /// Prepend U+2581 to non-empty input (SentencePiece `add_dummy_prefix`).
    public var addDummyPrefix: Bool
    /// Strip leading/trailing spaces and collapse runs of spaces (SentencePiece `remove_extra_whitespaces`).
    public var removeExtraWhitespaces: Bool
    /// Characters outside the vocabulary become `<0xXX>` byte tokens.
    public var byteFallback: Bool
    /// How text is split and mapped before merging; nil means SentencePiece-style (no split, spaces to U+2581).
    public var preTokenizer: PreTokenizer?
    /// Consecutive unknown characters become a single unknown token (Hugging Face `fuse_unk`).
    public var fuseUnknown: Bool?
    /// Control tokens written literally in the text (e.g. "<|start_story|>") are recognised as those tokens,
    /// as Hugging Face tokenizers do with added special tokens.
    public var matchesSpecialTokens: Bool?
    /// The checkpoint's chat template (Jinja text from `tokenizer_config.json` or the GGUF's
    /// `tokenizer.chat_template`), kept so `ChatTemplate.recognise` can pick the prompt format.
    public var chatTemplate: String?
    /// Whether encoding a prompt puts BOS first (GGUF `tokenizer.ggml.add_bos_token`, Hugging Face
    /// `add_bos_token` or the post-processor's template). nil (files written before it was recorded) means yes.
    public var addBOS: Bool?
    /// Whether encoding a prompt appends EOS (GGUF `tokenizer.ggml.add_eos_token`, Hugging Face `add_eos_token`).
    public var addEOS: Bool?
    /// Tokens besides `eos` that end generation: end-of-turn and end-of-message ids (GGUF `eot_token_id`,
    /// `eom_token_id`; every id of `generation_config.json`'s `eos_token_id` list).
    public var endOfGeneration: [Int]?

    /// Whether prompts start with BOS (see `addBOS`; never without a BOS id).
    public var addsBOS: Bool { bos != nil && (addBOS ?? true) }
    /// Whether prompts end with EOS.
    public var addsEOS: Bool { eos != nil && (addEOS ?? false) }
    /// Every id that ends generation: `eos` and `endOfGeneration`, sorted.
    public var endOfGenerationIDs: [Int] { Array(Set((eos.map { [$0] } ?? []) + (endOfGeneration ?? []))).sorted() }

    /// Creates tokenizer data.
    public init(
        kind: TokenizerKind, pieces: [String], scores: [Float], types: [TokenType], merges: [String]? = nil,
        bos: Int?, eos: Int?, unk: Int?, pad: Int?, addDummyPrefix: Bool, removeExtraWhitespaces: Bool,
        byteFallback: Bool, preTokenizer: PreTokenizer? = nil, fuseUnknown: Bool? = nil,
        matchesSpecialTokens: Bool? = nil
    ) {
        self.kind = kind
        self.pieces = pieces
        self.scores = scores
        self.types = types
        self.merges = merges
        self.bos = bos
        self.eos = eos
        self.unk = unk
        self.pad = pad
        self.addDummyPrefix = addDummyPrefix
        self.removeExtraWhitespaces = removeExtraWhitespaces
        self.byteFallback = byteFallback
        self.preTokenizer = preTokenizer
        self.fuseUnknown = fuseUnknown
        self.matchesSpecialTokens = matchesSpecialTokens
    }

    /// Limits applied when reading untrusted files.
    public enum Limits {
        public static let maxPieceBytes = 4_096
        public static let maxMerges = 4 << 20
    }

    /// Checks sizes, ids and lengths.
    public func validate(source: String, vocabSize: Int) throws(EdgeLMError) {
        func bad(_ field: String, _ message: String) -> EdgeLMError {
            .invalidField(path: source, field: "tokenizer.\(field)", message: message)
        }
        guard pieces.count == vocabSize else {
            throw bad("pieces", "\(pieces.count) pieces, the model's vocabulary has \(vocabSize)")
        }
        guard scores.count == pieces.count else { throw bad("scores", "\(scores.count) scores for \(pieces.count) pieces") }
        guard types.count == pieces.count else { throw bad("types", "\(types.count) types for \(pieces.count) pieces") }
        if let i = pieces.firstIndex(where: { $0.utf8.count > Limits.maxPieceBytes }) {
            throw bad("pieces", "piece \(i) is longer than \(Limits.maxPieceBytes) bytes")
        }
        if let i = scores.firstIndex(where: { !$0.isFinite }) { throw bad("scores", "score \(i) is not finite") }
        for (field, id) in [("bos", bos), ("eos", eos), ("unk", unk), ("pad", pad)] + (endOfGeneration ?? []).map({ ("endOfGeneration", Optional($0)) }) {
            if let id, !(0..<vocabSize).contains(id) { throw bad(field, "id \(id) is outside the vocabulary 0..<\(vocabSize)") }
        }
        if let merges, merges.count > Limits.maxMerges { throw bad("merges", "\(merges.count) merges exceed \(Limits.maxMerges)") }
        if kind == .mergesBPE, merges == nil { throw bad("merges", "a merges-BPE tokenizer needs a merge list") }
    }
}
