import ArgumentParser
import EdgeLM
import Foundation

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prompt processing (pp) and generation (tg) speed, llama-bench style.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .short, help: "Prompt tokens processed as one batch (0 skips pp).")
    var p = 128

    @Option(name: .short, help: "Tokens generated one at a time (0 skips tg).")
    var n = 64

    @Option(name: .short, help: "Timed repetitions (after one warm-up).")
    var r = 5

    @Option(name: .long, help: "Tokens already in the KV cache when each test starts (llama-bench -d).")
    var depth = 0

    @Flag(name: .long, help: "Print JSON with every sample.")
    var json = false

    @OptionGroup var speculation: SpeculationOptions

    @OptionGroup(title: "Constrained mode") var constraint: ConstraintOptions

    @Option(name: [.customShort("f"), .long], help: "Speculative mode (with --lookup or --draft) or constrained mode (with --json-schema, --grammar, --regex or --json-object): the prompt text file to generate up to -n tokens from, greedily, plain and speculative (or constrained) runs alternating.")
    var promptFile: String?

    func run() async throws {
        try await runReportingErrors {
            let lm = try modelOptions.open()
            if let spec = try speculation.apply(to: lm) {
                try runSpeculative(lm, spec)
                return
            }
            if let c = try constraint.constraint() {
                try runConstrained(lm, c)
                return
            }
            if promptFile != nil { throw EdgeLMError.invalidArgument("-f is the prompt of the speculative or constrained mode: give --lookup, --draft MODEL, --json-schema, --grammar, --regex or --json-object too") }
            var options = BenchOptions()
            options.promptTokens = p
            options.generatedTokens = n
            options.repetitions = r
            options.depth = depth
            let bandwidth = Benchmark.memoryBandwidth(pool: lm.session.pool)
            let results = try Benchmark.run(lm, options: options, bandwidthGBps: bandwidth) { stage in
                if Terminal.isTTY, !json { Terminal.write("\r\(stage)        ") }
            }
            if Terminal.isTTY, !json { Terminal.write("\r                          \r") }
            let summary = ModelSummary(file: lm.model.file, verified: false)
            let name = (modelOptions.model as NSString).lastPathComponent
            if json {
                let out = BenchJSON(model: name, fileBytes: summary.fileBytes, parameters: summary.parameters,
                                    type: lm.model.file.metadata.quantization.type.rawValue, bitsPerWeight: summary.bitsPerWeight,
                                    threads: lm.session.pool.threadCount, kernels: lm.session.level.name,
                                    kvType: lm.session.kvTypeName, kvBytes: lm.session.kvCacheBytes, context: lm.session.contextLength, depth: depth,
                                    memoryBandwidthGBps: bandwidth, weightBytesPerToken: lm.model.weightBytesPerToken, results: results)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(out), as: UTF8.self))
                return
            }
            print("| model | size | params | type | bits/w | kernels | threads | test | t/s | weights GB/s | of bandwidth |")
            print("|---|---:|---:|---|---:|---|---:|---|---:|---:|---:|")
            for res in results {
                let gb = res.weightGBps.map { format($0, 2) } ?? ""
                let ratio = res.bandwidthRatio.map { format($0 * 100, 1) + "%" } ?? ""
                print("| \(name) | \(formatBytes(summary.fileBytes)) | \(format(Double(summary.parameters) / 1e6, 2)) M | "
                      + "\(lm.model.file.metadata.quantization.type.rawValue) | \(format(summary.bitsPerWeight, 2)) | "
                      + "\(lm.session.level.name) | \(lm.session.pool.threadCount) | \(res.test) | \(format(res.tpsMean, 2)) ± \(format(res.tpsStddev, 2)) | \(gb) | \(ratio) |")
            }
            Terminal.error("memory read bandwidth (probe, \(lm.session.pool.threadCount) threads): \(format(bandwidth, 1)) GB/s; "
                           + "weights per token \(formatBytes(lm.model.weightBytesPerToken)); kernels \(lm.session.level), \(lm.session.activationGranularity) activations; "
                           + "KV cache \(lm.session.kvTypeName), \(lm.session.contextLength) positions, \(formatBytes(lm.session.kvCacheBytes))")
        }
    }
}

