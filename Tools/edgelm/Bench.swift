import ArgumentParser
import EdgeLM
import Foundation

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prompt processing (pp) and generation (tg) speed, llama-bench style.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(
        name: .short, parsing: .unconditional,
        help: ArgumentHelp("Prompt tokens processed as one batch: one pp test per value of a list (128,512; 0 skips pp).", valueName: "n"))
    var p = IntList([128])

    @Option(
        name: .short, parsing: .unconditional,
        help: ArgumentHelp("Tokens generated one at a time: one tg test per value of a list (32,128; 0 skips tg).", valueName: "n"))
    var n = IntList([64])

    @Option(name: .short, help: "Timed repetitions (after one warm-up).")
    var r = 5

    @Option(name: .long, help: "Tokens already in the KV cache when each test starts (llama-bench -d).")
    var depth = 0

    @Option(name: .short, help: "Output format: md (a table), csv or json (with every sample; one object, or an array with several -t values).")
    var o: BenchFormat = .md

    @Flag(name: .long, help: "Same as -o json.")
    var json = false

    @Flag(
        name: .long,
        help:
            "Where a generated token's time goes: -n tokens generated one at a time (one count), each stage of the forward pass, sampling and the rest, in ms per token with the thread-pool jobs each stage ran (a table, or -o json). With -n 0, where a prompt's goes: -p tokens (one count) as one batch, per prompt token."
    )
    var breakdown = false

    enum BenchFormat: String, ExpressibleByArgument, CaseIterable {
        case md, csv, json
    }

    /// The output format (--json is -o json).
    private var output: BenchFormat { json ? .json : o }

    @OptionGroup var speculation: SpeculationOptions

    @OptionGroup(title: "Constrained mode") var constraint: ConstraintOptions

    @Option(
        name: [.customShort("f"), .long],
        help:
            "Speculative mode (with --lookup or --draft) or constrained mode (with --json-schema, --grammar, --regex or --json-object): the prompt text file to generate up to -n tokens from, greedily, plain and speculative (or constrained) runs alternating."
    )
    var promptFile: String?

    @Flag(
        name: .long,
        help: "Speculative mode: generate all -n tokens, past the model's end of text or turn (by default a run ends there, as generation does)."
    )
    var ignoreEOS = false

    func run() async throws {
        try await runReportingErrors {
            let lm = try modelOptions.open(threads: modelOptions.threadList?.values.first)
            let constrained = try constraint.constraint()
            let modes = speculation.lookup || speculation.draft != nil || constrained != nil
            if modes || breakdown, let list = modelOptions.threadList, list.values.count > 1 {
                throw EdgeLMError.invalidArgument("-t \(list): the speculative, constrained and breakdown benches take one thread count")
            }
            if breakdown {
                if modes { throw EdgeLMError.invalidArgument("--breakdown times plain decoding: it takes no --lookup, --draft or constraint") }
                try runBreakdown(lm)
                return
            }
            if let spec = try speculation.apply(to: lm) {
                try runSpeculative(lm, spec)
                return
            }
            if ignoreEOS { throw EdgeLMError.invalidArgument("--ignore-eos belongs to the speculative mode: give --lookup or --draft MODEL too") }
            if let c = constrained {
                try runConstrained(lm, c)
                return
            }
            if promptFile != nil {
                throw EdgeLMError.invalidArgument(
                    "-f is the prompt of the speculative or constrained mode: give --lookup, --draft MODEL, --json-schema, --grammar, --regex or --json-object too"
                )
            }
            try runTests(first: lm)
        }
    }
}

