import ArgumentParser
import EdgeLM
import Foundation

/// Sampling options shared by `generate` and `chat`.
struct SamplingOptions: ParsableArguments {
    @Option(name: .long, parsing: .unconditional, help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0.8

    @Option(name: .long, help: "Keep the k most likely tokens (0: off).")
    var topK: Int = 40

    @Option(name: .long, help: "Nucleus sampling threshold in (0, 1] (1: off).")
    var topP: Float = 0.95

    @Option(name: .long, help: "Drop tokens below min-p times the top probability (0: off).")
    var minP: Float = 0.05

    @Option(name: .long, help: "Repetition penalty (1: off).")
    var repeatPenalty: Float = 1.0

    @Option(name: .long, help: "Tokens the repetition penalty looks back over.")
    var repeatWindow: Int = 64

    @Option(name: .long, parsing: .unconditional, help: "Random seed; -1 or none: from the clock.")
    var seed: Int64?

    @Option(
        name: .long, parsing: .unconditional, help: "Subtract this from the logits of tokens in the repetition window (OpenAI's presence penalty, in [-2, 2]).")
    var presencePenalty: Float = 0

    @Option(name: .long, parsing: .unconditional, help: "Subtract this per occurrence in the repetition window (OpenAI's frequency penalty, in [-2, 2]).")
    var frequencyPenalty: Float = 0

    /// These options as library sampling parameters (seed from the clock when not given).
    var parameters: SamplingParameters {
        var p = SamplingParameters()
        p.temperature = temperature
        p.topK = topK
        p.topP = topP
        p.minP = minP
        p.repetitionPenalty = repeatPenalty
        p.repetitionWindow = repeatWindow
        p.presencePenalty = presencePenalty
        p.frequencyPenalty = frequencyPenalty
        p.seed = seed.flatMap { $0 >= 0 ? UInt64($0) : nil } ?? UInt64(Date().timeIntervalSince1970 * 1e6)
        return p
    }
}
