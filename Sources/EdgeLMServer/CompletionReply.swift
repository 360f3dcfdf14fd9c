import EdgeLM
import Foundation

/// Builds the JSON of one completion request's reply from its jobs' events: one choice per job (`n`), texts
/// accumulated (or streamed as chunks), finish reasons, usage, and OpenAI-format log-probabilities when asked for
/// (chat: `logprobs.content[]` entries with `token`, `logprob`, `bytes`, `top_logprobs`; completions: the legacy
/// `tokens`, `token_logprobs`, `top_logprobs`, `text_offset` lists).
struct CompletionReply {
    let id: String
    let created: Int
    let kind: CompletionRequest.Kind
    let model: String
    let tokenizer: Tokenizer
    let logprobs: Bool
    /// When the reply may hold tool calls: their format and the functions offered. Text is then held back in a
    /// stream until the choice ends, and sent as content or as `tool_calls` deltas.
    var tools: (format: ToolCallFormat, definitions: [ToolDefinition])?
    /// Messages context shift dropped from the start of the conversation (reported as `dropped_messages` when > 0).
    var droppedMessages = 0

    private var texts: [String]
    private var entries: [[TokenLogprobs]]
    /// Log-probabilities not yet sent in a stream chunk.
    private var pending: [[TokenLogprobs]]
    private var finish: [String?]
    private(set) var promptTokens = 0
    private(set) var completionTokens = 0
    private(set) var evaluated = 0

    init(id: String, created: Int, kind: CompletionRequest.Kind, model: String, tokenizer: Tokenizer, logprobs: Bool, choices: Int) {
        (self.id, self.created, self.kind, self.model, self.tokenizer, self.logprobs) = (id, created, kind, model, tokenizer, logprobs)
        texts = Array(repeating: "", count: choices)
        entries = Array(repeating: [], count: choices)
        pending = Array(repeating: [], count: choices)
        finish = Array(repeating: nil, count: choices)
    }

    /// True when every choice has finished.
    var isComplete: Bool { finish.allSatisfy { $0 != nil } }

    /// Records an event of choice `i`; in a stream, returns the chunks to send now.
    mutating func add(_ i: Int, _ event: JobEvent) -> [[String: Any]] {
        switch event {
        case .token(let l):
            entries[i].append(l)
            pending[i].append(l)
            return []
        case .text(let text):
            guard tools == nil else {
                texts[i] += text
                return []
            }
            let chunk = self.chunk(i, delta: ["content": text], finish: nil, text: text)
            texts[i] += text
            return [chunk]
        case let .done(reason, prompt, evaluatedTokens, completion):
            finish[i] = Self.finishReason(reason)
            (promptTokens, evaluated) = (prompt, evaluatedTokens)
            completionTokens += completion
            guard let tools else { return [chunk(i, delta: [:], finish: finish[i], text: "")] }
            let (content, calls) = tools.format.parse(texts[i], tools: tools.definitions)
            if calls.isEmpty { return [chunk(i, delta: ["content": texts[i]], finish: nil, text: ""), chunk(i, delta: [:], finish: finish[i], text: "")] }
            finish[i] = "tool_calls"
            let deltas = calls.enumerated().map { k, c -> [String: Any] in
                ["index": k, "id": c.id, "type": "function", "function": ["name": c.name, "arguments": c.arguments]]
            }
            return (content.isEmpty ? [] : [chunk(i, delta: ["content": content], finish: nil, text: "")])
                + [chunk(i, delta: ["tool_calls": deltas], finish: nil, text: ""), chunk(i, delta: [:], finish: "tool_calls", text: "")]
        case .failed, .embedding:
            return []
        }
    }

    /// The role chunk a chat stream opens with (one per choice).
    func opening() -> [[String: Any]] {
        guard kind == .chat else { return [] }
        return texts.indices.map { wrap([["index": $0, "delta": ["role": "assistant", "content": ""], "finish_reason": NSNull()]]) }
    }

    /// `usage` of the whole request.
    var usage: [String: Int] { ["prompt_tokens": promptTokens, "completion_tokens": completionTokens, "total_tokens": promptTokens + completionTokens] }

    /// The stream's closing chunk with `usage` and no choices (`stream_options.include_usage`).
    func usageChunk() -> [String: Any] {
        var chunk = wrap([])
        chunk["usage"] = usage
        return chunk
    }

