import EdgeLM
import Foundation
import Hummingbird

extension OpenAIServer {
    /// `POST /v1/embeddings`: `input` as a string, a list of strings, a list of token ids or a list of such lists;
    /// each becomes a job the scheduler runs in a free slot (`InferenceSession.embed`: the mean of the final-norm
    /// hidden states, unit length). `encoding_format` `float` (default) or `base64` (little-endian f32, what the
    /// `openai` client asks for).
    func embeddings(_ request: Request) async throws -> Response {
        let started = Date()
        let path = request.uri.path
        guard let body = await body(of: request) else {
            return logged(path, started, error: APIError(413, "the request body exceeds \(options.maxBodyBytes) bytes"))
        }
        let inputs: [[Int]], base64: Bool
        do {
            (inputs, base64) = try parse(Data(buffer: body))
        } catch {
            return logged(path, started, error: error)
        }
        var streams: [AsyncStream<JobEvent>] = []
        let jobs = inputs.map { Job(prompt: $0, parameters: GenerateParameters(), embedding: true, cancelled: CancellationFlag()) }
        for job in jobs {
            guard let s = scheduler.submit(job) else {
                for j in jobs { j.cancelled.set() }
                return logged(path, started, error: APIError(503, "the queue is full; retry later", type: "server_busy"))
            }
            streams.append(s)
        }
        var vectors = [[Float]?](repeating: nil, count: inputs.count)
        for await (i, event) in CompletionReply.merge(streams) {
            switch event {
            case .embedding(let v): vectors[i] = v
            case .failed(let message): return logged(path, started, error: APIError(500, message, type: "server_error"))
            default: break
            }
        }
        let data: [[String: Any]] = vectors.enumerated().map { i, v in
            let v = v ?? []
            let encoded: Any = base64 ? v.withUnsafeBytes { Data($0).base64EncodedString() } : v.map(Double.init)
            return ["object": "embedding", "index": i, "embedding": encoded]
        }
        let tokens = inputs.reduce(0) { $0 + $1.count }
        log(path, 200, started, "\(inputs.count) inputs, \(tokens) tokens")
        return json(200, ["object": "list", "data": data, "model": options.modelName, "usage": ["prompt_tokens": tokens, "total_tokens": tokens]])
    }

    private func parse(_ body: Data) throws(APIError) -> ([[Int]], Bool) {
        guard let object = try? JSONSerialization.jsonObject(with: body), let json = object as? [String: Any] else {
            throw APIError(400, "the request body must be a JSON object")
        }
        var base64 = false
        if let format = json["encoding_format"], !(format is NSNull) {
            guard let f = format as? String, f == "float" || f == "base64" else {
                throw APIError(400, "'encoding_format' must be 'float' or 'base64'", param: "encoding_format")
            }
            base64 = f == "base64"
        }
        if let d = json["dimensions"], !(d is NSNull), (d as? Int) != model.config.dim {
            throw APIError(400, "'dimensions': this model's embeddings have \(model.config.dim) dimensions", param: "dimensions")
        }
        guard let raw = json["input"] else { throw APIError(400, "'input' is required", param: "input") }
        var items: [Any] = raw is String ? [raw] : (raw as? [Any]) ?? []
        if !items.isEmpty, items.allSatisfy({ ($0 as? NSNumber) != nil && !($0 is String) }) { items = [items] }
        guard !items.isEmpty else { throw APIError(400, "'input' must be a string, an array of strings or an array of token arrays", param: "input") }
        guard items.count <= 2048 else { throw APIError(400, "'input' has \(items.count) items; at most 2048", param: "input") }
        var out: [[Int]] = []
        for (i, item) in items.enumerated() {
            let tokens: [Int]
            if let text = item as? String {
                guard !text.isEmpty else { throw APIError(400, "'input[\(i)]' is empty", param: "input") }
                tokens = model.encode(text)
            } else if let ids = item as? [Any], ids.allSatisfy({ ($0 as? NSNumber) != nil }) {
                tokens = ids.map { ($0 as! NSNumber).intValue }
                guard tokens.allSatisfy({ (0..<model.config.vocabSize).contains($0) }) else {
                    throw APIError(400, "'input[\(i)]': a token id outside the vocabulary of \(model.config.vocabSize)", param: "input")
                }
            } else {
                throw APIError(400, "'input[\(i)]' must be a string or an array of token ids", param: "input")
            }
            guard !tokens.isEmpty else { throw APIError(400, "'input[\(i)]' is empty", param: "input") }
            guard tokens.count <= scheduler.contextLength else {
                throw APIError(400, "'input[\(i)]' is \(tokens.count) tokens, longer than the context of \(scheduler.contextLength)", param: "input")
            }
            out.append(tokens)
        }
        return (out, base64)
    }
}
