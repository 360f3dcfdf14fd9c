import ArgumentParser
import EdgeLM
import Foundation

/// Options that constrain the output of `generate` (and select `bench`'s constrained mode): at most one of them.
struct ConstraintOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Output a JSON value valid against the JSON Schema in this file.", valueName: "file"))
    var jsonSchema: String?

    @Option(name: .long, help: ArgumentHelp("Output text matching the GBNF grammar in this file (llama.cpp notation, from rule root).", valueName: "file"))
    var grammar: String?

    @Option(name: .long, help: ArgumentHelp("Output text matching this regular expression as a whole.", valueName: "regex"))
    var regex: String?

    @Flag(name: .long, help: "Output one JSON object.")
    var jsonObject = false

    /// The constraint the options ask for (nil: none); a file that cannot be read or parsed is an error naming it.
    func constraint() throws -> OutputConstraint? {
        let given = [jsonSchema != nil, grammar != nil, regex != nil, jsonObject].filter { $0 }.count
        guard given <= 1 else { throw EdgeLMError.invalidArgument("give at most one of --json-schema, --grammar, --regex, --json-object") }
        if let path = jsonSchema {
            do { return .jsonSchema(try JSONValue.parse(try readText(path, what: "the schema file"))) } catch let error as EdgeLMError {
                throw EdgeLMError.invalidArgument("--json-schema \(path): \(error)")
            }
        }
        if let path = grammar { return .grammar(try readText(path, what: "the grammar file")) }
        if let regex { return .regex(regex) }
        return jsonObject ? .jsonObject : nil
    }
}

/// "constraint: mask p50 X µs, max Y µs; N tokens forced" for a constrained generation; nil for a free one.
func constraintSummary(_ info: GenerationInfo) -> String? {
    guard !info.maskSeconds.isEmpty else { return nil }
    let sorted = info.maskSeconds.sorted()
    return "constraint: mask p50 \(format(sorted[sorted.count / 2] * 1e6, 0)) µs, max \(format(sorted.last! * 1e6, 0)) µs; "
        + "\(info.forcedTokens) tokens forced (fed without a sample)"
}
