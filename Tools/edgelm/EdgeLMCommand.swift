import ArgumentParser
import EdgeLM

@main
struct EdgeLMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgelm",
        abstract: "Quantized Llama-family inference on the CPU.",
        version: EdgeLMVersion.string,
        subcommands: [Quantize.self, Inspect.self, Generate.self, Chat.self, Serve.self, Perplexity.self, Bench.self, Unpack.self, Synth.self]
    )
}

extension TensorScheme: ExpressibleByArgument {}

/// Turns library errors into clean exit messages.
func runReportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as EdgeLMError {
        throw ValidationErrorMessage(error.description)
    }
}

/// A library error as the command-line parser prints it ("Error: " and the message).
struct ValidationErrorMessage: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
