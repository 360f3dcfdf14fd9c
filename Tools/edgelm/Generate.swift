import ArgumentParser
import EdgeLM

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a prompt.")
    func run() async throws {}
}
