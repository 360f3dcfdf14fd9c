import ArgumentParser
import EdgeLM
import Foundation

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a prompt, streaming it to stdout.")

    @OptionGroup var options: ModelOptions

    @Option(name: .shortAndLong, help: "The prompt text.")
    var prompt: String?

    @Option(name: [.customShort("f"), .long], help: "Read the prompt from a UTF-8 file instead.")
    var promptFile: String?

    @Option(name: .short, parsing: .unconditional, help: "Most tokens to generate (0: evaluate the prompt only); -1: until the end of the text or the context.")
    var n: Int = 256

    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var speculation: SpeculationOptions

    @OptionGroup(title: "Constrained output") var constraint: ConstraintOptions

    @Flag(name: .long, help: "Verify tensor checksums before generating.")
    var verify = false

    @Flag(name: .long, help: "Print only the generated text: no prompt echo, no statistics.")
    var quiet = false

    @Flag(name: .customLong("no-display-prompt"), help: "Do not echo the prompt (statistics still go to stderr; llama.cpp's flag).")
    var noDisplayPrompt = false

    @Option(name: .long, help: ArgumentHelp("Stop before this text (repeatable; matched across tokens, not printed).", valueName: "text"))
    var stop: [String] = []

    func run() async throws {
        try await runReportingErrors {
            let text = try promptText()
            var params = GenerateParameters()
            guard n >= -1 else { throw EdgeLMError.invalidArgument("-n \(n): must be >= 0, or -1 for no limit") }
            params.maxTokens = n == -1 ? Int.max : n
            params.stop = stop
            params.sampling = sampling.parameters
            params.constraint = try constraint.constraint()
            try params.validate()
            if let threads = try options.threads, threads > ProcessInfo.processInfo.activeProcessorCount, !quiet {
                Terminal.error("warning: \(threads) threads on \(ProcessInfo.processInfo.activeProcessorCount) CPUs will oversubscribe them")
            }
            let lm = try options.open(verify: verify)
            params.speculation = try speculation.apply(to: lm)
            let tokens = lm.encode(text, addBOS: params.addBOS)
            guard tokens.count <= lm.session.contextLength else {
                throw EdgeLMError.invalidInput(
                    "the prompt is \(tokens.count) tokens, longer than the context of \(lm.session.contextLength) (raise it with -c)")
            }
            let stdout = FileHandle.standardOutput
            if !quiet, !noDisplayPrompt { stdout.write(Data(text.utf8)) }
            let info = try lm.generate(promptTokens: tokens, parameters: params) { _, piece in
                stdout.write(Data(piece.utf8))
                return true
            }
            stdout.write(Data("\n".utf8))
            guard !quiet else { return }
            if info.stopReason == .contextFull {
                Terminal.error("stopped: the context of \(lm.session.contextLength) tokens is full")
            }
            let mem = MemoryUsage.current()
            Terminal.error(
                """
                prompt: \(info.promptTokens) tokens, \(format(info.promptTokensPerSecond, 1)) t/s
                generated: \(info.generatedTokens) tokens, \(format(info.tokensPerSecond, 1)) t/s (stop: \(info.stopReason.rawValue))\(draftSummary(info).map { "\n\($0)" } ?? "")\(constraintSummary(info).map { "\n\($0)" } ?? "")
                load: \(format(lm.model.loadSeconds * 1000, 1)) ms\(lm.model.decodedBytes > 0 ? ", \(formatBytes(lm.model.decodedBytes)) decoded to the heap" : ""); \
                kernels: \(lm.session.level), \(lm.session.pool.threadCount) threads
                memory: \(mem.map { "anonymous \(formatBytes($0.anonymousBytes)), file-backed \(formatBytes($0.fileBackedBytes))" } ?? "n/a") \
                (KV cache \(lm.session.kvTypeName), \(lm.session.contextLength) positions: \(formatBytes(lm.session.kvCacheBytes)))
                """)
        }
    }

    private func promptText() throws -> String {
        switch (prompt, promptFile) {
        case (let p?, nil): return p
        case (nil, let path?):
            return try readText(path, what: "the prompt file")
        case (nil, nil): throw EdgeLMError.invalidArgument("give a prompt with -p TEXT or -f FILE")
        default: throw EdgeLMError.invalidArgument("give either -p or -f, not both")
        }
    }
}
