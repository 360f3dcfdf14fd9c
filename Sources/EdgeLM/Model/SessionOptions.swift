/// Which positions of a forward batch produce logits.
public enum LogitsSelection: Sendable {
    /// Only the last token (generation).
    case last
    /// Every token (perplexity).
    case all
}

/// How activations are quantized for the integer kernels.
public enum ActivationGranularity: String, Sendable, CaseIterable {
    /// int8 with one scale per block of 32 values (the default, as llama.cpp's Q8 activations: see
    /// docs/QUANTIZATION.md for the measured drift).
    case block32
    /// int8 with one scale per row (vector); kept to measure what per-block scales buy.
    case row
    /// `block32`, then a second int8 pass over what the first rounded away (the residual, quantized the same way):
    /// every matrix product runs twice (measured 0.6x the speed of `block32` on SmolLM2-135M) and activations carry
    /// about 15 bits instead of 8. Quantized weights then compute what their f32 dequantization computes (SmolLM2's
    /// Q4_1 GGUF kept as q4o: mean KLD 3e-8 against its f32 file, against 0.0021 with `block32`).
    case residual
}

/// How a session is set up. `InferenceSession.init(model:options:pool:)` takes it and `InferenceSession.options`
/// gives back what a session was made with, so another one (a server slot, a drafter) is made the same way.
public struct SessionOptions: Sendable, Equatable {
    /// Worker threads (nil: physical cores); ignored when a pool is shared.
    public var threads: Int?
    /// Tokens per forward batch.
    public var maxBatch = 64
    /// Integer kernel level (programs pass `KernelLevel.selected()`, read once where they start).
    public var level = KernelLevel.detected
    /// How the KV cache stores keys and values.
    public var keyType: KVCacheType = .q8
    public var valueType: KVCacheType = .q8
    /// KV cache positions (nil: the model's context, capped so that the session fits the memory budget).
    public var contextLength: Int?
    /// How activations are quantized for the integer kernels.
    public var activationGranularity: ActivationGranularity = .block32
    /// q8 keys stored with their offset and channel scales (see `KVCache`; off only to measure what they buy).
    public var keySmoothing = true

    /// Options with these values (the defaults when none is given).
    public init(
        threads: Int? = nil, maxBatch: Int = 64, level: KernelLevel = .detected, keyType: KVCacheType = .q8, valueType: KVCacheType = .q8,
        contextLength: Int? = nil, activationGranularity: ActivationGranularity = .block32, keySmoothing: Bool = true
    ) {
        self.threads = threads
        self.maxBatch = maxBatch
        self.level = level
        self.keyType = keyType
        self.valueType = valueType
        self.contextLength = contextLength
        self.activationGranularity = activationGranularity
        self.keySmoothing = keySmoothing
    }
}
