import ArgumentParser
import EdgeLM

/// Speculative decoding options shared by `generate`, `chat`, `serve` and `bench`.
struct SpeculationOptions: ParsableArguments {
    @Flag(
        name: .long, help: "Draft by prompt lookup: propose what followed the last few tokens earlier in the text (strong when the output repeats the input).")
    var lookup = false

    @Option(
        name: .long, help: "Draft with this model (same vocabulary; for example the same checkpoint at fewer bits), verified several tokens per forward pass.")
    var draft: String?

    @Option(name: .long, help: "Most tokens drafted per verification (the length adapts to the acceptance).")
    var draftMax: Int = 8

    @Option(name: .long, help: "Shortest suffix prompt lookup matches.")
    var lookupMin: Int = 2

    @Option(name: .long, help: "Longest suffix prompt lookup matches (tried first).")
    var lookupMax: Int = 4

    /// The speculation these options ask for (nil: none), with the draft model loaded into `lm` when one is named.
    func apply(to lm: LanguageModel) throws -> SpeculationParameters? {
        if lookup, draft != nil { throw EdgeLMError.invalidArgument("give either --lookup or --draft, not both") }
        var spec: SpeculationParameters
        if let draft {
            try lm.loadDraft(path: try ModelCache.resolve(draft) { Terminal.error($0) })
            spec = SpeculationParameters(source: .model)
        } else if lookup {
            spec = SpeculationParameters(source: .lookup)
        } else {
            return nil
        }
        spec.maxDraft = draftMax
        guard lookupMin >= 1, lookupMin <= lookupMax else {
            throw EdgeLMError.invalidArgument("--lookup-min \(lookupMin) --lookup-max \(lookupMax): need 1 <= min <= max")
        }
        spec.ngram = lookupMin...lookupMax
        try spec.validate()
        return spec
    }
}

/// "drafted N tokens, M kept (P%)" for a generation that speculated; nil for one that did not.
func draftSummary(_ info: GenerationInfo) -> String? {
    guard info.draftedTokens > 0 else { return nil }
    return "drafted \(info.draftedTokens) tokens, \(info.acceptedTokens) kept (\(format(100 * info.acceptanceRate, 1))%)"
}
