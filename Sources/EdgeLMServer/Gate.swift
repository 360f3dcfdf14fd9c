import Foundation
import Hummingbird

/// Checks `Authorization` when an API key is set, answers unknown paths with an OpenAI-style 404, and
/// logs the requests that are not completions.
struct Gate: RouterMiddleware {
    typealias Context = BasicRequestContext
    let apiKey: String?
    let cors: String?
    let metrics: ServerMetrics

    /// Every route and its methods (HEAD answers like GET without a body).
    static let routes: [String: [HTTPRequest.Method]] = [
        "/health": [.get], "/v1/models": [.get], "/metrics": [.get],
        "/v1/chat/completions": [.post], "/v1/completions": [.post], "/v1/embeddings": [.post],
    ]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let allowed = Self.routes[path]
        if let allowed, request.method == .options, cors != nil {
            // A browser's preflight: no API key is sent with it.
            var response = Response(status: .noContent)
            response.headers[.accessControlAllowMethods] = (allowed + [.options]).map(\.rawValue).joined(separator: ", ")
            response.headers[.accessControlAllowHeaders] = "Authorization, Content-Type"
            response.headers[.accessControlMaxAge] = "600"
            return withCORS(response, request)
        }
        if let allowed, !allowed.contains(request.method), !(request.method == .head && allowed.contains(.get)) {
            var response = OpenAIServer.errorResponse(APIError(405, "\(path) takes \(allowed.map(\.rawValue).joined(separator: ", ")), not \(request.method)"))
            response.headers[.allow] = (allowed + (allowed.contains(.get) ? [.head] : [])).map(\.rawValue).joined(separator: ", ")
            FileHandle.standardError.write(Data("\(request.method) \(path) 405\n".utf8))
            return withCORS(response, request)
        }
        if let apiKey, path.hasPrefix("/v1/") {
            guard request.headers[.authorization] == "Bearer \(apiKey)" else {
                metrics.add("edgelm_errors_total")
                FileHandle.standardError.write(Data("\(request.method) \(path) 401: bad or missing API key\n".utf8))
                return withCORS(
                    OpenAIServer.errorResponse(
                        APIError(
                            401, "invalid or missing API key (send Authorization: Bearer KEY)",
                            type: "authentication_error")), request)
            }
        }
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound || error.status == .methodNotAllowed {
            response = OpenAIServer.errorResponse(APIError(Int(error.status.code), "no route for \(request.method) \(path)"))
        }
        if request.method == .head { response.body = ResponseBody() }
        // Completions log themselves, with their token counts.
        if !path.hasSuffix("completions") {
            FileHandle.standardError.write(Data("\(request.method) \(path) \(response.status.code)\n".utf8))
        }
        return withCORS(response, request)
    }

    /// `response` with the CORS headers when the request comes from an allowed origin.
    private func withCORS(_ response: Response, _ request: Request) -> Response {
        guard let cors, let origin = request.headers[.origin], cors == "*" || cors == origin else { return response }
        var out = response
        out.headers[.accessControlAllowOrigin] = cors == "*" ? "*" : origin
        if cors != "*" { out.headers[.vary] = "Origin" }
        return out
    }
}
