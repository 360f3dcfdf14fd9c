import EdgeLM
import Foundation
import Hummingbird

/// How `edgelm serve` listens and what it accepts.
public struct ServerOptions: Sendable {
    /// Address to bind (loopback by default).
    public var host = "127.0.0.1"
    /// Port (0: any free port; the one chosen is printed).
    public var port = 8080
    /// Concurrent sequences, each with its own KV cache.
    public var slots = 4
    /// Requests waiting for a slot before new ones get 503.
    public var queueLimit = 64
    /// When set, requests must send `Authorization: Bearer KEY`.
    public var apiKey: String?
    /// Answer browsers from this origin (`*`: any): CORS headers on every response and `OPTIONS` preflights.
    public var cors: String?
    /// Largest request body accepted.
    public var maxBodyBytes = 1 << 20
    /// The model id `/v1/models` lists and responses carry.
    public var modelName = "edgelm"
    /// The chat format (nil: chat completions are refused with a message saying how to set one).
    public var chatTemplate: ChatTemplate?
    /// Speculative decoding of every request (nil: none); a draft model must be loaded into the model first.
    public var speculation: SpeculationParameters?
    /// Chat requests that outgrow the context drop their oldest messages (not system ones, not the last) instead of
    /// being refused, unless a request says `"context_shift": false`; off by default, when a request may ask with
    /// `"context_shift": true`. Replies say how many went in `dropped_messages`.
    public var contextShift = false

    /// Default options.
    public init() {}
}

/// The OpenAI-compatible HTTP server: `POST /v1/chat/completions` and `/v1/completions` (streaming as
/// server-sent events or not), `GET /v1/models`, `/health` and a Prometheus-style `/metrics`.
public final class OpenAIServer: Sendable {
    let model: LanguageModel
    let options: ServerOptions
    let scheduler: Scheduler
    let metrics = ServerMetrics()
    /// When the server started (Unix seconds): the model's `created`.
    let started = Int(Date().timeIntervalSince1970)

    /// Prepares `options.slots` sessions over `model` (fails before listening if they do not fit).
    public init(model: LanguageModel, options: ServerOptions) throws(EdgeLMError) {
        guard options.slots >= 1 else { throw .invalidArgument("--slots \(options.slots): must be at least 1") }
        guard options.queueLimit >= 0 else { throw .invalidArgument("--queue \(options.queueLimit): must be >= 0") }
        self.model = model
        self.options = options
        scheduler = try Scheduler(model: model, slots: options.slots, queueLimit: options.queueLimit, metrics: metrics)
    }