extension Bench {
    /// The pp and tg tests: each value of -p and -n, for each thread count of -t (the model opened again per count).
    private func runTests(first: LanguageModel) throws {
        let counts: [Int?] = modelOptions.threadList.map { $0.values.map(Optional.some) } ?? [nil]
        let name = (modelOptions.model as NSString).lastPathComponent
        var runs: [BenchJSON] = []
        for (k, threads) in counts.enumerated() {
            let lm = k == 0 ? first : try modelOptions.open(quiet: true, threads: threads)
            let bandwidth = Benchmark.memoryBandwidth(pool: lm.session.pool)
            var results: [BenchResult] = []
            for (pp, tg) in p.values.map({ ($0, 0) }) + n.values.map({ (0, $0) }) {
                var options = BenchOptions()
                options.promptTokens = pp
                options.generatedTokens = tg
                options.repetitions = r
                options.depth = depth
                results += try Benchmark.run(lm, options: options, bandwidthGBps: bandwidth) { showProgress("t\(lm.session.pool.threadCount) \($0)") }
            }
            let summary = ModelSummary(file: lm.model.file, verified: false)
            runs.append(
                BenchJSON(
                    model: name, fileBytes: summary.fileBytes, parameters: summary.parameters,
                    type: lm.model.file.metadata.quantization.type.rawValue, bitsPerWeight: summary.bitsPerWeight,
                    threads: lm.session.pool.threadCount, kernels: lm.session.level.name,
                    kvType: lm.session.kvTypeName, kvBytes: lm.session.kvCacheBytes, context: lm.session.contextLength, depth: depth,
                    memoryBandwidthGBps: bandwidth, weightBytesPerToken: lm.model.weightBytesPerToken, results: results))
            if output == .md {
                Terminal.error(
                    "memory read bandwidth (probe, \(lm.session.pool.threadCount) threads): \(format(bandwidth, 1)) GB/s; "
                        + "weights per token \(formatBytes(lm.model.weightBytesPerToken)); kernels \(lm.session.level), \(lm.session.activationGranularity) activations; "
                        + "KV cache \(lm.session.kvTypeName), \(lm.session.contextLength) positions, \(formatBytes(lm.session.kvCacheBytes))")
            }
        }
        if Terminal.isTTY, output != .json { Terminal.write("\r                          \r") }
        switch output {
        case .json:
            _ = try runs.count == 1 ? printedJSON(runs[0]) : printedJSON(runs)
        case .csv:
            print("model,size_bytes,params,type,bits_per_weight,kernels,threads,test,tps_mean,tps_stddev,weight_gbps,bandwidth_ratio")
            for run in runs {
                for res in run.results {
                    print(
                        [
                            run.model, "\(run.fileBytes)", "\(run.parameters)", run.type, format(run.bitsPerWeight, 4), run.kernels, "\(run.threads)",
                            res.test, format(res.tpsMean, 3), format(res.tpsStddev, 3), res.weightGBps.map { format($0, 3) } ?? "",
                            res.bandwidthRatio.map { format($0, 4) } ?? "",
                        ].map(Self.csvField).joined(separator: ","))
                }
            }
        case .md:
            print("| model | size | params | type | bits/w | kernels | threads | test | t/s | weights GB/s | of bandwidth |")
            print("|---|---:|---:|---|---:|---|---:|---|---:|---:|---:|")
            for run in runs {
                for res in run.results {
                    let gb = res.weightGBps.map { format($0, 2) } ?? ""
                    let ratio = res.bandwidthRatio.map { format($0 * 100, 1) + "%" } ?? ""
                    print(
                        "| \(run.model) | \(formatBytes(run.fileBytes)) | \(format(Double(run.parameters) / 1e6, 2)) M | "
                            + "\(run.type) | \(format(run.bitsPerWeight, 2)) | \(run.kernels) | \(run.threads) | \(res.test) | "
                            + "\(format(res.tpsMean, 2)) ± \(format(res.tpsStddev, 2)) | \(gb) | \(ratio) |")
                }
            }
        }
    }

    /// A CSV field, quoted when it holds a comma, quote or newline.
    static func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    /// The prompt of the speculative and constrained modes (`-f`), checked against `-n` and the context.
    private func modePrompt(_ lm: LanguageModel, mode: String) throws -> [Int] {
        guard let promptFile else { throw EdgeLMError.invalidArgument("\(mode) bench needs a prompt: -f FILE (the text to continue)") }
        let text = try readText(promptFile, what: "the prompt file")
        let n = try modeTokens(mode)
        let prompt = lm.encode(text)
        guard prompt.count + n <= lm.session.contextLength else {
            throw EdgeLMError.invalidArgument("the prompt (\(prompt.count) tokens) and -n \(n) exceed the context of \(lm.session.contextLength)")
        }
        return prompt
    }

