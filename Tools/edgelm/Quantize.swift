import Foundation
import ArgumentParser
import EdgeLM

struct Quantize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a checkpoint (Hugging Face folder, GGUF v1-v3 float or quantized, llama2.c .bin) into an EdgeLM model file.",
        discussion: """
            Families: \(ModelConfig.familyNames) from Hugging Face \
            folders; GGUF files of architecture \(ModelConfig.ggufArchitectures) (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, IQ4_NL). \
            Settings EdgeLM does not implement are refused by name. Q8_0 -> q8 and Q4_0 -> q4 keep the GGUF's codes \
            and scales (q8 from an all-Q8_0 file defaults to groups of 32 for that reason). --type keep (the default \
            for a GGUF with quantized tensors) stores each tensor in the scheme that holds it best and prints, per \
            source type, the scheme it became.
            """)

    @Argument(help: "Input checkpoint: a Hugging Face folder, a GGUF file, or a llama2.c .bin with --tokenizer.")
    var input: String

    @Option(name: .shortAndLong, help: "Output .edgelm file.")
    var output: String

    @Option(
        name: .long,
        help:
            "Weight type of the attention and FFN matrices: keep (each tensor as the source stores it, as far as a scheme holds it; the default for a quantized GGUF), f32, f16, q8, q4, q4a (4-bit with a zero point per group), q4n (4-bit non-uniform levels): q4a and q4n drift less at the same size; and the schemes that hold GGUF blocks: q4o (Q4_1, Q4_K), iq4nl (IQ4_NL), q5o (Q5_0, Q5_1, Q5_K), q6 (Q6_K)."
    )
    var type: TypeChoice?

    /// `--type`: keep, or a scheme.
    enum TypeChoice: ExpressibleByArgument {
        case keep
        case scheme(TensorScheme)

        init?(argument: String) {
            if argument == "keep" { self = .keep } else if let s = TensorScheme(rawValue: argument) { self = .scheme(s) } else { return nil }
        }

        static var allValueStrings: [String] { ["keep"] + TensorScheme.allCases.map(\.rawValue) }
    }

    @Option(name: .long, help: "Weights per scale group along a row; 0 = one scale per row. Default: q8 0, q4, q4a and q4n 32.")
    var groupSize: Int?

    @Option(name: .long, help: "Type of the token embedding and output head. Default: same as --type, q8 for 4-bit files.")
    var embeddingType: TensorScheme?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Another type for matching matrices, PATTERN=TYPE[:GROUP] ('blk.0.*=q8', '*.ffn_down=q4:64'); repeatable, first match wins.", valueName: "rule"))
    var tensorType: [String] = []

    @Option(name: .long, help: "llama2.c tokenizer.bin (needed for llama2.c checkpoints).")
    var tokenizer: String?

    @Option(
        name: .long, help: "UTF-8 text to calibrate 4-bit scales on: the float model's activations weigh each weight's error. Never the text you evaluate on.")
    var calibrate: String?

    @Option(name: .long, help: "Tokens of the calibration text to use (windows of 256).")
    var calibrationTokens = 16_384

    @Flag(name: .long, help: "With --calibrate: round q4, q4a, q4n or q8 codes with GPTQ's error feedback (needs each layer input's second moments in memory).")
    var gptq = false

    @Flag(
        name: .long,
        help:
            "With --gptq: quantize the matrices in forward order from the partly quantized model's inputs, each fitted to the float model's outputs (two passes over the text per matrix group; small models)."
    )
    var sequential = false

    @Option(name: .long, help: "Payload compression: none or zstd.")
    var compress: Compression = .none

    @Option(name: .long, help: "zstd level (1-22).")
    var zstdLevel: Int = 10

    @Flag(name: .long, help: "Overwrite an existing output file.")
    var force = false

    @Flag(name: .long, help: "Print nothing but errors.")
    var quiet = false

    @Flag(name: .long, help: "Print each tensor's quantization error.")
    var verbose = false

    enum Compression: String, ExpressibleByArgument { case none, zstd }

    private func carried(_ report: ConversionReport) -> String {
        let n = report.tensors.filter(\.carriedOver).count
        return n == 0 ? "" : "\n  \(n) tensors keep the GGUF's codes and scales unchanged"
    }

    private static func scheme(_ s: TensorScheme, _ group: Int) -> String {
        s.isQuantized ? "\(s.rawValue) (\(group == 0 ? "one scale per row" : "groups of \(group)"))" : s.rawValue
    }

    private func describe(_ options: ConversionOptions, _ report: ConversionReport) -> String {
        if options.keepSource {
            // Per source type, the schemes its tensors became (norms, always f32, left out).
            var kinds: [String: Set<String>] = [:]
            for t in report.tensors where TensorRole(name: t.name) != .norm {
                kinds[t.sourceType, default: []].insert(
                    t.scheme.rawValue + (t.scheme.isQuantized ? " g32" : "") + (t.carriedOver ? " (codes and scales carried over)" : ""))
            }
            return "kept: " + kinds.keys.sorted().map { "\($0) -> \(kinds[$0]!.sorted().joined(separator: ", "))" }.joined(separator: "; ")
        }
        let embedding = options.plan(for: "token_embd")
        return "matrices \(Self.scheme(options.type, options.resolvedGroupSize)), embedding/output \(Self.scheme(embedding.scheme, embedding.groupSize))"
    }

    func run() async throws {
        try await runReportingErrors {
            Terminal.installInterruptCleanup()
            let checkpoint = try Checkpoint.open(path: input, tokenizerPath: tokenizer)
            let choice = try type ?? defaultType(checkpoint)
            var options = ConversionOptions(
                type: { if case let .scheme(s) = choice { s } else { .f32 } }(), groupSize: groupSize,
                embeddingType: embeddingType, zstdLevel: compress == .zstd ? zstdLevel : nil, overwrite: force,
                measureError: verbose)
            if case .keep = choice {
                if groupSize != nil || embeddingType != nil || !tensorType.isEmpty || calibrate != nil {
                    throw EdgeLMError.invalidArgument(
                        "--type keep stores each tensor as the source does: it takes no --group-size, --embedding-type, --tensor-type or --calibrate")
                }
                options.keepSource = true
            }
            options = options.adapted(to: checkpoint)
            options.level = try KernelLevel.selected()
            options.tensorTypes = try tensorType.map { (rule) throws(EdgeLMError) in try TensorTypeRule(parsing: rule) }
            if gptq, calibrate == nil {
                throw EdgeLMError.invalidArgument("--gptq needs --calibrate: GPTQ rounds with the calibration text's activation statistics")
            }
            if sequential, !gptq { throw EdgeLMError.invalidArgument("--sequential needs --gptq (and --calibrate): it orders GPTQ's rounding") }
            if let calibrate {
                guard options.type.isFittable, options.type.isFourBit || (options.type == .q8 && gptq) else {
                    throw EdgeLMError.invalidArgument(
                        "--calibrate applies to q4, q4a and q4n, or to q8 with --gptq (q8 scales follow each group's largest weight; only GPTQ's rounding uses the statistics; f32 and f16 are not rounded at all; q4o holds GGUF Q4_1/Q4_K groups as they are)"
                    )
                }
                guard let text = FileManager.default.contents(atPath: calibrate) else {
                    throw EdgeLMError.io(path: calibrate, message: "cannot read the calibration text")
                }
                let start = Date()
                if sequential {
                    let report = try SequentialGPTQ.convert(
                        checkpoint, to: output, options: options, text: text, maxTokens: calibrationTokens,
                        progress: { done, total in
                            guard !quiet else { return }
                            if Terminal.isTTY {
                                Terminal.progress(done, total, "sequential GPTQ")
                            } else {
                                Terminal.error("sequential GPTQ: \(done)/\(total) matrix groups, \(format(Date().timeIntervalSince(start), 1)) s")
                            }
                        }, conversionProgress: report)
                    if !quiet { Terminal.error("sequential GPTQ over \(calibrate) and conversion: \(format(Date().timeIntervalSince(start), 1)) s") }
                    return summarize(report, options)
                }
                options.calibration = try Calibration.collect(
                    checkpoint: checkpoint, text: text, maxTokens: calibrationTokens, level: options.level, gptq: gptq
                ) { done, total in
                    guard !quiet else { return }
                    if Terminal.isTTY {
                        Terminal.progress(done, total, "calibrating")
                    } else if done == total || done % 16 == 0 {
                        Terminal.error("calibration: \(done)/\(total) windows")
                    }
                }
                if !quiet, let c = options.calibration {
                    Terminal.error("calibrated on \(c.provenance.tokens) tokens of \(calibrate) in \(format(Date().timeIntervalSince(start), 1)) s")
                }
            }
            summarize(try Converter.convert(checkpoint, to: output, options: options, progress: report), options)
        }
    }

    /// Without --type: keep a quantized GGUF's tensors as they are; a float checkpoint needs a type chosen.
    private func defaultType(_ checkpoint: Checkpoint) throws -> TypeChoice {
        guard checkpoint.tensors.values.contains(where: { if case .ggml = $0.dtype { true } else { false } }) else {
            throw EdgeLMError.invalidArgument("--type is needed for a float checkpoint: \(TypeChoice.allValueStrings.joined(separator: ", "))")
        }
        return .keep
    }

    /// Prints a finished tensor: its error with --verbose, else a progress bar on a terminal or a line.
    private func report(_ p: ConversionProgress) {
        guard !quiet else { return }
        if verbose {
            let e = p.tensor.error.map { "max abs err \(format(Double($0.maxAbs), 6))  rel RMS err \(format($0.relativeRMS * 100, 3))%" } ?? "exact"
            Terminal.error("\(p.tensor.name.padding(toLength: 18)) \(p.tensor.shape) \(p.tensor.scheme.rawValue)  \(e)")
        } else if Terminal.isTTY {
            Terminal.progress(p.done, p.total, p.tensor.name)
        } else {
            Terminal.error("[\(p.done)/\(p.total)] \(p.tensor.name) \(p.tensor.shape) \(p.tensor.scheme.rawValue)")
        }
    }

    /// Prints what was written.
    private func summarize(_ report: ConversionReport, _ options: ConversionOptions) {
        guard !quiet else { return }
        let mbps = Double(report.inputBytes) / 1e6 / max(report.seconds, 1e-9)
        Terminal.error(
            """
            wrote \(output): \(report.tensors.count) tensors, \(report.parameters) parameters\(report.tiedOutput ? " (tied output head stored once)" : "")\(carried(report))
              \(formatBytes(report.inputBytes)) -> \(formatBytes(report.outputBytes)), \(format(report.bitsPerWeight, 2)) bits/weight overall, \
            \(format(report.matrixBitsPerWeight, 3)) bits/weight in attention+FFN matrices
              \(describe(options, report))\(compress == .zstd ? ", zstd level \(zstdLevel) ratio \(format(report.compressionRatio, 3))" : "")
              \(format(report.seconds, 2)) s, \(format(mbps, 1)) MB/s
            """)
    }
}