extension Bench {
    /// The speculative mode: plain and speculative greedy generation from the prompt file, alternating.
    /// The prompt of the speculative and constrained modes (`-f`), checked against `-n` and the context.
    private func modePrompt(_ lm: LanguageModel, mode: String) throws -> [Int] {
        guard let promptFile else { throw EdgeLMError.invalidArgument("\(mode) bench needs a prompt: -f FILE (the text to continue)") }
        guard let data = FileManager.default.contents(atPath: promptFile) else { throw EdgeLMError.io(path: promptFile, message: "cannot read the prompt file") }
        guard let text = String(validating: data, as: UTF8.self) else { throw EdgeLMError.invalidInput("\(promptFile): the prompt file is not valid UTF-8") }
        guard n >= 1 else { throw EdgeLMError.invalidArgument("-n \(n): the \(mode) bench generates at least one token") }
        let prompt = lm.encode(text)
        guard prompt.count + n <= lm.session.contextLength else {
            throw EdgeLMError.invalidArgument("the prompt (\(prompt.count) tokens) and -n \(n) exceed the context of \(lm.session.contextLength)")
        }
        return prompt
    }

    /// Shows a stage of a mode's runs on the terminal (not with --json).
    private func showProgress(_ stage: String) {
        if Terminal.isTTY, !json { Terminal.write("\r\(stage)        ") }
    }

    /// Clears the progress line; with --json prints `result` as JSON and returns true.
    private func printedJSON<T: Encodable>(_ result: T) throws -> Bool {
        if Terminal.isTTY, !json { Terminal.write("\r                          \r") }
        guard json else { return false }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(result), as: UTF8.self))
        return true
    }

    /// The constrained mode: unconstrained and constrained greedy generation from the prompt file, alternating.
    private func runConstrained(_ lm: LanguageModel, _ c: OutputConstraint) throws {
        let prompt = try modePrompt(lm, mode: "constrained")
        let result = try Benchmark.constrained(lm, prompt: prompt, tokens: n, constraint: c, repetitions: r, progress: showProgress)
        if try printedJSON(result) { return }
        print("| model | vocabulary | threads | test | plain t/s | constrained t/s | ratio | mask p50 | mask p99 | mask max |")
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        print("| \((modelOptions.model as NSString).lastPathComponent) | \(lm.config.vocabSize) | \(lm.session.pool.threadCount) | "
              + "tg\(result.tokens) after \(prompt.count) | \(format(result.plainMedian, 2)) | \(format(result.constrainedMedian, 2)) | "
              + "\(format(result.ratio, 2))x | \(format(result.maskPercentile(50) * 1e6, 0)) µs | \(format(result.maskPercentile(99) * 1e6, 0)) µs | "
              + "\(format(result.maskPercentile(100) * 1e6, 0)) µs |")
        Terminal.error("constrained output (last run): \(result.output)")
    }

    private func runSpeculative(_ lm: LanguageModel, _ spec: SpeculationParameters) throws {
        let prompt = try modePrompt(lm, mode: "speculative")
        let result = try Benchmark.speculative(lm, prompt: prompt, tokens: n, speculation: spec, repetitions: r, progress: showProgress)
        if try printedJSON(result) { return }
        let drafter = speculation.draft.map { "draft " + ($0 as NSString).lastPathComponent } ?? "lookup"
        print("| model | drafter | threads | test | plain t/s | speculative t/s | ratio | drafted | kept | identical |")
        print("|---|---|---:|---|---:|---:|---:|---:|---:|---|")
        print("| \((modelOptions.model as NSString).lastPathComponent) | \(drafter) | \(lm.session.pool.threadCount) | tg\(result.tokens) after \(prompt.count) | "
              + "\(format(result.plainMedian, 2)) | \(format(result.speculativeMedian, 2)) | \(format(result.speedup, 2))x | \(result.drafted) | "
              + "\(result.accepted) (\(format(100 * result.acceptanceRate, 1))%) | \(result.identical ? "yes" : "NO") |")
    }
}

struct BenchJSON: Encodable {
    let model: String
    let fileBytes: Int
    let parameters: Int
    let type: String
    let bitsPerWeight: Double
    let threads: Int
    let kernels: String
    let kvType: String
    let kvBytes: Int
    let context: Int
    let depth: Int
    let memoryBandwidthGBps: Double
    let weightBytesPerToken: Int
    let results: [BenchResult]

    enum CodingKeys: String, CodingKey {
        case model, parameters, type, threads, kernels, results, context, depth
        case kvType = "kv_type", kvBytes = "kv_bytes"
        case fileBytes = "file_bytes", bitsPerWeight = "bits_per_weight", memoryBandwidthGBps = "memory_bandwidth_gbps"
        case weightBytesPerToken = "weight_bytes_per_token"
    }
}