    /// The non-streamed reply.
    func body() -> [String: Any] {
        let choices: [[String: Any]] = texts.indices.map { i in
            var choice: [String: Any] = [
                "index": i, "finish_reason": finish[i] ?? "length",
                "logprobs": logprobs ? logprobsJSON(entries[i], text: "") : NSNull(),
            ]
            if kind == .chat { choice["message"] = ["role": "assistant", "content": texts[i]] } else { choice["text"] = texts[i] }
            if let tools {
                let (content, calls) = tools.format.parse(texts[i], tools: tools.definitions)
                if !calls.isEmpty {
                    choice["message"] = [
                        "role": "assistant", "content": content.isEmpty ? NSNull() as Any : content as Any,
                        "tool_calls": calls.map { ["id": $0.id, "type": "function", "function": ["name": $0.name, "arguments": $0.arguments]] },
                    ]
                    choice["finish_reason"] = "tool_calls"
                }
            }
            return choice
        }
        var body = envelope(kind == .chat ? "chat.completion" : "text_completion", choices: choices)
        body["usage"] = usage
        return body
    }

    /// A stream chunk of choice `i`, carrying the log-probabilities gathered since the last one.
    private mutating func chunk(_ i: Int, delta: [String: Any], finish: String?, text: String) -> [String: Any] {
        let l: Any = logprobs && !pending[i].isEmpty ? logprobsJSON(pending[i], text: texts[i]) : NSNull()
        pending[i] = []
        let choice: [String: Any] =
            kind == .chat
            ? ["index": i, "delta": delta, "finish_reason": finish ?? NSNull(), "logprobs": l]
            : ["index": i, "text": delta["content"] as? String ?? "", "logprobs": l, "finish_reason": finish ?? NSNull()]
        return wrap([choice])
    }

    private func wrap(_ choices: [[String: Any]]) -> [String: Any] {
        envelope(kind == .chat ? "chat.completion.chunk" : "text_completion", choices: choices)
    }

    /// The fields every reply object and stream chunk carries.
    private func envelope(_ object: String, choices: [[String: Any]]) -> [String: Any] {
        var out: [String: Any] = ["id": id, "object": object, "created": created, "model": model, "choices": choices]
        if droppedMessages > 0 { out["dropped_messages"] = droppedMessages }
        return out
    }

    /// Log-probabilities in the route's format; `text` is the choice's text before them (for `text_offset`).
    private func logprobsJSON(_ list: [TokenLogprobs], text: String) -> [String: Any] {
        func piece(_ id: Int) -> (String, [Int]) {
            let bytes = tokenizer.bytes(of: id)
            return (String(decoding: bytes, as: UTF8.self), bytes.map(Int.init))
        }
        if kind == .chat {
            return [
                "content": list.map { l -> [String: Any] in
                    let (token, bytes) = piece(l.token)
                    return [
                        "token": token, "logprob": l.logprob, "bytes": bytes,
                        "top_logprobs": l.top.map { t -> [String: Any] in
                            let (alt, altBytes) = piece(t.token)
                            return ["token": alt, "logprob": t.logprob, "bytes": altBytes]
                        },
                    ]
                }
            ]
        }
        var offset = text.utf8.count
        var offsets: [Int] = []
        for l in list {
            offsets.append(offset)
            offset += tokenizer.bytes(of: l.token).count
        }
        return [
            "tokens": list.map { piece($0.token).0 }, "token_logprobs": list.map(\.logprob), "text_offset": offsets,
            "top_logprobs": list.map { l in Dictionary(l.top.map { (piece($0.token).0, $0.logprob) }, uniquingKeysWith: { a, _ in a }) },
        ]
    }

    static func finishReason(_ reason: StopReason) -> String {
        switch reason {
        case .endOfSequence, .stopString, .cancelled: return "stop"
        case .maxTokens, .contextFull: return "length"
        }
    }

    /// The events of several jobs as one stream, each tagged with its job's index.
    static func merge(_ streams: [AsyncStream<JobEvent>]) -> AsyncStream<(Int, JobEvent)> {
        AsyncStream { continuation in
            let task = Task {
                await withTaskGroup(of: Void.self) { group in
                    for (i, s) in streams.enumerated() {
                        group.addTask { for await e in s { continuation.yield((i, e)) } }
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