    /// Serves until the task is cancelled; `onListening` gets the bound port.
    public func run(onListening: @escaping @Sendable (Int) -> Void) async throws {
        scheduler.start()
        defer { scheduler.stop() }
        let router = Router()
        router.add(middleware: Gate(apiKey: options.apiKey, cors: options.cors, metrics: metrics))
        // GET routes answer HEAD too (Gate drops the body).
        for method in [HTTPRequest.Method.get, .head] {
            router.on("/health", method: method) { _, _ in self.json(200, ["status": "ok", "slots": self.options.slots]) }
            router.on("/v1/models", method: method) { _, _ in
                self.json(200, ["object": "list", "data": [["id": self.options.modelName, "object": "model", "created": self.started, "owned_by": "edgelm"]]])
            }
            router.on("/metrics", method: method) { _, _ in self.metricsResponse() }
        }
        router.post("/v1/chat/completions") { request, _ in try await self.complete(request, kind: .chat) }
        router.post("/v1/completions") { request, _ in try await self.complete(request, kind: .completion) }
        router.post("/v1/embeddings") { request, _ in try await self.embeddings(request) }
        let app = Application(
            router: router, configuration: .init(address: .hostname(options.host, port: options.port), serverName: "edgelm"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) })
        try await app.runService()
    }

    // MARK: - Completions

    private func complete(_ request: Request, kind: CompletionRequest.Kind) async throws -> Response {
        let started = Date()
        let path = request.uri.path
        guard let body = await body(of: request) else {
            return logged(path, started, error: APIError(413, "the request body exceeds \(options.maxBodyBytes) bytes"))
        }
        let parsed: CompletionRequest, prompt: [Int], dropped: Int, plan: Plan
        do {
            parsed = try CompletionRequest(json: Data(buffer: body), kind: kind)
            (prompt, dropped) = try promptTokens(parsed, kind: kind, context: scheduler.contextLength)
            plan = try self.plan(parsed, prompt: prompt, kind: kind)
        } catch {
            return logged(path, started, error: error)
        }
        let jobs = (0..<parsed.n).map { i in
            var p = plan.parameters
            p.sampling.seed = plan.parameters.sampling.seed &+ UInt64(i)
            return Job(prompt: prompt, parameters: p, constraint: plan.constraint, cancelled: CancellationFlag())
        }
        var streams: [AsyncStream<JobEvent>] = []
        for job in jobs {
            guard let events = scheduler.submit(job) else {
                for j in jobs { j.cancelled.set() }
                metrics.add("edgelm_rejected_busy_total")
                return logged(
                    path, started,
                    error: APIError(
                        503, "all \(options.slots) slots are busy and \(options.queueLimit) requests are waiting; retry later",
                        type: "server_busy"))
            }
            streams.append(events)
        }
        metrics.add("edgelm_requests_total")
        var reply = CompletionReply(
            id: randomID(kind == .chat ? "chatcmpl-" : "cmpl-"), created: Int(Date().timeIntervalSince1970),
            kind: kind, model: options.modelName, tokenizer: model.tokenizer, logprobs: parsed.logprobs != nil, choices: parsed.n)
        reply.tools = plan.toolFormat.map { ($0, parsed.tools) }
        reply.droppedMessages = dropped
        let events = CompletionReply.merge(streams)
        if parsed.stream { return streamed(events, reply: reply, jobs: jobs, includeUsage: parsed.includeUsage, path: path, started: started) }
        return await collected(events, reply: reply, jobs: jobs, path: path, started: started)
    }

    /// What a request's jobs run with.
    private struct Plan {
        var parameters: GenerateParameters
        /// The constraint compiled for the tokenizer (from the request's format fields, or a required tool call).
        var constraint: TokenConstraint?
        /// The chat format's tool convention, when the request offers tools.
        var toolFormat: ToolCallFormat?
    }

    /// The generation parameters of a parsed request whose prompt is `prompt`, or the 400 that refuses it (a prompt
    /// or `max_tokens` beyond the context, tools in a format without a convention, a constraint that cannot be
    /// compiled, `n` beyond the slots, `logit_bias` outside the vocabulary).
    private func plan(_ parsed: CompletionRequest, prompt: [Int], kind: CompletionRequest.Kind) throws(APIError) -> Plan {
        let context = scheduler.contextLength
        if prompt.count >= context {
            let hint = kind == .chat && !(parsed.contextShift ?? options.contextShift) ? " (send \"context_shift\": true to drop the oldest messages)" : ""
            throw APIError(400, "the prompt is \(prompt.count) tokens; the context is \(context)\(hint)", param: kind == .chat ? "messages" : "prompt")
        }
        if let m = parsed.maxTokens, prompt.count + m > context {
            throw APIError(400, "'max_tokens' \(m) plus the prompt's \(prompt.count) tokens exceed the context of \(context)", param: "max_tokens")
        }
        var parameters = GenerateParameters()
        parameters.maxTokens = parsed.maxTokens ?? (context - prompt.count)
        parameters.sampling = parsed.sampling
        parameters.speculation = options.speculation
        parameters.stop = parsed.stop + (kind == .chat ? options.chatTemplate?.stopStrings ?? [] : [])
        parameters.constraint = parsed.constraint
        parameters.logprobs = parsed.logprobs
        var toolFormat: ToolCallFormat?
        if !parsed.tools.isEmpty, parsed.toolChoice != .none {
            guard let format = options.chatTemplate?.toolFormat else {
                throw APIError(
                    400,
                    "'tools': the \(options.chatTemplate?.rawValue ?? "missing") chat format has no tool-call convention here (supported: \(ToolCallFormat.templates))",
                    param: "tools")
            }
            toolFormat = format
            let forced: [ToolDefinition]
            switch parsed.toolChoice {
            case .required: forced = parsed.tools
            case .function(let name): forced = parsed.tools.filter { $0.name == name }
            case .auto, .none: forced = []
            }
            if !forced.isEmpty {
                if let field = parsed.constraintField {
                    throw APIError(400, "give either '\(field)' or a required 'tool_choice', not both", param: "tool_choice")
                }
                parameters.constraint = format.constraint(forced, parallel: parsed.parallelToolCalls)
            }
        }
        var compiled: TokenConstraint?
        if let constraint = parameters.constraint {
            do {
                compiled = try TokenConstraint(constraint, tokenizer: model.tokenizer)
            } catch {
                let param = parsed.constraintField ?? "tools"
                throw APIError(400, "'\(param)': \(error)", param: param)
            }
        }
        if parsed.n > options.slots {
            throw APIError(400, "'n' \(parsed.n) is more than the server's \(options.slots) slots (--slots)", param: "n")
        }
        if let bad = parameters.sampling.logitBias.keys.first(where: { $0 >= model.config.vocabSize }) {
            throw APIError(400, "'logit_bias': token \(bad) is outside the vocabulary of \(model.config.vocabSize)", param: "logit_bias")
        }
        return Plan(parameters: parameters, constraint: compiled, toolFormat: toolFormat)
    }

    /// The reply as server-sent events while the jobs run, ending in `data: [DONE]`; a client that leaves cancels them.
    private func streamed(
        _ events: AsyncStream<(Int, JobEvent)>, reply: CompletionReply, jobs: [Job], includeUsage: Bool,
        path: String, started: Date
    ) -> Response {
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { [reply] writer in
                var reply = reply
                defer { for j in jobs { j.cancelled.set() } }
                for chunk in reply.opening() { try await writer.write(self.event(chunk)) }
                for await (i, event) in events {
                    if case .failed(let message) = event {
                        try await writer.write(self.event(["error": ["message": message, "type": "server_error"]]))
                        self.log(path, 500, started, message)
                        break
                    }
                    var chunks = reply.add(i, event)
                    // OpenAI sends usage as a chunk of its own, with no choices, after the last one.
                    if reply.isComplete, includeUsage { chunks.append(reply.usageChunk()) }
                    for chunk in chunks { try await writer.write(self.event(chunk)) }
                    if reply.isComplete {
                        self.log(
                            path, 200, started, "prompt \(reply.promptTokens) (evaluated \(reply.evaluated)), completion \(reply.completionTokens), stream")
                    }
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            })
    }

    /// The whole reply once every job has finished.
    private func collected(_ events: AsyncStream<(Int, JobEvent)>, reply: CompletionReply, jobs: [Job], path: String, started: Date) async -> Response {
        var reply = reply
        for await (i, event) in events {
            if case .failed(let message) = event {
                for j in jobs { j.cancelled.set() }
                return logged(path, started, error: APIError(500, message, type: "server_error"))
            }
            _ = reply.add(i, event)
        }
        guard reply.isComplete else { return logged(path, started, error: APIError(500, "the generation ended without a result", type: "server_error")) }
        log(path, 200, started, "prompt \(reply.promptTokens) (evaluated \(reply.evaluated)), completion \(reply.completionTokens)")
        return json(200, reply.body())
    }

    /// The request's body, nil when it exceeds `--max-body`.
    func body(of request: Request) async -> ByteBuffer? {
        var request = request
        return try? await request.collectBody(upTo: options.maxBodyBytes)
    }

    /// The request's prompt tokens; for a chat with context shift on, after dropping the oldest messages that leave
    /// no room for `max_tokens` (or a quarter of the context), with how many were dropped.
    private func promptTokens(_ request: CompletionRequest, kind: CompletionRequest.Kind, context: Int) throws(APIError) -> (prompt: [Int], dropped: Int) {
        switch kind {
        case .completion:
            return (model.encode(request.prompt), 0)
        case .chat:
            guard let template = options.chatTemplate else {
                throw APIError(
                    400,
                    "the model has no recognised chat template: start the server with --chat-template "
                        + "(\(ChatTemplate.names)) or use /v1/completions", param: "messages")
            }
            let tools = request.toolChoice == .none ? [] : request.tools
            do {
                guard request.contextShift ?? options.contextShift else {
                    return (try ChatSession.promptTokens(request.messages, template: template, model: model, tools: tools), 0)
                }
                let fit = try ChatSession.fitting(
                    request.messages, room: request.maxTokens ?? context / 4, context: context,
                    template: template, model: model, tools: tools)
                return (fit.prompt, fit.dropped)
            } catch {
                throw APIError(400, "\(error)", param: "messages")
            }
        }
    }

    private func event(_ object: [String: Any]) -> ByteBuffer {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return ByteBuffer(string: "data: " + String(decoding: data, as: UTF8.self) + "\n\n")
    }

    // MARK: - Responses and logging

    func json(_ status: Int, _ object: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Response(status: .init(code: status), headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func logged(_ path: String, _ started: Date, error: APIError) -> Response {
        metrics.add("edgelm_errors_total")
        log(path, error.status, started, error.message)
        return Self.errorResponse(error)
    }

    static func errorResponse(_ error: APIError) -> Response {
        Response(status: .init(code: error.status), headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: error.body)))
    }

    func log(_ path: String, _ status: Int, _ started: Date, _ detail: String) {
        let ms = Date().timeIntervalSince(started) * 1000
        FileHandle.standardError.write(Data("POST \(path) \(status) \(String(format: "%.1f", ms)) ms: \(detail)\n".utf8))
    }

    private func metricsResponse() -> Response {
        let snapshot = metrics.snapshot
        let help: [(String, String, String)] = [
            ("edgelm_requests_total", "counter", "completion requests accepted"),
            ("edgelm_errors_total", "counter", "requests answered with an error"),
            ("edgelm_rejected_busy_total", "counter", "requests refused because the queue was full"),
            ("edgelm_prompt_tokens_total", "counter", "prompt tokens of accepted requests"),
            ("edgelm_prompt_tokens_evaluated_total", "counter", "prompt tokens evaluated (the rest came from a slot's cache)"),
            ("edgelm_generated_tokens_total", "counter", "tokens generated"),
            ("edgelm_queue_length", "gauge", "requests waiting for a slot"),
            ("edgelm_slots_busy", "gauge", "slots generating"),
            ("edgelm_slots_total", "gauge", "slots"),
            ("edgelm_decode_tokens_per_second", "gauge", "tokens per second of the last batched decode step, all slots together"),
            ("edgelm_draft_tokens_total", "counter", "tokens drafted for verification (--lookup, --draft)"),
            ("edgelm_draft_tokens_accepted_total", "counter", "drafted tokens the model kept"),
            ("edgelm_forced_tokens_total", "counter", "tokens a constraint forced, fed without a sample"),
            ("edgelm_step_tokens", "gauge", "tokens of the last decode step, drafts included"),
        ]
        var text = ""
        for (name, type, doc) in help {
            text += "# HELP \(name) \(doc)\n# TYPE \(name) \(type)\n\(name) \(Self.number(snapshot[name] ?? 0))\n"
        }
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    private static func number(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v) }
}

/// A response id: `prefix` and 24 random hexadecimal digits (unique across restarts, as OpenAI's are).
func randomID(_ prefix: String) -> String {
    prefix + (0..<3).map { _ in String(UInt32.random(in: 0...UInt32.max), radix: 16).leftPadded(to: 8) }.joined()
}

extension String {
    fileprivate func leftPadded(to n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
