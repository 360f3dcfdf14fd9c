import Foundation
import Testing
@testable import EdgeLM

/// Tool definitions, calls and results in the Hermes (ChatML) and Llama 3 JSON formats: rendered into the prompt,
/// parsed back from replies, and forced by the tool-call constraint.
struct ToolCallTests {
    static let weather = ToolDefinition(
        name: "get_weather", description: "Weather in a city",
        parameters: try! JSONValue.parse(#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#))
    static let conversation = [
        ChatMessage(role: "user", content: "Weather in Paris?"),
        ChatMessage(role: "assistant", content: "", toolCalls: [ToolCall(id: "call_1", name: "get_weather", arguments: #"{"city": "Paris"}"#)]),
        ChatMessage(role: "tool", content: #"{"temp": 18}"#, toolCallID: "call_1"),
    ]

    @Test func hermesRendersToolsCallsAndResults() throws {
        let text = try ChatTemplate.chatml.format(Self.conversation, tools: [Self.weather])
        #expect(text.hasPrefix("<|im_start|>system\n# Tools\n"))
        #expect(
            text.contains(
                #"<tools>"# + "\n"
                    + #"{"type":"function","function":{"name":"get_weather","description":"Weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}"#
                    + "\n</tools>"))
        #expect(text.contains("<|im_start|>assistant\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call><|im_end|>\n"))
        #expect(text.hasSuffix("<|im_start|>user\n<tool_response>\n{\"temp\": 18}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"))
    }

    @Test func llama3RendersToolsCallsAndResults() throws {
        let text = try ChatTemplate.llama3.format(Self.conversation, tools: [Self.weather])
        #expect(text.hasPrefix("<|start_header_id|>system<|end_header_id|>\n\nYou have access to the following functions."))
        #expect(text.contains("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\":\"get_weather\",\"parameters\":{\"city\":\"Paris\"}}<|eot_id|>"))
        #expect(text.hasSuffix("<|start_header_id|>ipython<|end_header_id|>\n\n{\"temp\": 18}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"))
        // Gemma's and Phi-3's templates define no tool convention: refused by name.
        for template in [ChatTemplate.gemma, .phi3] {
            #expect(
                throws: EdgeLMError.invalidArgument(
                    "tools: the \(template.rawValue) chat format has no tool-call convention here (supported: chatml, llama3, mistral)")
            ) {
                try template.format(Self.conversation, tools: [Self.weather])
            }
        }
    }

    @Test func mistralRendersToolsCallsAndResults() throws {
        let text = try ChatTemplate.mistral.format(
            [ChatMessage(role: "system", content: "Be brief.")] + Self.conversation
                + [ChatMessage(role: "assistant", content: "18 degrees."), ChatMessage(role: "user", content: "And Rome?")],
            tools: [Self.weather])
        #expect(
            text == "[INST] Weather in Paris? [/INST]"
                + #"[TOOL_CALLS] [{"name":"get_weather","arguments":{"city":"Paris"}}]</s>[TOOL_RESULTS] {"content":{"temp":18}}[/TOOL_RESULTS]"#
                + "18 degrees.</s>"
                + #"[AVAILABLE_TOOLS] [{"type":"function","function":{"name":"get_weather","description":"Weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}][/AVAILABLE_TOOLS]"#
                + "[INST] Be brief.\n\nAnd Rome? [/INST]")
        let reply = #"[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]"#
        for text in [reply, String(reply.dropFirst("[TOOL_CALLS] ".count))] {
            let parsed = ToolCallFormat.mistral.parse(text, tools: [Self.weather])
            #expect(parsed.calls.map(\.arguments) == [#"{"city":"Oslo"}"#, #"{"city":"Rome"}"#] && parsed.content.isEmpty, "\(text)")
        }
        #expect(ToolCallFormat.mistral.parse("[1, 2] are numbers.", tools: [Self.weather]).calls.isEmpty)
        let one = try ToolCallFormat.mistral.constraint([Self.weather], parallel: false).grammar()
        let call = #"{"name":"get_weather","arguments":{"city":"A"}}"#
        #expect(TokenConstraint.matches(one, "[" + call + "]"))
        #expect(!TokenConstraint.matches(one, "[" + call + "," + call + "]") && !TokenConstraint.matches(one, "[]"))
        #expect(TokenConstraint.matches(try ToolCallFormat.mistral.constraint([Self.weather], parallel: true).grammar(), "[" + call + ", " + call + "]"))
    }

    @Test func repliesParseIntoCalls() {
        let hermes = ToolCallFormat.hermes.parse(
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Rome\"}}</tool_call>",
            tools: [Self.weather])
        #expect(hermes.content == "Let me check.")
        #expect(hermes.calls.map(\.arguments) == [#"{"city":"Oslo"}"#, #"{"city":"Rome"}"#])
        #expect(Set(hermes.calls.map(\.id)).count == 2)
        let unknown = ToolCallFormat.hermes.parse("<tool_call>{\"name\":\"launch\",\"arguments\":{}}</tool_call>", tools: [Self.weather])
        #expect(unknown.calls.isEmpty && unknown.content.contains("launch"))
        let llama = ToolCallFormat.llama3JSON.parse(" {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Lima\"}}", tools: [Self.weather])
        #expect(llama.calls.map(\.name) == ["get_weather"] && llama.content.isEmpty)
        #expect(ToolCallFormat.llama3JSON.parse("It is sunny.", tools: [Self.weather]).calls.isEmpty)
    }

    @Test func theToolConstraintAcceptsExactlyValidCalls() throws {
        let one = try ToolCallFormat.hermes.constraint([Self.weather], parallel: false).grammar()
        #expect(TokenConstraint.matches(one, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"))
        #expect(!TokenConstraint.matches(one, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"))
        #expect(!TokenConstraint.matches(one, "<tool_call>\n{\"name\": \"other\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"))
        let call = "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"A\"}}\n</tool_call>"
        #expect(!TokenConstraint.matches(one, call + "\n" + call))
        #expect(TokenConstraint.matches(try ToolCallFormat.hermes.constraint([Self.weather], parallel: true).grammar(), call + "\n" + call))
        #expect(
            TokenConstraint.matches(
                try ToolCallFormat.llama3JSON.constraint([Self.weather], parallel: false).grammar(),
                "{\"name\":\"get_weather\",\"parameters\":{\"city\":\"A\"}}"))
    }
}
