import Foundation

extension LanguageModel {
    /// Generates one JSON value valid against `schema` after `prompt` and decodes it as `T`: structured output as a
    /// Swift value. The output is complete when it ends (the constraint stops generation there); a value cut off by
    /// `parameters.maxTokens` or the context is an error saying so, as is JSON that does not decode as `T` (a schema
    /// that describes another shape).
    public func generateValue<T: Decodable>(
        _ type: T.Type, prompt: String, schema: JSONValue,
        parameters: GenerateParameters = .greedy(maxTokens: 512)
    ) throws(EdgeLMError) -> T {
        var p = parameters
        p.constraint = .jsonSchema(schema)
        var text = ""
        let info = try generate(promptTokens: encode(prompt, addBOS: p.addBOS), parameters: p) { _, piece in
            text += piece
            return true
        }
        guard info.stopReason == .endOfSequence else {
            throw .invalidInput("the JSON value was cut off (\(info.stopReason.rawValue)) after \(info.generatedTokens) tokens: \(text.prefix(80))...")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(text.utf8))
        } catch {
            throw .invalidInput("the generated JSON does not decode as \(T.self): \(error) (text: \(text.prefix(200)))")
        }
    }
}
