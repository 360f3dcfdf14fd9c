import EdgeLM
import Foundation

/// A client error answered with an OpenAI-style error object: `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: Error, Sendable {
    /// HTTP status.
    public let status: Int
    /// What is wrong, naming the field.
    public let message: String
    /// The request field at fault, if any.
    public let param: String?
    /// OpenAI's error type.
    public let type: String

    init(_ status: Int, _ message: String, param: String? = nil, type: String = "invalid_request_error") {
        self.status = status
        self.message = message
        self.param = param
        self.type = type
    }

    /// The JSON body.
    var body: Data {
        let error: [String: Any] = ["message": message, "type": type, "param": param ?? NSNull(), "code": NSNull()]
        return (try? JSONSerialization.data(withJSONObject: ["error": error], options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
    }
}

/// The fields of `/v1/chat/completions` and `/v1/completions` that EdgeLM reads, parsed from JSON with
/// an error naming the field for each wrong type or unsupported request. Fields that change nothing here
/// (`user`, `stream_options`, `metadata`, ...) are accepted and ignored, as real clients send them.
struct CompletionRequest {
    enum Kind { case chat, completion }

    var messages: [ChatMessage] = []
    var prompt = ""
    var maxTokens: Int?
    var stream = false
    var includeUsage = false
    var stop: [String] = []
    var sampling = SamplingParameters()
    /// From `response_format` (`json_object`, `json_schema`) or llama.cpp's `grammar` / `json_schema` fields.
    var constraint: OutputConstraint?
    /// Functions the model may call (chat).
    var tools: [ToolDefinition] = []
    /// `tool_choice`: nil for auto, "none", "required", or a function's name.
    var toolChoice: ToolChoice = .auto
    /// Whether a reply may make several calls.
    var parallelToolCalls = true

    enum ToolChoice: Equatable {
        case auto, none, required
        case function(String)
    }

    /// Choices to generate (each a job of its own, seeds `seed`, `seed + 1`, ...).
    var n = 1
    /// Log-probabilities asked for: the number of alternatives per token (nil: none).
    var logprobs: Int?
    /// The field `constraint` came from.
    var constraintField: String?
    /// `context_shift`: drop the oldest messages of a chat that outgrows the context (nil: the server's default).
    var contextShift: Bool?

    /// Parses `body` for `kind`.
    init(json body: Data, kind: Kind) throws(APIError) {
        guard let object = try? JSONSerialization.jsonObject(with: body) else { throw APIError(400, "the request body is not valid JSON") }
        guard let json = object as? [String: Any] else { throw APIError(400, "the request body must be a JSON object") }
        let fields = JSONFields(json)
        switch kind {
        case .chat:
            guard let raw = json["messages"] else { throw APIError(400, "'messages' is required", param: "messages") }
            guard let list = raw as? [Any], !list.isEmpty else { throw APIError(400, "'messages' must be a non-empty array", param: "messages") }
            for (i, item) in list.enumerated() { messages.append(try CompletionRequest.message(item, index: i)) }
        case .completion:
            guard let raw = json["prompt"] else { throw APIError(400, "'prompt' is required", param: "prompt") }
            if let text = raw as? String {
                prompt = text
            } else if let list = raw as? [Any], list.count == 1, let text = list[0] as? String {
                prompt = text
            } else if raw is [Any] {
                throw APIError(400, "'prompt': only a single prompt per request is supported", param: "prompt")
            } else {
                throw APIError(400, "'prompt' must be a string", param: "prompt")
            }
        }
        maxTokens = try fields.int("max_completion_tokens")
        if maxTokens == nil { maxTokens = try fields.int("max_tokens") }
        if let m = maxTokens, m < 0 { throw APIError(400, "'max_tokens' must be >= 0", param: "max_tokens") }
        stream = try fields.bool("stream") ?? false
        contextShift = try fields.bool("context_shift")
        if let options = json["stream_options"] as? [String: Any] { includeUsage = options["include_usage"] as? Bool ?? false }
        if let raw = json["stop"], !(raw is NSNull) {
            if let s = raw as? String {
                stop = [s]
            } else if let list = raw as? [Any], list.allSatisfy({ $0 is String }), list.count <= 4 {
                stop = list.map { $0 as! String }
            } else {
                throw APIError(400, "'stop' must be a string or an array of at most 4 strings", param: "stop")
            }
            if stop.contains("") { throw APIError(400, "'stop' strings must not be empty", param: "stop") }
        }
        sampling = try Self.sampling(json, fields)
        // Asked for but not implemented: refused by name rather than silently ignored.
        n = try fields.int("n") ?? 1
        guard n >= 1 else { throw APIError(400, "'n' must be at least 1", param: "n") }
        if let best = try fields.int("best_of"), best != 1 { throw APIError(400, "'best_of' is not supported", param: "best_of") }
        switch kind {
        case .chat:
            if try fields.bool("logprobs") == true {
                logprobs = try fields.int("top_logprobs") ?? 0
            } else if fields.isSet("top_logprobs") {
                throw APIError(400, "'top_logprobs' needs 'logprobs': true", param: "top_logprobs")
            }
        case .completion:
            logprobs = try fields.int("logprobs")
        }
        if let n = logprobs, !(0...20).contains(n) {
            throw APIError(400, "'\(kind == .chat ? "top_logprobs" : "logprobs")' must be in 0...20", param: kind == .chat ? "top_logprobs" : "logprobs")
        }
        for key in ["echo"] where fields.isSet(key) {
            throw APIError(400, "'\(key)' is not supported", param: key)
        }
        if kind == .chat { (tools, toolChoice, parallelToolCalls) = try Self.tools(body, json, fields) }
        for key in (kind == .chat ? [] : ["tools", "tool_choice"]) + ["functions", "function_call", "suffix"] where fields.isSet(key) {
            throw APIError(400, "'\(key)' is not supported", param: key)
        }
        (constraintField, constraint) = try Self.constraint(body, json)
    }

    /// The sampling fields: temperature, top_p, top_k, min_p, repeat_penalty, seed (a random one when absent),
    /// presence and frequency penalties, logit_bias; each checked against its range.
    private static func sampling(_ json: [String: Any], _ fields: JSONFields) throws(APIError) -> SamplingParameters {
        var sampling = SamplingParameters()
        if let t = try fields.double("temperature") { sampling.temperature = Float(t) }
        if let p = try fields.double("top_p") { sampling.topP = Float(p) }
        if let k = try fields.int("top_k") { sampling.topK = k }
        if let p = try fields.double("min_p") { sampling.minP = Float(p) }
        if let r = try fields.double("repeat_penalty") { sampling.repetitionPenalty = Float(r) }
        if let seed = try fields.int("seed") { sampling.seed = UInt64(bitPattern: Int64(seed)) } else { sampling.seed = UInt64.random(in: 1...UInt64.max) }
        guard sampling.temperature >= 0 else { throw APIError(400, "'temperature' must be >= 0", param: "temperature") }
        guard sampling.topP > 0, sampling.topP <= 1 else { throw APIError(400, "'top_p' must be in (0, 1]", param: "top_p") }
        guard sampling.topK >= 0 else { throw APIError(400, "'top_k' must be >= 0", param: "top_k") }
        guard sampling.minP >= 0, sampling.minP < 1 else { throw APIError(400, "'min_p' must be in [0, 1)", param: "min_p") }
        guard sampling.repetitionPenalty > 0 else { throw APIError(400, "'repeat_penalty' must be > 0", param: "repeat_penalty") }
        for (key, path) in [("presence_penalty", \SamplingParameters.presencePenalty), ("frequency_penalty", \SamplingParameters.frequencyPenalty)] {
            guard let v = try fields.double(key) else { continue }
            guard abs(v) <= 2 else { throw APIError(400, "'\(key)' must be in [-2, 2]", param: key) }
            sampling[keyPath: path] = Float(v)
        }
        if let raw = json["logit_bias"], !(raw is NSNull) {
            guard let map = raw as? [String: Any] else { throw APIError(400, "'logit_bias' must be an object of token ids to biases", param: "logit_bias") }
            for (key, value) in map {
                guard let id = Int(key), id >= 0 else { throw APIError(400, "'logit_bias' key '\(key)' is not a token id", param: "logit_bias") }
                guard !isBoolean(value), let bias = (value as? NSNumber)?.doubleValue, abs(bias) <= 100 else {
                    throw APIError(400, "'logit_bias' value for \(key) must be a number in [-100, 100]", param: "logit_bias")
                }
                sampling.logitBias[id] = Float(bias)
            }
        }
        return sampling
    }

    /// `tools`, `tool_choice` and `parallel_tool_calls`, with each function's parameter schema in document order.
    private static func tools(_ body: Data, _ json: [String: Any], _ fields: JSONFields) throws(APIError) -> ([ToolDefinition], ToolChoice, Bool) {
        var tools: [ToolDefinition] = []
        if let raw = json["tools"], !(raw is NSNull) {
            guard raw is [Any], let list = (try? JSONValue.parse(String(decoding: body, as: UTF8.self)))?["tools"]?.arrayValue else {
                throw APIError(400, "'tools' must be an array", param: "tools")
            }
            for (i, item) in list.enumerated() {
                guard item["type"]?.stringValue == "function", let f = item["function"], let name = f["name"]?.stringValue,
                    !name.isEmpty, name.count <= 64, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
                else {
                    throw APIError(400, "'tools[\(i)]' must be {\"type\": \"function\", \"function\": {\"name\": [A-Za-z0-9_-]{1,64}, ...}}", param: "tools")
                }
                let parameters = f["parameters"] ?? .object([("type", .string("object")), ("properties", .object([]))])
                guard parameters.objectValue != nil else {
                    throw APIError(400, "'tools[\(i)].function.parameters' must be a JSON Schema object", param: "tools")
                }
                tools.append(ToolDefinition(name: name, description: f["description"]?.stringValue, parameters: parameters))
            }
            guard Set(tools.map(\.name)).count == tools.count else { throw APIError(400, "'tools': function names must be unique", param: "tools") }
        }
        var choice = ToolChoice.auto
        if let raw = json["tool_choice"], !(raw is NSNull) {
            if let s = raw as? String {
                switch s {
                case "auto": choice = .auto
                case "none": choice = .none
                case "required": choice = .required
                default: throw APIError(400, "'tool_choice' must be auto, none, required or a function", param: "tool_choice")
                }
            } else if let o = raw as? [String: Any], let f = o["function"] as? [String: Any], let name = f["name"] as? String {
                guard tools.contains(where: { $0.name == name }) else {
                    throw APIError(400, "'tool_choice' names '\(name)', which is not among 'tools'", param: "tool_choice")
                }
                choice = .function(name)
            } else {
                throw APIError(
                    400, "'tool_choice' must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\": ...}}", param: "tool_choice")
            }
            if choice != .auto, choice != .none, tools.isEmpty { throw APIError(400, "'tool_choice' needs 'tools'", param: "tool_choice") }
        }
        return (tools, choice, try fields.bool("parallel_tool_calls") ?? true)
    }

    /// The output constraint the request asks for (at most one of `response_format`, `json_schema`, `grammar`).
    /// Schemas are read again with an order-keeping parser: the order of `properties` is the order of the output.
    private static func constraint(_ body: Data, _ json: [String: Any]) throws(APIError) -> (String?, OutputConstraint?) {
        var found: [(String, OutputConstraint)] = []
        let ordered = { () throws(APIError) -> JSONValue in
            do { return try JSONValue.parse(String(decoding: body, as: UTF8.self)) } catch {
                throw APIError(400, "the request body is not valid JSON: \(error)")
            }
        }
        if let raw = json["response_format"], !(raw is NSNull) {
            guard let format = raw as? [String: Any], let type = format["type"] as? String else {
                throw APIError(400, "'response_format' must be an object with a 'type'", param: "response_format")
            }
            switch type {
            case "text": break
            case "json_object":
                if let schema = try ordered()["response_format"]?["schema"] {
                    found.append(("response_format", .jsonSchema(schema)))
                } else {
                    found.append(("response_format", .jsonObject))
                }
            case "json_schema":
                guard let schema = try ordered()["response_format"]?["json_schema"]?["schema"] else {
                    throw APIError(400, "'response_format.json_schema.schema' is required", param: "response_format.json_schema.schema")
                }
                found.append(("response_format", .jsonSchema(schema)))
            default:
                throw APIError(400, "'response_format' type '\(type)' is not supported (text, json_object, json_schema)", param: "response_format")
            }
        }
        if let raw = json["json_schema"], !(raw is NSNull) {
            guard raw is [String: Any] || raw is Bool, let schema = try ordered()["json_schema"] else {
                throw APIError(400, "'json_schema' must be a JSON Schema object", param: "json_schema")
            }
            found.append(("json_schema", .jsonSchema(schema)))
        }
        if let raw = json["grammar"], !(raw is NSNull) {
            guard let text = raw as? String else { throw APIError(400, "'grammar' must be a string (GBNF)", param: "grammar") }
            if !text.isEmpty { found.append(("grammar", .grammar(text))) }
        }
        guard found.count <= 1 else {
            throw APIError(
                400, "give at most one of 'response_format', 'json_schema' and 'grammar' (got \(found.map(\.0).joined(separator: ", ")))", param: found[1].0)
        }
        return (found.first?.0, found.first?.1)
    }

    private static func message(_ item: Any, index i: Int) throws(APIError) -> ChatMessage {
        let param = "messages[\(i)]"
        guard let m = item as? [String: Any] else { throw APIError(400, "'\(param)' must be an object", param: param) }
        guard let role = m["role"] as? String else { throw APIError(400, "'\(param).role' must be a string", param: param + ".role") }
        guard ["system", "user", "assistant", "developer", "tool"].contains(role) else {
            throw APIError(400, "'\(param).role' \(role) is not supported (system, user, assistant, tool)", param: param + ".role")
        }
        var content = ""
        if let text = m["content"] as? String {
            content = text
        } else if let parts = m["content"] as? [Any] {
            for part in parts {
                guard let p = part as? [String: Any], p["type"] as? String == "text", let t = p["text"] as? String else {
                    throw APIError(400, "'\(param).content': only text parts are supported", param: param + ".content")
                }
                content += t
            }
        } else if !(role == "assistant" && m["tool_calls"] != nil && (m["content"] == nil || m["content"] is NSNull)) {
            throw APIError(400, "'\(param).content' must be a string or an array of text parts", param: param + ".content")
        }
        var calls: [ToolCall] = []
        if let raw = m["tool_calls"], !(raw is NSNull) {
            guard role == "assistant", let list = raw as? [Any] else {
                throw APIError(400, "'\(param).tool_calls' must be an array, on an assistant message", param: param + ".tool_calls")
            }
            for (k, item) in list.enumerated() {
                guard let c = item as? [String: Any], let f = c["function"] as? [String: Any], let name = f["name"] as? String,
                    let arguments = f["arguments"] as? String
                else {
                    throw APIError(
                        400, "'\(param).tool_calls[\(k)]' must have function.name and function.arguments (a JSON string)",
                        param: param + ".tool_calls")
                }
                calls.append(ToolCall(id: c["id"] as? String ?? "call_\(i)_\(k)", name: name, arguments: arguments))
            }
        }
        var callID: String?
        if role == "tool" {
            guard let id = m["tool_call_id"] as? String else {
                throw APIError(400, "'\(param).tool_call_id' is required for a tool message", param: param + ".tool_call_id")
            }
            callID = id
        }
        return ChatMessage(role: role == "developer" ? "system" : role, content: content, toolCalls: calls, toolCallID: callID)
    }
}

/// Typed access to optional JSON fields, with errors naming the field.
struct JSONFields {
    let json: [String: Any]
    init(_ json: [String: Any]) { self.json = json }

    func isSet(_ key: String) -> Bool {
        guard let v = json[key], !(v is NSNull) else { return false }
        if let b = v as? Bool, !b, key == "logprobs" || key == "echo" { return false }
        if let list = v as? [Any], list.isEmpty { return false }
        return true
    }

    func int(_ key: String) throws(APIError) -> Int? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        guard !isBoolean(v), let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded(),
            abs(n.doubleValue) < 9e15
        else {
            throw APIError(400, "'\(key)' must be an integer", param: key)
        }
        return n.intValue
    }

    func double(_ key: String) throws(APIError) -> Double? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        guard !isBoolean(v), let n = v as? NSNumber, n.doubleValue.isFinite else {
            throw APIError(400, "'\(key)' must be a number", param: key)
        }
        return n.doubleValue
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        guard isBoolean(v), let n = v as? NSNumber else { throw APIError(400, "'\(key)' must be a boolean", param: key) }
        return n.boolValue
    }
}

/// JSONSerialization gives booleans as NSNumber too; only their class tells them from 0 and 1.
private func isBoolean(_ value: Any) -> Bool { String(describing: type(of: value)).contains("Boolean") }
