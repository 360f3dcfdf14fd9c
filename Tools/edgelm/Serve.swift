import ArgumentParser
import EdgeLM
import EdgeLMServer
import Foundation

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics).")

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(name: .long, help: "Port (0: any free port; the one chosen is printed).")
    var port = 8080

    @Option(name: .long, help: "Concurrent sequences, each with its own KV cache; their decode steps run as one batch.")
    var slots = 4

    @Option(name: .long, help: "Requests that may wait for a slot; beyond that the server answers 503.")
    var queue = 64

    @Option(name: .long, help: "Require `Authorization: Bearer KEY` on /v1/ requests.")
    var apiKey: String?

    @Option(name: .long, help: ArgumentHelp("Allow browser apps from this origin (* for any): CORS headers and OPTIONS preflights.", valueName: "origin"))
    var cors: String?

    @Option(name: .long, help: "Chat format, overriding the model's template (\(ChatTemplate.names)).")
    var chatTemplate: ChatTemplate?

    @Option(name: .long, help: "The model id clients see (default: the file name).")
    var modelName: String?

    @Option(name: .long, help: "Largest request body in bytes.")
    var maxBody = 1 << 20

    @Flag(name: .long, help: "Chats that outgrow the context drop their oldest messages instead of failing (a request's \"context_shift\" overrides).")
    var contextShift = false

    @OptionGroup var speculation: SpeculationOptions

    func run() async throws {
        try await runReportingErrors {
            let lm = try options.open()
            var server = ServerOptions()
            server.host = host
            server.port = port
            server.slots = slots
            server.queueLimit = queue
            server.apiKey = apiKey
            server.cors = cors
            server.maxBodyBytes = maxBody
            server.contextShift = contextShift
            server.speculation = try speculation.apply(to: lm)
            server.modelName = modelName ?? ((options.model as NSString).lastPathComponent as NSString).deletingPathExtension
            do {
                server.chatTemplate = try resolveChatTemplate(chatTemplate, lm)
            } catch {
                Terminal.error("note: chat completions are off: \(error)")
            }
            let app = try OpenAIServer(model: lm, options: server)
            let (h, s) = (host, slots)
            let kv = "\(lm.session.kvTypeName) KV cache of \(formatBytes(lm.session.kvCacheBytes)) per slot", context = lm.session.contextLength
            try await app.run { bound in
                Terminal.error("listening on http://\(h):\(bound) (\(s) slots, \(kv), context \(context))")
            }
        }
    }
}
