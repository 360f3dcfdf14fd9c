import ArgumentParser
import EdgeLM

struct Synth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a random-weight checkpoint of a benchmark shape as GGUF (Llama s15m, s110m, tl1b; Gemma 3 g270m; tiny for tests).")

    @Argument(help: "Shape: s15m, s110m, tl1b, g270m (Gemma 3 270M: 262,144-token vocabulary, tied head) or tiny.")
    var shape: String

    @Option(name: .shortAndLong, help: "Output .gguf file.")
    var output: String

    @Option(name: .long, help: "Tensor type: f16 or f32.")
    var type = "f16"

    @Option(name: .long, help: "Random seed.")
    var seed: UInt64 = 1

    func run() async throws {
        try await runReportingErrors {
            guard let s = SyntheticCheckpoint.Shape(rawValue: shape) else {
                throw EdgeLMError.invalidArgument("unknown shape '\(shape)' (s15m, s110m, tl1b, g270m, tiny)")
            }
            guard let t = ["f16": GGUFWriter.TensorType.f16, "f32": .f32][type] else { throw EdgeLMError.invalidArgument("--type must be f16 or f32") }
            try SyntheticCheckpoint.write(s, type: t, seed: seed, to: output)
            Terminal.error("wrote \(output): \(shape), \(s.config.parameterCount) parameters, \(type)")
        }
    }
}
