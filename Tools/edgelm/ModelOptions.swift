import ArgumentParser
import EdgeLM

/// Options shared by the commands that run a model.
struct ModelOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The .edgelm model file.")
    var model: String

    @Option(name: .shortAndLong, help: "Worker threads (default: physical cores).")
    var threads: Int?

    /// Opens the model with these options.
    func open(verify: Bool = false) throws -> LanguageModel {
        try LanguageModel(path: model, threads: threads, verify: verify)
    }
}
