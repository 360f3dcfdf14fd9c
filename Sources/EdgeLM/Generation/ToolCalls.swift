import Foundation

/// A function the model may call: its name, what it does, and a JSON Schema of its arguments.
public struct ToolDefinition: Sendable, Equatable {
    public let name: String
    public let description: String?
    public let parameters: JSONValue

    public init(name: String, description: String?, parameters: JSONValue) {
        self.name = name
        self.description = description
        self.parameters = parameters
    }

    /// The definition as the JSON object chat formats list (OpenAI's `{"type": "function", "function": ...}`).
    var json: JSONValue {
        var function: [(String, JSONValue)] = [("name", .string(name))]
        if let description { function.append(("description", .string(description))) }
        function.append(("parameters", parameters))
        return .object([("type", .string("function")), ("function", .object(function))])
    }
}

/// A call the model made (or made earlier in the conversation).
public struct ToolCall: Codable, Sendable, Equatable {
    /// The call's id (`call_...`), which the tool's result message refers to.
    public var id: String
    /// The function called.
    public var name: String
    /// Its arguments as JSON text.
    public var arguments: String

    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// How a family writes tool definitions, calls and results in its prompt, and how its calls are read back.
public enum ToolCallFormat: Sendable {
    /// Hermes style (Qwen2.5/Qwen3, SmolLM2 and other ChatML models): tools listed in `<tools>` in the system
    /// message, each call `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, results in a user turn as
    /// `<tool_response>...</tool_response>`.
    case hermes
    /// Llama 3.1+ JSON tool calling: tools listed in the system message, a call is the reply
    /// `{"name": ..., "parameters": {...}}`, results come back in an `ipython` turn.
    case llama3JSON
    /// Mistral (v3 tokenizer and later, as its template writes them): `[AVAILABLE_TOOLS] [...][/AVAILABLE_TOOLS]`
    /// before the last user turn (which also carries the system text), calls as `[TOOL_CALLS] [{"name": ...,
    /// "arguments": {...}}, ...]`, results as `[TOOL_RESULTS] {"content": ...}[/TOOL_RESULTS]`.
    case mistral

    /// The chat formats that have a tool convention here, for error messages.
    public static let templates = "chatml, llama3, mistral"

    /// The key of the arguments object in a call.
    var argumentsKey: String { self == .llama3JSON ? "parameters" : "arguments" }

    /// The prompt text of `messages` with `tools` offered.
    func render(_ messages: [ChatMessage], tools: [ToolDefinition], template: ChatTemplate) throws(EdgeLMError) -> String {
        for m in messages where !["system", "user", "assistant", "tool"].contains(m.role) {
            throw .invalidArgument("messages: role '\(m.role)' is not one of system, user, assistant, tool")
        }
        if self == .mistral { return renderMistral(messages, tools: tools) }
        let listing = tools.map(\.json.serialized).joined(separator: "\n")
        var system = messages.first?.role == "system" ? messages[0].content : nil
        let rest = system == nil ? messages[...] : messages.dropFirst()
        if !tools.isEmpty {
            let instructions: String
            switch self {
            case .hermes:
                instructions =
                    "# Tools\n\nYou may call one or more functions to answer the user. The functions, one JSON signature per line, are "
                    + "inside <tools></tools> tags:\n<tools>\n\(listing)\n</tools>\n\nFor each call, write a JSON object with the function's name and "
                    + "arguments inside <tool_call></tool_call> tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <arguments-object>}\n</tool_call>"
            case .llama3JSON, .mistral:
                instructions =
                    "You have access to the following functions. To call one, reply only with JSON of the form "
                    + "{\"name\": function name, \"parameters\": object of argument names and values}. Do not use variables.\n\n\(listing)"
            }
            system = system.map { $0 + "\n\n" + instructions } ?? instructions
        }
        var text = ""
        func turn(_ role: String, _ content: String) {
            switch template {
            case .llama3: text += "<|start_header_id|>\(role)<|end_header_id|>\n\n\(content)<|eot_id|>"
            default: text += "<|im_start|>\(role)\n\(content)<|im_end|>\n"
            }
        }
        if let system { turn("system", system) }
        var pendingResults: [String] = []
        func flushResults() {
            guard !pendingResults.isEmpty else { return }
            turn("user", pendingResults.map { "<tool_response>\n\($0)\n</tool_response>" }.joined(separator: "\n"))
            pendingResults = []
        }
        for m in rest {
            if m.role == "tool", self == .hermes {
                pendingResults.append(m.content)
                continue
            }
            flushResults()
            switch m.role {
            case "tool": turn("ipython", m.content)
            case "assistant" where !m.toolCalls.isEmpty:
                let calls = m.toolCalls.map { call(name: $0.name, arguments: $0.arguments) }
                switch self {
                case .hermes: turn("assistant", ([m.content].filter { !$0.isEmpty } + calls.map { "<tool_call>\n\($0)\n</tool_call>" }).joined(separator: "\n"))
                case .llama3JSON, .mistral: turn("assistant", calls.joined(separator: "; "))
                }
            default: turn(m.role, m.content)
            }
        }
        flushResults()
        switch template {
        case .llama3: return text + "<|start_header_id|>assistant<|end_header_id|>\n\n"
        default: return text + "<|im_start|>assistant\n"
        }
    }

