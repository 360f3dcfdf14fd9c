import ArgumentParser
import EdgeLM

struct Unpack: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Decode a zstd-compressed model file into a raw one for zero-copy loading.")

    @Argument(help: "The compressed .edgelm file.")
    var model: String

    @Option(name: .shortAndLong, help: "Output .edgelm file.")
    var output: String

    @Flag(name: .long, help: "Overwrite an existing output file.")
    var force = false

    func run() async throws {
        try await runReportingErrors {
            Terminal.installInterruptCleanup()
            let file = try ModelFile(path: model)
            try Unpacker.unpack(file, to: output, overwrite: force)
            let out = try ModelFile(path: output)
            Terminal.error("wrote \(output): \(file.mapping.bytes.count) -> \(out.mapping.bytes.count) bytes, \(out.metadata.tensors.count) raw tensors")
        }
    }
}
