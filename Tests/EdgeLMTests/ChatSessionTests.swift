import Testing
@testable import EdgeLM

/// A conversation longer than the context keeps going: the oldest messages are dropped, the system message kept.
struct ChatSessionTests {
    @Test func aConversationOutgrowingTheContextDropsItsOldestMessages() throws {
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 2, contextLength: 128)
        let chat = try ChatSession(model: lm, template: .chatml, system: "Be brief.")
        var params = GenerateParameters.greedy(maxTokens: 24)
        params.stopAtEOS = false
        var dropped = 0
        for turn in 0..<6 {
            let info = try chat.respond(to: "Tell me part \(turn) of the story about the cat and the dog.", parameters: params) { _ in true }
            #expect(info.promptTokens + info.generatedTokens <= 128)
            dropped += chat.droppedMessages
            #expect(chat.messages.first == ChatMessage(role: "system", content: "Be brief."))
        }
        #expect(dropped > 0, "six turns of ~40 tokens do not fit 128 positions")
        #expect(chat.messages.last?.role == "assistant")
    }
}
