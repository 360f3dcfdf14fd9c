import EdgeLM
import Foundation

extension Bench {
    /// The breakdown mode: ms per generated token (with -n 0, per token of a -p prompt batch) in each stage of the
    /// forward pass, sampling and the rest.
    func runBreakdown(_ lm: LanguageModel) throws {
        let prompt = n.values == [0]
        let tokens = prompt ? try promptTokens() : try modeTokens("breakdown")
        showProgress("breakdown: \(r + 1) runs of \(tokens) tokens")
        let result = try Benchmark.breakdown(lm, tokens: tokens, repetitions: r, depth: depth, promptBatch: prompt)
        if try printedJSON(result) { return }
        let session = lm.session
        print(
            "\((modelOptions.model as NSString).lastPathComponent): \(prompt ? "pp" : "tg")\(tokens)\(depth > 0 ? " @ d\(depth)" : ""), \(session.pool.threadCount) threads, "
                + "kernels \(session.level), \(result.tokens) tokens timed: \(format(result.msPerToken, 3)) ms per token (\(format(1000 / result.msPerToken, 1)) t/s)"
        )
        print("")
        print("| stage | ms/token | share | jobs/token |")
        print("|---|---:|---:|---:|")
        for row in result.rows {
            let jobs = row.jobsPerToken > 0 ? format(row.jobsPerToken, 1) : ""
            print("| \(row.stage) | \(format(row.msPerToken, 3)) | \(format(100 * row.msPerToken / result.msPerToken, 1))% | \(jobs) |")
        }
        print("")
        print("Greedy decoding's argmax instead of sampling: \(format(result.argmaxMsPerToken, 3)) ms per token.")
    }
}