    /// The one -n value of the speculative and constrained modes (lists and -o csv are for the pp/tg tests).
    func modeTokens(_ mode: String) throws -> Int {
        try singleCount(n, option: "-n", of: "the \(mode) bench", noun: "count", mode: mode)
    }

    /// The prompt breakdown's length: one -p count of at least one token.
    func promptTokens() throws -> Int {
        try singleCount(p, option: "-p", of: "the prompt breakdown (--breakdown -n 0)", noun: "prompt length", mode: "breakdown")
    }

    /// The one value of `list` (given as `option`) a mode takes, at least one token; modes print md or json, not csv.
    private func singleCount(_ list: IntList, option: String, of user: String, noun: String, mode: String) throws -> Int {
        guard list.values.count == 1, let tokens = list.values.first, tokens >= 1 else {
            throw EdgeLMError.invalidArgument("\(option) \(list): \(user) takes one \(noun) of at least one token")
        }
        if output == .csv { throw EdgeLMError.invalidArgument("-o csv: the \(mode) bench prints a table (md) or json") }
        return tokens
    }

    /// Shows a stage of a mode's runs on the terminal (not with --json).
    func showProgress(_ stage: String) {
        if Terminal.isTTY, output != .json { Terminal.write("\r\(stage)        ") }
    }

    /// Clears the progress line; with --json prints `result` as JSON and returns true.
    func printedJSON<T: Encodable>(_ result: T) throws -> Bool {
        if Terminal.isTTY, output != .json { Terminal.write("\r                          \r") }
        guard output == .json else { return false }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(result), as: UTF8.self))
        return true
    }

    /// The constrained mode: unconstrained and constrained greedy generation from the prompt file, alternating.
    private func runConstrained(_ lm: LanguageModel, _ c: OutputConstraint) throws {
        let prompt = try modePrompt(lm, mode: "constrained")
        let result = try Benchmark.constrained(lm, prompt: prompt, tokens: try modeTokens("constrained"), constraint: c, repetitions: r, progress: showProgress)
        if try printedJSON(result) { return }
        print("| model | vocabulary | threads | test | plain t/s | constrained t/s | ratio | mask p50 | mask p99 | mask max |")
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        print(
            "| \((modelOptions.model as NSString).lastPathComponent) | \(lm.config.vocabSize) | \(lm.session.pool.threadCount) | "
                + "tg\(result.tokens) after \(prompt.count) | \(format(result.plainMedian, 2)) | \(format(result.constrainedMedian, 2)) | "
                + "\(format(result.ratio, 2))x | \(format(result.maskPercentile(50) * 1e6, 0)) µs | \(format(result.maskPercentile(99) * 1e6, 0)) µs | "
                + "\(format(result.maskPercentile(100) * 1e6, 0)) µs |")
        Terminal.error("constrained output (last run): \(result.output)")
    }

    /// The speculative mode: plain and speculative greedy generation from the prompt file, alternating.
    private func runSpeculative(_ lm: LanguageModel, _ spec: SpeculationParameters) throws {
        let prompt = try modePrompt(lm, mode: "speculative")
        let result = try Benchmark.speculative(
            lm, prompt: prompt, tokens: try modeTokens("speculative"), speculation: spec, repetitions: r, ignoreEOS: ignoreEOS,
            progress: showProgress)
        if try printedJSON(result) { return }
        let drafter = speculation.draft.map { "draft " + ($0 as NSString).lastPathComponent } ?? "lookup"
        print("| model | drafter | threads | test | plain t/s | speculative t/s | ratio | drafted | kept | identical |")
        print("|---|---|---:|---|---:|---:|---:|---:|---:|---|")
        print(
            "| \((modelOptions.model as NSString).lastPathComponent) | \(drafter) | \(lm.session.pool.threadCount) | tg\(result.tokens) after \(prompt.count) | "
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
        case kvType = "kv_type"
        case kvBytes = "kv_bytes"
        case fileBytes = "file_bytes"
        case bitsPerWeight = "bits_per_weight"
        case memoryBandwidthGBps = "memory_bandwidth_gbps"
        case weightBytesPerToken = "weight_bytes_per_token"
    }
}
