import Foundation
import Testing
@testable import EdgeLM

/// What serving builds on: batched decode of several sequences, prompt reuse, chat templates and the
/// step-wise token stream with stop strings.
@Suite struct ServingTests {
    var present: Bool { Fixtures.available(Fixtures.stories + "stories260K.gguf") }

    func model(_ type: KVCacheType = .f32) throws -> LanguageModel {
        try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 2, keyType: type, valueType: type)
    }

    /// A session's `options` make another session like it (a server slot, a drafter): same context, cache types,
    /// level, activations and key smoothing, and so the same logits.
    @Test func sessionOptionsMakeALikeSession() throws {
        guard present else { return }
        let lm = try model()
        var o = SessionOptions()
        o.keyType = .q8
        o.valueType = .f16
        o.contextLength = 100
        o.keySmoothing = false
        o.activationGranularity = .residual
        o.level = .generic
        let first = try InferenceSession(model: lm.model, options: o, pool: lm.session.pool)
        var expected = o
        expected.threads = lm.session.pool.threadCount
        #expect(first.options == expected)
        let second = try InferenceSession(model: lm.model, options: first.options, pool: lm.session.pool)
        #expect(second.options == first.options)
        let prompt = lm.encode("Once upon a time")
        #expect(Array(try first.prefill(prompt).logits) == Array(try second.prefill(prompt).logits))
    }

    /// Three sequences decoded together give the logits each gets decoded alone.
    @Test(arguments: [KVCacheType.f32, .q8])
    func batchedDecodeEqualsDecodingAlone(type: KVCacheType) throws {
        guard present else { return }
        let lm = try model(type)
        let prompts = ["Once upon a time", "The little dog ran to the", "Lily"].map { lm.encode($0) }
        let others = try (0..<2).map { _ in
            try InferenceSession(model: lm.model, keyType: type, valueType: type, contextLength: lm.session.contextLength, pool: lm.session.pool)
        }
        let sessions = [lm.session] + others
        var next = try zip(sessions, prompts).map { s, p in Self.argmax(try s.prefill(p).logits) }
        var batched: [[Float]] = []
        for _ in 0..<6 {
            let logits = try lm.session.decodeStep(sessions, tokens: next)
            let vocab = lm.config.vocabSize
            batched.append(Array(logits))
            next = (0..<sessions.count).map { Self.argmax(UnsafeBufferPointer(rebasing: logits[($0 * vocab)..<(($0 + 1) * vocab)])) }
        }
        // Alone: each prompt again in a fresh session, fed the same tokens one at a time.
        for (i, prompt) in prompts.enumerated() {
            let alone = try InferenceSession(model: lm.model, keyType: type, valueType: type, contextLength: lm.session.contextLength)
            var token = Self.argmax(try alone.prefill(prompt).logits)
            for step in 0..<6 {
                let logits = Array(try alone.forward([token]))
                let vocab = lm.config.vocabSize
                let row = Array(batched[step][(i * vocab)..<((i + 1) * vocab)])
                let scale = row.map(abs).max()!
                #expect(zip(row, logits).map { abs($0 - $1) }.max()! <= 1e-4 * scale, "sequence \(i) step \(step)")
                token = Self.argmax(row)
            }
        }
        #expect(throws: EdgeLMError.self) { try lm.session.decodeStep([lm.session, lm.session], tokens: [1, 2]) }
        #expect(throws: EdgeLMError.self) { try lm.session.decodeStep([lm.session], tokens: [1, 2]) }
    }

    static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int { logits.indices.max { logits[$0] < logits[$1] }! }
    static func argmax(_ logits: [Float]) -> Int { logits.indices.max { logits[$0] < logits[$1] }! }

    @Test func prefillReusesTheCachedPrefix() throws {
        guard present else { return }
        let lm = try model()
        let a = lm.encode("Once upon a time there was a girl"), b = lm.encode("Once upon a time there was a boy who")
        let first = try lm.session.prefill(a)
        #expect(first.evaluated == a.count)
        let shared = zip(a, b).prefix { $0 == $1 }.count
        let second = try lm.session.prefill(b)
        #expect(second.evaluated == b.count - shared)
        let again = try lm.session.prefill(b)
        #expect(again.evaluated == 1, "the same prompt re-runs only its last token")
        // The same logits as a fresh evaluation, up to the summation order of a batch against a single token.
        let fresh = try InferenceSession(model: lm.model, keyType: .f32, valueType: .f32)
        let reference = Array(try fresh.prefill(b).logits), reused = Array(again.logits)
        #expect(zip(reference, reused).map { abs($0 - $1) }.max()! <= 1e-4 * reference.map(abs).max()!)
        #expect(lm.session.tokens == b)
    }

    @Test func chatTemplatesAreRecognisedAndFormatted() throws {
        let cases: [(String, ChatTemplate)] = [
            ("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}", .llama3),
            ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}", .chatml),
            ("{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}", .gemma),
            ("{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n'}}{{ '<|assistant|>\n' }}", .phi3),
            ("{{ '[INST] ' + message['content'] + ' [/INST]' }}{{ message['content'] + eos_token}}", .mistral),
            ("{{ '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' }}{{ '[INST] ' + content + ' [/INST]' }}", .llama2),
            ("{{ '<|user|>\n' + message['content'] + eos_token }}{{ '<|assistant|>\n' }}", .zephyr),
        ]
        for (text, expected) in cases { #expect(ChatTemplate.recognise(text) == expected, "\(expected)") }
        #expect(ChatTemplate.recognise("{{ messages | tojson }}") == nil)
        let messages = [
            ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi"),
            ChatMessage(role: "assistant", content: "Hello."), ChatMessage(role: "user", content: "Bye"),
        ]
        #expect(
            try ChatTemplate.chatml.format(messages)
                == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
                + "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n")
        #expect(
            try ChatTemplate.llama3.format(Array(messages.prefix(2)))
                == "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\n")
        #expect(
            try ChatTemplate.gemma.format(Array(messages.prefix(3)))
                == "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>model\n")
        #expect(try ChatTemplate.mistral.format(messages) == "[INST] Be brief.\n\nHi [/INST]Hello.</s>[INST] Bye [/INST]")
        #expect(
            try ChatTemplate.llama2.format(messages)
                == "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]")
        #expect(try ChatTemplate.phi3.format([messages[1]]) == "<|user|>\nHi<|end|>\n<|assistant|>\n")
        #expect(throws: EdgeLMError.self) { try ChatTemplate.chatml.format([ChatMessage(role: "robot", content: "x")]) }
        // Tool results need a tool-call convention: ChatML has one (Hermes), Gemma does not here.
        #expect(try ChatTemplate.chatml.format([ChatMessage(role: "tool", content: "x", toolCallID: "c")]).contains("<tool_response>\nx\n</tool_response>"))
        #expect(throws: EdgeLMError.self) { try ChatTemplate.gemma.format([ChatMessage(role: "tool", content: "x", toolCallID: "c")]) }
    }

    /// A stop string split across tokens ends the text before it; a partial match that does not complete is
    /// released; the same generation without stops is the longer text.
    @Test func stopStringsMatchAcrossTokens() throws {
        guard present else { return }
        let lm = try model()
        let prompt = lm.encode("Once upon a time, there was a little")
        var free = GenerateParameters.greedy(maxTokens: 30)
        let full = try generateText(lm, prompt, free)
        let word = full.contains("named") ? "named" : String(full.split(separator: " ")[2])
        free.stop = [word]
        var reason: StopReason?
        let cut = try generateText(lm, prompt, free) { reason = $0 }
        #expect(cut == String(full[..<full.range(of: word)!.lowerBound]))
        #expect(reason == .stopString)
        free.stop = [word + "zzz"]
        #expect(try generateText(lm, prompt, free) == full, "a stop string that never completes holds nothing back")
    }

    func generateText(_ lm: LanguageModel, _ prompt: [Int], _ p: GenerateParameters, reason: (StopReason) -> Void = { _ in }) throws -> String {
        var text = ""
        let info = try lm.generate(promptTokens: prompt, parameters: p) { _, piece in
            text += piece
            return true
        }
        reason(info.stopReason)
        return text
    }

    @Test func secondChatTurnEvaluatesOnlyTheNewTokens() throws {
        guard present else { return }
        let lm = try model(.q8)
        #expect(throws: EdgeLMError.self) { try ChatSession(model: lm) }  // the file has no chat template
        let chat = try ChatSession(model: lm, template: .chatml, system: "You tell stories.")
        let first = try chat.respond(to: "Tell me about a cat.", parameters: .greedy(maxTokens: 20)) { _ in true }
        #expect(first.promptTokensEvaluated == first.promptTokens)
        let second = try chat.respond(to: "And then?", parameters: .greedy(maxTokens: 10)) { _ in true }
        let turn = lm.encode("<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n", addBOS: false).count
        #expect(second.promptTokensEvaluated <= turn + 3, "\(second.promptTokensEvaluated) evaluated of \(second.promptTokens)")
        #expect(second.promptTokens >= first.promptTokens + first.generatedTokens)
        #expect(chat.messages.map(\.role) == ["system", "user", "assistant", "user", "assistant"])
        chat.reset()
        #expect(chat.messages.map(\.role) == ["system"])
    }

    /// tokenizer_config.json's chat_template (string or named list) is stored in the file and recognised.
    @Test func chatTemplateTravelsFromTokenizerConfigToTheFile() throws {
        guard Fixtures.available(Fixtures.tiny656k + "/model.safetensors") else { return }
        let templates: [Any] = [
            "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}",
            [["name": "tool_use", "template": "{{ tools }}"], ["name": "default", "template": "<start_of_turn>user {{ x }}<end_of_turn>"]],
        ]
        for (template, expected) in zip(templates, [ChatTemplate.chatml, .gemma]) {
            let dir = TemporaryDirectory()
            let source = URL(fileURLWithPath: Fixtures.path(Fixtures.tiny656k))
            for name in ["config.json", "model.safetensors", "tokenizer.json"] {
                try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: URL(fileURLWithPath: dir.file(name)))
            }
            var config = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("tokenizer_config.json"))) as! [String: Any]
            config["chat_template"] = template
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir.file("tokenizer_config.json")))
            _ = try Converter.convert(try Checkpoint.open(path: dir.path, tokenizerPath: nil), to: dir.file("m.edgelm"), options: ConversionOptions(type: .q8))
            let lm = try LanguageModel(path: dir.file("m.edgelm"))
            #expect(lm.tokenizer.data.chatTemplate.flatMap(ChatTemplate.recognise) == expected)
            #expect(try ChatSession(model: lm).template == expected)
        }
    }
}
