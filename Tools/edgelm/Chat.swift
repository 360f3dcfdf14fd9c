import ArgumentParser
import EdgeLM
import Foundation

extension ChatTemplate: ExpressibleByArgument {}

/// Picks the chat template: the override, or the one recognised from the model file.
func resolveChatTemplate(_ override: ChatTemplate?, _ lm: LanguageModel) throws -> ChatTemplate {
    try ChatSession(model: lm, template: override).template
}

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with a model in the terminal (/reset clears the conversation, Ctrl-C stops an answer, Ctrl-D quits).",
        discussion: "On a terminal the input line can be edited (Left/Right, Home/End, Ctrl-A/E/K/U/W, Backspace, Delete) and Up/Down recall earlier messages.")

    @OptionGroup var options: ModelOptions
    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var speculation: SpeculationOptions

    @Option(name: .long, help: "Chat format, overriding the model's template (\(ChatTemplate.names)).")
    var chatTemplate: ChatTemplate?

    @Option(name: .long, help: "System message.")
    var system: String?

    @Option(name: .short, parsing: .unconditional, help: "Most tokens per answer; -1: until the end of the text or the context.")
    var n = 512

    func run() async throws {
        try await runReportingErrors {
            var params = GenerateParameters()
            guard n >= -1 else { throw EdgeLMError.invalidArgument("-n \(n): must be >= 0, or -1 for no limit") }
            params.maxTokens = n == -1 ? Int.max : n
            params.sampling = sampling.parameters
            try params.validate()
            let lm = try options.open()
            params.speculation = try speculation.apply(to: lm)
            let chat = try ChatSession(model: lm, template: chatTemplate, system: system)
            Terminal.error("chat format \(chat.template.rawValue); /reset clears the conversation, Ctrl-C stops an answer, Ctrl-D quits")
            let interrupt = InterruptFlag()
            let stdout = FileHandle.standardOutput
            let reader = LineReader()
            while true {
                let line: String
                switch reader.read(prompt: "> ") {
                case .line(let l): line = l
                case .end: return
                case .interrupt: Foundation.exit(0)
                }
                let text = line.trimmingCharacters(in: .whitespaces)
                if text.isEmpty { continue }
                if text == "/reset" {
                    chat.reset()
                    Terminal.error("(conversation cleared)")
                    continue
                }
                if text == "/quit" || text == "/exit" { break }
                interrupt.arm()
                let info: GenerationInfo
                do {
                    info = try chat.respond(to: text, parameters: params) { piece in
                        stdout.write(Data(piece.utf8))
                        return !interrupt.fired
                    }
                } catch {
                    // A message the context cannot hold ends that turn, not the conversation.
                    interrupt.disarm()
                    Terminal.error("error: \(error)")
                    continue
                }
                interrupt.disarm()
                stdout.write(Data("\n".utf8))
                if chat.droppedMessages > 0 {
                    Terminal.error("(dropped the \(chat.droppedMessages) oldest messages to fit the context of \(chat.model.session.contextLength) tokens)")
                }
                Terminal.error(
                    "[\(info.generatedTokens) tokens, \(format(info.tokensPerSecond, 1)) t/s; prompt: \(info.promptTokensEvaluated) "
                        + "of \(info.promptTokens) tokens evaluated\(draftSummary(info).map { "; \($0)" } ?? "")"
                        + "\(info.stopReason == .cancelled ? "; stopped" : "")]")
            }
        }
    }
}

/// Ctrl-C while an answer streams stops that answer; at the prompt it quits.
final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var armed = false
    private var value = false
    private let source: any DispatchSourceSignal

    init() {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [unowned self] in
            let quit: Bool = self.lock.withLock {
                if self.armed { self.value = true }
                return !self.armed
            }
            if quit {
                FileHandle.standardOutput.write(Data("\n".utf8))
                exit(0)
            }
        }
        source.resume()
    }

    func arm() {
        lock.withLock {
            armed = true; value = false
        }
    }
    func disarm() { lock.withLock { armed = false } }
    var fired: Bool { lock.withLock { value } }
}
