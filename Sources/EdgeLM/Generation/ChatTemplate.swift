/// One message of a conversation.
public struct ChatMessage: Codable, Sendable, Equatable {
    /// "system", "user", "assistant" or "tool" (a tool's result).
    public var role: String
    /// The text.
    public var content: String
    /// The calls an assistant message made.
    public var toolCalls: [ToolCall] = []
    /// For a "tool" message: the id of the call it answers.
    public var toolCallID: String?

    /// Creates a message.
    public init(role: String, content: String, toolCalls: [ToolCall] = [], toolCallID: String? = nil) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
    }
}

/// The chat prompt formats EdgeLM applies. No Jinja interpreter is involved: a model's template text is
/// recognised by the markers each family's template contains (as llama.cpp's built-in templates are),
/// and the format is then written out directly. `--chat-template NAME` overrides the recognition.
public enum ChatTemplate: String, CaseIterable, Sendable, Codable {
    /// Llama 3.x: `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`.
    case llama3
    /// ChatML (Qwen, SmolLM, many fine-tunes): `<|im_start|>role\ncontent<|im_end|>\n`.
    case chatml
    /// Gemma: `<start_of_turn>user|model\ncontent<end_of_turn>\n`, the system text leading the first user turn.
    case gemma
    /// Phi-3: `<|role|>\ncontent<|end|>\n`.
    case phi3
    /// Mistral: `[INST] user [/INST]assistant</s>`, the system text leading the first user turn.
    case mistral
    /// Llama 2: `[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] assistant </s><s>[INST] ...`.
    case llama2
    /// Zephyr: `<|role|>\ncontent</s>\n`.
    case zephyr

    /// Every format's name, as `--chat-template` takes them.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The family whose markers `template` (a Jinja chat template) contains, or nil.
    public static func recognise(_ template: String) -> ChatTemplate? {
        func has(_ s: String) -> Bool { template.contains(s) }
        if has("<|start_header_id|>") && has("<|eot_id|>") { return .llama3 }
        if has("<|im_start|>") { return .chatml }
        if has("<start_of_turn>") { return .gemma }
        if has("<|assistant|>") && has("<|end|>") { return .phi3 }
        if has("<|user|>") && has("<|assistant|>") { return .zephyr }
        if has("[INST]") { return has("<<SYS>>") ? .llama2 : .mistral }
        return nil
    }

    /// The prompt for `messages`, ending where the assistant's reply begins. The BOS token is not part of
    /// the text (the tokenizer adds it); roles other than system/user/assistant are an error.
    public func format(_ messages: [ChatMessage], tools: [ToolDefinition] = []) throws(EdgeLMError) -> String {
        let usesTools = !tools.isEmpty || messages.contains { $0.role == "tool" || !$0.toolCalls.isEmpty }
        if usesTools {
            guard let format = toolFormat else {
                throw .invalidArgument("tools: the \(rawValue) chat format has no tool-call convention here (supported: \(ToolCallFormat.templates))")
            }
            return try format.render(messages, tools: tools, template: self)
        }
        for m in messages where !["system", "user", "assistant"].contains(m.role) {
            throw .invalidArgument("messages: role '\(m.role)' is not one of system, user, assistant")
        }
        switch self {
        case .llama3:
            return messages.map { "<|start_header_id|>\($0.role)<|end_header_id|>\n\n\($0.content)<|eot_id|>" }.joined()
                + "<|start_header_id|>assistant<|end_header_id|>\n\n"
        case .chatml:
            return messages.map { "<|im_start|>\($0.role)\n\($0.content)<|im_end|>\n" }.joined() + "<|im_start|>assistant\n"
        case .phi3:
            return messages.map { "<|\($0.role)|>\n\($0.content)<|end|>\n" }.joined() + "<|assistant|>\n"
        case .zephyr:
            return messages.map { "<|\($0.role)|>\n\($0.content)</s>\n" }.joined() + "<|assistant|>\n"
        case .gemma:
            return ChatTemplate.mergingSystem(messages).map {
                "<start_of_turn>\($0.role == "assistant" ? "model" : "user")\n\($0.content)<end_of_turn>\n"
            }.joined() + "<start_of_turn>model\n"
        case .mistral:
            return ChatTemplate.mergingSystem(messages).map {
                $0.role == "assistant" ? "\($0.content)</s>" : "[INST] \($0.content) [/INST]"
            }.joined()
        case .llama2:
            var text = "", system: String?
            var first = true
            for m in messages {
                switch m.role {
                case "system": system = m.content
                case "user":
                    let sys = system.map { "<<SYS>>\n\($0)\n<</SYS>>\n\n" } ?? ""
                    text += (first ? "" : "<s>") + "[INST] \(sys)\(m.content) [/INST]"
                    system = nil
                    first = false
                default: text += " \(m.content) </s>"
                }
            }
            return text
        }
    }

    /// The system message a ChatML template (Jinja text) writes when the conversation has none: a literal
    /// `'<|im_start|>system\n...<|im_end|>'` in it (SmolLM2's "You are a helpful AI assistant named SmolLM...",
    /// Qwen2.5's "You are Qwen, created by Alibaba Cloud..."), or nil.
    public static func defaultSystem(_ template: String) -> String? {
        // The opener with a newline, as a GGUF stores the template, or with Jinja's "\n" escape.
        for opener in ["'<|im_start|>system\n", "'<|im_start|>system\\n"] {
            var rest = template[...]
            while let start = rest.range(of: opener) {
                rest = rest[start.upperBound...]
                guard let end = rest.range(of: "<|im_end|>") else { break }
                let text = rest[..<end.lowerBound]
                if !text.isEmpty, !text.contains("'"), !text.contains("+") { return text.replacingOccurrences(of: "\\n", with: "\n") }
            }
        }
        return nil
    }

    /// Text that ends the assistant's turn, besides the EOS token.
    public var stopStrings: [String] {
        switch self {
        case .llama3: return ["<|eot_id|>"]
        case .chatml: return ["<|im_end|>"]
        case .gemma: return ["<end_of_turn>"]
        case .phi3: return ["<|end|>"]
        case .mistral, .llama2, .zephyr: return ["</s>"]
        }
    }

    /// Messages with a leading system message folded into the first user message.
    private static func mergingSystem(_ messages: [ChatMessage]) -> [ChatMessage] {
        guard let first = messages.first, first.role == "system" else { return messages }
        var rest = Array(messages.dropFirst())
        if let i = rest.firstIndex(where: { $0.role == "user" }) {
            rest[i].content = first.content + "\n\n" + rest[i].content
        } else {
            rest.insert(ChatMessage(role: "user", content: first.content), at: 0)
        }
        return rest
    }
}