    /// Mistral's prompt: system text leading the last user turn, tools listed just before it.
    private func renderMistral(_ messages: [ChatMessage], tools: [ToolDefinition]) -> String {
        let system = messages.first?.role == "system" ? messages[0].content : nil
        let rest = system == nil ? messages[...] : messages.dropFirst()
        let lastUser = rest.lastIndex { $0.role == "user" }
        var text = ""
        for (i, m) in zip(rest.indices, rest) {
            switch m.role {
            case "user":
                if i == lastUser, !tools.isEmpty {
                    text += "[AVAILABLE_TOOLS] [" + tools.map(\.json.serialized).joined(separator: ", ") + "][/AVAILABLE_TOOLS]"
                }
                text += "[INST] " + (i == lastUser ? system.map { $0 + "\n\n" } ?? "" : "") + m.content + " [/INST]"
            case "tool":
                let content = (try? JSONValue.parse(m.content)) ?? .string(m.content)
                text += "[TOOL_RESULTS] " + JSONValue.object([("content", content)]).serialized + "[/TOOL_RESULTS]"
            default:
                if m.toolCalls.isEmpty {
                    text += m.content + "</s>"
                } else {
                    text += "[TOOL_CALLS] [" + m.toolCalls.map { call(name: $0.name, arguments: $0.arguments) }.joined(separator: ", ") + "]</s>"
                }
            }
        }
        if lastUser == nil, let system { text = "[INST] \(system) [/INST]" + text }
        return text
    }

    /// One call's JSON text in this format.
    private func call(name: String, arguments: String) -> String {
        let args = (try? JSONValue.parse(arguments)) ?? .object([])
        return JSONValue.object([("name", .string(name)), (argumentsKey, args)]).serialized
    }

    /// The calls in a reply and the text around them; names not among `tools` are left as text.
    public func parse(_ reply: String, tools: [ToolDefinition]) -> (content: String, calls: [ToolCall]) {
        let names = Set(tools.map(\.name))
        func decode(_ text: Substring) -> ToolCall? {
            guard let v = try? JSONValue.parse(String(text)), let name = v["name"]?.stringValue, names.contains(name),
                let args = v[argumentsKey] ?? v["arguments"] ?? v["parameters"], args.objectValue != nil
            else { return nil }
            return ToolCall(
                id: "call_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(24).lowercased(), name: name, arguments: args.serialized)
        }
        switch self {
        case .hermes:
            var content = "", calls: [ToolCall] = []
            var rest = reply[...]
            while let open = rest.range(of: "<tool_call>") {
                content += rest[..<open.lowerBound]
                let body = rest[open.upperBound...]
                let close = body.range(of: "</tool_call>")
                let inner = close.map { body[..<$0.lowerBound] } ?? body
                if let c = decode(inner.trimmingCharacters(in: .whitespacesAndNewlines)[...]) {
                    calls.append(c)
                } else {
                    content += rest[open.lowerBound..<(close?.upperBound ?? rest.endIndex)]
                }
                rest = close.map { body[$0.upperBound...] } ?? body[body.endIndex...]
            }
            content += rest
            return (content.trimmingCharacters(in: .whitespacesAndNewlines), calls)
        case .llama3JSON:
            let trimmed = reply.trimmingCharacters(in: .whitespacesAndNewlines)
            let calls = trimmed.split(separator: ";").compactMap { decode($0.trimmingCharacters(in: .whitespaces)[...]) }
            return calls.isEmpty || !trimmed.hasPrefix("{") ? (reply, []) : ("", calls)
        case .mistral:
            // `[TOOL_CALLS]` is a control token whose text a decoder may drop: the JSON array alone counts too.
            var trimmed = reply.trimmingCharacters(in: .whitespacesAndNewlines)[...]
            if trimmed.hasPrefix("[TOOL_CALLS]") { trimmed = trimmed.dropFirst("[TOOL_CALLS]".count).drop { $0 == " " || $0 == "\n" } }
            guard trimmed.hasPrefix("["), let list = (try? JSONValue.parse(String(trimmed)))?.arrayValue, !list.isEmpty else { return (reply, []) }
            let calls = list.compactMap { decode($0.serialized[...]) }
            return calls.count == list.count ? ("", calls) : (reply, [])
        }
    }

    /// The constraint that makes the reply a call of one of `tools` (several, one per line, when `parallel`), its
    /// arguments valid against the function's parameter schema.
    public func constraint(_ tools: [ToolDefinition], parallel: Bool) -> OutputConstraint {
        let options: [JSONValue] = tools.map { tool in
            .object([
                ("type", .string("object")),
                ("properties", .object([("name", .object([("const", .string(tool.name))])), (argumentsKey, tool.parameters)])),
                ("required", .array([.string("name"), .string(argumentsKey)])), ("additionalProperties", .bool(false)),
            ])
        }
        let schema: JSONValue = options.count == 1 ? options[0] : .object([("anyOf", .array(options))])
        switch self {
        case .hermes: return .taggedJSON(schema, prefix: "<tool_call>\n", suffix: "\n</tool_call>", repeated: parallel)
        case .llama3JSON: return .jsonSchema(schema)
        case .mistral:
            // The JSON array after `[TOOL_CALLS]`, which as a control token has no bytes for a grammar to match.
            var list: [(String, JSONValue)] = [("type", .string("array")), ("items", schema), ("minItems", .number("1"))]
            if !parallel { list.append(("maxItems", .number("1"))) }
            return .jsonSchema(.object(list))
        }
    }
}

extension ChatTemplate {
    /// The tool-call convention of this format, when it has one here.
    public var toolFormat: ToolCallFormat? {
        switch self {
        case .chatml: return .hermes
        case .llama3: return .llama3JSON
        case .mistral: return .mistral
        default: return nil
        }
    }
}
