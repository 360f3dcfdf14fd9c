import ArgumentParser
import EdgeLM
import Foundation

struct Perplexity: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a model on a text, and with --reference its KL divergence from a float model.")

    @OptionGroup var options: ModelOptions

    @Option(name: .shortAndLong, help: "UTF-8 text file.")
    var file: String

    @Option(name: .long, help: "Tokens per window, BOS included.")
    var context = 256

    @Option(name: .long, help: "Most windows to evaluate (default: the whole text).")
    var chunks: Int?

    @Option(name: .long, help: "Reference model (normally the f32 file of the same checkpoint) for KL divergence.")
    var reference: String?

    @Flag(name: .long, help: "Score only the second half of each window, with llama-perplexity's windows (comparable with its figures).")
    var scoreSecondHalf = false

    @Flag(name: .long, help: "Print the report as JSON on stdout.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            if let chunks, chunks < 1 { throw EdgeLMError.invalidArgument("--chunks \(chunks): must be at least 1") }
            let text = try readText(file, what: "the text file")
            let lm = try options.open(context: context, quiet: json)
            // The reference is the float truth: its KV cache stays f32.
            let ref = try reference.map {
                try LanguageModel(
                    path: try ModelCache.resolve($0) { if !json { Terminal.error($0) } }, threads: try options.threads, keyType: .f32, valueType: .f32,
                    contextLength: context, level: lm.session.level)
            }
            let tokens = lm.tokenizer.encode(text)
            if !json { Terminal.error("\(file): \(text.utf8.count) bytes, \(tokens.count) tokens; windows of \(context)") }
            let report = try PerplexityEvaluator.run(
                model: lm, reference: ref, tokens: tokens,
                options: PerplexityOptions(
                    context: context, chunks: chunks,
                    scoreSecondHalf: scoreSecondHalf)
            ) { done, total, seconds in
                guard !json, Terminal.isTTY else { return }
                let eta = seconds / Double(done) * Double(total - done)
                Terminal.progress(done, total, "ETA \(format(eta, 1)) s")
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(PerplexityJSON(report)), as: UTF8.self))
                return
            }
            print(PerplexityText.render(report))
        }
    }
}

/// The report with the flat top-level keys scripts rely on.
struct PerplexityJSON: Encodable {
    let report: PerplexityReport
    init(_ r: PerplexityReport) { report = r }

    enum Keys: String, CodingKey {
        case tokens, ppl, ppl_uncertainty, reference_ppl, ppl_ratio, kld_mean, kld_p99, same_top1, report
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(report.tokens, forKey: .tokens)
        try c.encode(report.ppl.value, forKey: .ppl)
        try c.encode(report.ppl.uncertainty, forKey: .ppl_uncertainty)
        try c.encodeIfPresent(report.reference?.ppl.value, forKey: .reference_ppl)
        try c.encodeIfPresent(report.reference?.pplRatio.value, forKey: .ppl_ratio)
        try c.encodeIfPresent(report.reference?.kldMean.value, forKey: .kld_mean)
        try c.encodeIfPresent(report.reference?.kldPercentiles["99.0"], forKey: .kld_p99)
        try c.encodeIfPresent(report.reference?.sameTop1, forKey: .same_top1)
        try c.encode(report, forKey: .report)
    }
}

/// llama-perplexity style text output.
enum PerplexityText {
    static func render(_ r: PerplexityReport) -> String {
        func pm(_ e: Estimate, _ digits: Int) -> String { "\(format(e.value, digits)) ± \(format(e.uncertainty, digits))" }
        var cumulative = 0.0
        var running = r.perWindowMeanNLL.enumerated().map { i, nll -> String in
            cumulative += nll
            return "[\(i + 1)]\(format(exp(cumulative / Double(i + 1)), 4))"
        }.joined(separator: ",")
        running += "\n\nFinal estimate: PPL = \(pm(r.ppl, 4))  (\(r.tokens) tokens, \(r.windows) windows of \(r.context))"
        guard let c = r.reference else { return running }
        let p = c.kldPercentiles
        func pct(_ k: String) -> String { format(p[k] ?? 0, 6) }
        return running + """


            ====== Perplexity statistics ======
            Mean PPL(Q)                   : \(pm(r.ppl, 6))
            Mean PPL(base)                : \(pm(c.ppl, 6))
            Mean PPL(Q)/PPL(base)         : \(pm(c.pplRatio, 6))
            Mean ln(PPL(Q)/PPL(base))     : \(pm(c.lnPPLRatio, 6))
            Mean PPL(Q)-PPL(base)         : \(pm(c.pplDifference, 6))

            ====== KL divergence statistics ======
            Mean    KLD: \(pm(c.kldMean, 6))
            Maximum KLD: \(format(c.kldMax, 6))
            99.9%   KLD: \(pct("99.9"))
            99.0%   KLD: \(pct("99.0"))
            95.0%   KLD: \(pct("95.0"))
            90.0%   KLD: \(pct("90.0"))
            Median  KLD: \(pct("50.0"))
            10.0%   KLD: \(pct("10.0"))
             5.0%   KLD: \(pct("5.0"))
             1.0%   KLD: \(pct("1.0"))

            ====== Token probability statistics ======
            Mean    Δp: \(format(c.deltaPMean.value * 100, 3)) ± \(format(c.deltaPMean.uncertainty * 100, 3)) %
            RMS     Δp: \(format(c.deltaPRMS * 100, 3)) %
            Same top p: \(format(c.sameTop1 * 100, 3)) %
            """
    }
}
