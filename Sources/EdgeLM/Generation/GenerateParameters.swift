/// Everything that controls one generation.
public struct GenerateParameters: Sendable, Equatable {
    /// Most tokens to generate (0: only evaluate the prompt).
    public var maxTokens: Int = 256
    /// Token choice.
    public var sampling = SamplingParameters()
    /// Prepend the model's BOS token to the prompt: nil follows the model's tokenizer (`TokenizerData.addsBOS`).
    public var addBOS: Bool?
    /// Stop when the model produces its EOS token or another of its end-of-generation tokens
    /// (`TokenizerData.endOfGenerationIDs`).
    public var stopAtEOS = true
    /// Stop before any of these texts (matched across token boundaries; the text is not returned).
    public var stop: [String] = []
    /// Draft tokens and verify several per forward pass (nil: one token per pass). Output is unchanged: greedy
    /// decoding gives the same tokens, sampling the same distribution.
    public var speculation: SpeculationParameters?
    /// What the output must match (a JSON Schema, GBNF grammar or regular expression): tokens that cannot continue
    /// a valid output are masked at every step, and generation ends when the output is complete.
    public var constraint: OutputConstraint?
    /// Report each generated token's log-probability and this many most likely alternatives (0...20; nil: off).
    public var logprobs: Int?

    /// Default parameters.
    public init() {}

    /// Greedy decoding of up to `maxTokens` tokens.
    public static func greedy(maxTokens: Int) -> GenerateParameters {
        var p = GenerateParameters()
        p.maxTokens = maxTokens
        p.sampling.temperature = 0
        return p
    }

    /// Checks every field.
    public func validate() throws(EdgeLMError) {
        guard maxTokens >= 0 else { throw .invalidArgument("-n \(maxTokens): must be >= 0") }
        guard !stop.contains("") else { throw .invalidArgument("stop: an empty stop string would stop at once") }
        try sampling.validate()
        if let n = logprobs, !(0...20).contains(n) { throw .invalidArgument("top_logprobs \(n): must be in 0...20") }
        try speculation?.validate()
    }
}

/// Why generation stopped.
public enum StopReason: String, Sendable, Codable {
    /// The model produced EOS.
    case endOfSequence
    /// The text reached one of the stop strings.
    case stopString
    /// `maxTokens` were generated.
    case maxTokens
    /// The KV cache is full.
    case contextFull
    /// The consumer stopped listening (task cancelled).
    case cancelled
}

/// Statistics of a finished generation.
public struct GenerationInfo: Sendable {
    /// Prompt tokens (BOS included).
    public let promptTokens: Int
    /// Of those, the tokens evaluated (the rest were reused from the KV cache).
    public let promptTokensEvaluated: Int
    /// Seconds spent on the prompt.
    public let promptSeconds: Double
    /// Tokens generated.
    public let generatedTokens: Int
    /// Seconds spent generating them.
    public let generateSeconds: Double
    /// Why it stopped.
    public let stopReason: StopReason
    /// The generated ids.
    public let tokens: [Int]
    /// Tokens drafted for verification (0 without speculation).
    public var draftedTokens = 0
    /// Of those, the tokens the target model kept.
    public var acceptedTokens = 0
    /// With a constraint: seconds each step spent computing and applying the token mask.
    public var maskSeconds: [Double] = []
    /// With a constraint: tokens it forced, fed to the model in batches without a sample (`TokenStream.fastForward`).
    public var forcedTokens = 0

    /// Prompt tokens per second.
    public var promptTokensPerSecond: Double { Double(promptTokensEvaluated) / max(promptSeconds, 1e-9) }
    /// The share of drafted tokens kept (0 when nothing was drafted).
    public var acceptanceRate: Double { draftedTokens > 0 ? Double(acceptedTokens) / Double(draftedTokens) : 0 }
    /// Generated tokens per second.
    public var tokensPerSecond: Double { Double(generatedTokens) / max(generateSeconds, 1e-9) }
}

/// What a generation stream yields.
public enum Generation: Sendable {
    /// Newly complete text (never half a UTF-8 character).
    case text(String)
    /// The final statistics, yielded once at the end.
    case info(GenerationInfo)
}
