import ArgumentParser
import EdgeLM
import Foundation

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show an EdgeLM model file's configuration, tokenizer and tensors.")

    @Argument(help: "The .edgelm file.")
    var model: String

    @Flag(name: .long, help: "Machine-readable output.")
    var json = false

    @Flag(name: .long, help: "Verify every tensor checksum.")
    var verify = false

    func run() async throws {
        try await runReportingErrors {
            let file = try ModelFile(path: model, verify: verify)
            let summary = ModelSummary(file: file, verified: verify)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(summary), as: UTF8.self))
            } else {
                print(summary.text)
            }
        }
    }
}
