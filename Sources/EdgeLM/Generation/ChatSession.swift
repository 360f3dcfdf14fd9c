/// A conversation with a model that keeps the KV cache between turns: each turn formats the whole
/// history with the chat template, and the session evaluates only what follows the longest prefix the
/// cache already holds (the new user message and the template's markers around it).
public final class ChatSession: @unchecked Sendable {
    /// The model (its session holds the conversation's cache; one chat per model at a time).
    public let model: LanguageModel
    /// The prompt format.
    public let template: ChatTemplate
    /// The conversation so far.
    public private(set) var messages: [ChatMessage]
    /// Messages the last `respond` dropped from the start of the conversation to fit the context.
    public private(set) var droppedMessages = 0
    private let system: String?

    /// A chat with `template`, or the one recognised from the model file's chat template; fails naming
    /// the problem when the file has none or it is not recognised.
    public init(model: LanguageModel, template: ChatTemplate? = nil, system: String? = nil) throws(EdgeLMError) {
        self.model = model
        if let template {
            self.template = template
        } else {
            guard let text = model.tokenizer.data.chatTemplate else {
                throw .invalidArgument(
                    "the model file has no chat template: choose one with --chat-template "
                        + "(\(ChatTemplate.names))")
            }
            guard let recognised = ChatTemplate.recognise(text) else {
                throw .invalidArgument(
                    "the model's chat template is not one EdgeLM recognises: choose one with --chat-template "
                        + "(\(ChatTemplate.names))")
            }
            self.template = recognised
        }
        self.system = system
        messages = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
    }

    /// Forgets the conversation (the system message stays).
    public func reset() {
        messages = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
    }

    /// The prompt tokens of `messages` in this chat's format. A conversation without a system message gets the
    /// one the model's own template writes in that case (`ChatTemplate.defaultSystem`), as the template would.
    public static func promptTokens(
        _ messages: [ChatMessage], template: ChatTemplate, model: LanguageModel,
        tools: [ToolDefinition] = []
    ) throws(EdgeLMError) -> [Int] {
        var messages = messages
        if messages.first?.role != "system", template == .chatml,
            let system = model.tokenizer.data.chatTemplate.flatMap(ChatTemplate.defaultSystem)
        {
            messages.insert(ChatMessage(role: "system", content: system), at: 0)
        }
        return model.encode(try template.format(messages, tools: tools), addEOS: false)
    }

    /// The prompt tokens of `messages`, after dropping the oldest messages (never a system message, never the last
    /// one) until `room` tokens are left for the reply in a context of `context`; with how many were dropped. When
    /// the last message alone is too long, the prompt returned still does not fit and the caller refuses it.
    public static func fitting(
        _ messages: [ChatMessage], room: Int, context: Int, template: ChatTemplate, model: LanguageModel,
        tools: [ToolDefinition] = []
    ) throws(EdgeLMError) -> (prompt: [Int], messages: [ChatMessage], dropped: Int) {
        var kept = messages
        var prompt = try promptTokens(kept, template: template, model: model, tools: tools)
        var dropped = 0
        while prompt.count + room > context, let first = kept.firstIndex(where: { $0.role != "system" }), first < kept.count - 1 {
            kept.remove(at: first)
            dropped += 1
            prompt = try promptTokens(kept, template: template, model: model, tools: tools)
        }
        return (prompt, kept, dropped)
    }

    /// Adds the user's `text`, generates the reply (stopping at EOS or the template's end of turn, plus
    /// `parameters.stop`), calls `onText` with each piece (return false to stop), and records the reply.
    /// When the conversation outgrows the context, the oldest messages (never the system message, never the new
    /// user message) are dropped until the prompt leaves room for a reply of `min(maxTokens, context / 4)` tokens;
    /// `droppedMessages` says how many went this turn. The cache still holds the system prompt's tokens.
    public func respond(to text: String, parameters: GenerateParameters, onText: (String) -> Bool) throws(EdgeLMError) -> GenerationInfo {
        let context = model.session.contextLength
        let fit = try ChatSession.fitting(
            messages + [ChatMessage(role: "user", content: text)], room: min(parameters.maxTokens, context / 4),
            context: context, template: template, model: model)
        var turn = fit.messages
        let prompt = fit.prompt
        droppedMessages = fit.dropped
        var params = parameters
        params.stop += template.stopStrings
        var reply = ""
        let info = try model.generate(promptTokens: prompt, parameters: params) { _, piece in
            reply += piece
            return onText(piece)
        }
        turn.append(ChatMessage(role: "assistant", content: reply))
        messages = turn
        return info
    }
}
