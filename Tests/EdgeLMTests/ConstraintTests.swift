import Foundation
import Testing
@testable import EdgeLM

/// The constraint compilers (regular expressions, GBNF, JSON Schema) and the grammar automaton, checked on
/// whole strings; the token masks are checked against the automaton token by token.
struct ConstraintTests {
    static func grammar(_ c: OutputConstraint) throws -> Grammar { try c.grammar() }

    static func schema(_ text: String) throws -> Grammar { try OutputConstraint.jsonSchema(JSONValue.parse(text)).grammar() }

    @Test func regularExpressionsMatchWholeStrings() throws {
        let cases: [(String, [String], [String])] = [
            ("a(b|cd)*e?", ["a", "ab", "acdbe", "abcdcd"], ["", "b", "ac", "abee"]),
            ("[0-9]{2,3}-[^x-z]", ["12-a", "123-é", "99-w"], ["1-a", "1234-a", "12-y", "12-"]),
            (#"\d+\.\d*"#, ["1.", "10.25"], [".5", "1", "a.1"]),
            (#"[\w-]+@[a-z]+\.(com|org)"#, ["a_b-c@site.org"], ["a b@site.org", "a@site.net"]),
            ("(a+)+b", ["ab", "aaaab"], ["aaaa", "b"]),
            (#"\u00e9+|[α-ω]{2}"#, ["é", "ééé", "αβ"], ["e", "α", "αβγ"]),
            ("x{0}y", ["y"], ["xy"]),
        ]
        for (pattern, good, bad) in cases {
            let g = try Self.grammar(.regex(pattern))
            for s in good { #expect(TokenConstraint.matches(g, s), "\(pattern) should match \(s)") }
            for s in bad { #expect(!TokenConstraint.matches(g, s), "\(pattern) should not match \(s)") }
        }
    }

    @Test func unsupportedRegularExpressionsAreRefusedByName() {
        let cases = [
            ("(a)\\1", "backreferences"), ("(?=a)", "lookaround"), ("\\bword", "word boundaries"),
            ("\\p{L}", "Unicode property"), ("a{3,1}", "below the minimum"), ("a{99999}", "above 10000"),
            ("(ab", "missing ')'"), ("a)", "unbalanced"), ("*a", "nothing to repeat"), ("a^b", "'^'"),
        ]
        for (pattern, words) in cases {
            #expect(throws: EdgeLMError.self, "\(pattern)") { try Self.grammar(.regex(pattern)) }
            do { _ = try Self.grammar(.regex(pattern)) } catch { #expect("\(error)".contains(words), "\(pattern): \(error)") }
        }
    }

    @Test func gbnfGrammars() throws {
        let arithmetic = """
            # sums and products of small numbers
            root ::= expr
            expr ::= term ("+" term)*
            term ::= factor ("*" factor)*
            factor ::= [0-9]{1,3} | "(" expr ")"
            """
        let g = try Self.grammar(.grammar(arithmetic))
        for s in ["1", "1+2*3", "(1+2)*345", "((7))"] { #expect(TokenConstraint.matches(g, s), "\(s)") }
        for s in ["", "1+", "(1", "1234", "1++2", "a"] { #expect(!TokenConstraint.matches(g, s), "\(s)") }
        let classes = try Self.grammar(.grammar(#"root ::= [^"\\]+ "\n" . "\x41" [\u00e0-\u00ff]"#))
        #expect(TokenConstraint.matches(classes, "ab\n!Aé"))
        #expect(!TokenConstraint.matches(classes, "a\"b\n!Aé"))
        let failures = [
            ("root ::= root \"a\" | \"b\"", "left-recursive"), ("root ::= x? root \"a\" | \"b\"\nx ::= \"y\"", "left-recursive"),
            ("root ::= missing", "never defined"), ("start ::= \"a\"", "no 'root'"), ("root ::= \"a\"\nroot ::= \"b\"", "defined twice"),
            ("root ::= \"a\" root", "cannot be satisfied"), ("root ::= [z-a]", "out of order"),
        ]
        for (text, words) in failures {
            do {
                _ = try Self.grammar(.grammar(text))
                Issue.record("\(text) should be refused")
            } catch { #expect("\(error)".contains(words), "\(text): \(error)") }
        }
    }

    @Test func integerRangesAreExact() throws {
        let bounds: [(Int?, Int?)] = [(-23, 157), (0, 9), (10, 99), (7, nil), (nil, -12), (-5, -5), (100, 1000), (nil, 42), (-120, nil)]
        for (lo, hi) in bounds {
            var schema = #"{"type":"integer""#
            if let lo { schema += #","minimum":\#(lo)"# }
            if let hi { schema += #","maximum":\#(hi)"# }
            let g = try Self.schema(schema + "}")
            for n in -1200...1200 {
                let inside = (lo.map { n >= $0 } ?? true) && (hi.map { n <= $0 } ?? true)
                #expect(TokenConstraint.matches(g, String(n)) == inside, "\(schema) on \(n)")
            }
            #expect(!TokenConstraint.matches(g, "007"))
        }
        let exclusive = try Self.schema(#"{"type":"integer","exclusiveMinimum":3,"exclusiveMaximum":6}"#)
        #expect((0...9).filter { TokenConstraint.matches(exclusive, String($0)) } == [4, 5])
    }

    @Test func jsonSchemaShapes() throws {
        let person = """
            {"type":"object","properties":{"name":{"type":"string","minLength":1,"maxLength":5},
             "age":{"type":"integer","minimum":0,"maximum":150},"tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":2},
             "email":{"type":"string","format":"email"},"kind":{"const":"person"}},
             "required":["name","age"],"additionalProperties":false}
            """
        let g = try Self.schema(person)
        let good = [
            #"{"name":"Ann","age":30}"#, #"{"name":"Ann","age":30,"tags":["a","b"]}"#,
            #"{ "name" : "Bo\"b",\#n  "age": 150, "kind": "person" }"#, #"{"name":"é","age":0,"email":"a.b@c.de"}"#,
            #"{"age":30,"name":"Ann"}"#, #"{"kind":"person","tags":[],"age":1,"name":"A"}"#,
        ]
        let bad = [
            #"{"name":"","age":30}"#, #"{"name":"Annabel","age":30}"#, #"{"age":30,"name":"Ann","age":31}"#, #"{"name":"Ann"}"#,
            #"{"name":"Ann","age":151}"#, #"{"name":"Ann","age":30,"tags":["a","b","a"]}"#, #"{"name":"Ann","age":30,"x":1}"#,
            #"{"name":"Ann","age":30,"tags":["c"]}"#, #"{"name":"Ann","age":30,"email":"nope"}"#, #"{"name":"Ann","age":3.5}"#,
        ]
        for s in good { #expect(TokenConstraint.matches(g, s), "\(s)") }
        for s in bad { #expect(!TokenConstraint.matches(g, s), "\(s)") }
        // Past `anyOrderLimit` members, the order of `properties`.
        let names = (0...JSONSchemaCompiler.anyOrderLimit).map { "m\($0)" }
        let wide = try Self.schema(#"{"type":"object","properties":{"# + names.map { #""\#($0)":{"type":"integer"}"# }.joined(separator: ",") + "}}")
        #expect(TokenConstraint.matches(wide, #"{"m0":1,"m2":3}"#))
        #expect(!TokenConstraint.matches(wide, #"{"m2":3,"m0":1}"#))

        let tree = """
            {"$defs":{"node":{"type":"object","properties":{"value":{"type":"number"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},
             "required":["value"],"additionalProperties":false}},"$ref":"#/$defs/node"}
            """
        let t = try Self.schema(tree)
        #expect(TokenConstraint.matches(t, #"{"value":1,"children":[{"value":-2.5e3,"children":[]},{"value":0}]}"#))
        #expect(!TokenConstraint.matches(t, #"{"value":1,"children":[{"children":[]}]}"#))

        let mixed = try Self.schema(
            #"{"anyOf":[{"type":"string","pattern":"^[A-Z]{2}[0-9]+$"},{"type":"null"},{"type":"array","prefixItems":[{"type":"boolean"}],"items":false}]}"#)
        for s in [#""AB12""#, "null", "[true]", "[]"] { #expect(TokenConstraint.matches(mixed, s), "\(s)") }
        for s in [#""Ab12""#, #""AB""#, "[true,false]", "1"] { #expect(!TokenConstraint.matches(mixed, s), "\(s)") }

        let formats = try Self.schema(#"{"type":"array","prefixItems":[{"format":"date"},{"format":"date-time"},{"format":"uuid"},{"format":"time"}]}"#)
        #expect(TokenConstraint.matches(formats, #"["2026-12-02","2026-12-02T22:13:00Z","123e4567-e89b-12d3-a456-426614174000","08:00:00+01:00"]"#))
        #expect(!TokenConstraint.matches(formats, #"["2026-13-02"]"#))

        let open = try Self.schema(#"{"properties":{"a":{"type":"integer"}}}"#)
        for s in [#"{}"#, #"{"a":1}"#, #"{"a":1,"b":[{"c":null}]}"#, #"{"b":true}"#, "3", #""text""#] { #expect(TokenConstraint.matches(open, s), "\(s)") }
        #expect(!TokenConstraint.matches(open, #"{"a":"x"}"#))
    }

    @Test func schemaErrorsNameTheProblem() {
        let cases = [
            (#"{"type":"string","not":{}}"#, "keyword 'not' is not supported"),
            (#"{"type":"integer","minimum":5,"maximum":3}"#, "cannot be satisfied"),
            (#"{"enum":[]}"#, "cannot be satisfied"),
            (#"{"type":"strin"}"#, "unknown type 'strin'"),
            (##"{"$ref":"#/$defs/missing"}"##, "points to nothing"),
            (#"{"$ref":"https://example.com/s.json"}"#, "references outside the schema are not supported"),
            (#"{"type":"string","format":"hostname"}"#, "format 'hostname' is not supported"),
            (#"{"type":"number","maximum":1.5}"#, "'maximum' on a number"),
            (##"{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}"##, "cannot be satisfied"),
            (#"{"type":"array","uniqueItems":true}"#, "'uniqueItems' is not supported"),
        ]
        for (schema, words) in cases {
            do {
                _ = try Self.schema(schema)
                Issue.record("\(schema) should be refused")
            } catch { #expect("\(error)".contains(words), "\(schema): \(error)") }
        }
    }

    @Test func hugeAndDeepInputsAreRefusedQuickly() throws {
        let start = Date()
        let values = (0..<200_000).map { "\"value-\($0)-with-some-length\"" }.joined(separator: ",")
        do {
            _ = try Self.schema(#"{"enum":[\#(values)]}"#)
            Issue.record("a 200,000-value enum should be refused")
        } catch { #expect("\(error)".contains("too large"), "\(error)") }
        let deep = String(repeating: #"{"type":"array","items":"#, count: 300) + "{}" + String(repeating: "}", count: 300)
        #expect(throws: EdgeLMError.self) { try Self.schema(deep) }
        // Nested counts repeat rules, not their expansions: a billion a's in a few thousand symbols.
        #expect(try Self.grammar(.regex("((a{1000}){1000}){1000}")).size < 10_000)
        #expect(Date().timeIntervalSince(start) < 20)
    }

    /// Every token of a real vocabulary: the mask allows exactly the tokens the automaton can advance by; the
    /// tokens of a valid output (with leading-space tokens and tokens spanning several JSON pieces) are allowed one
    /// by one and complete the constraint; end-of-generation comes only at the end.
    @Test func masksAgreeWithTheAutomaton() throws {
        guard Fixtures.available(RealModelTests.gguf) else { return }
        let tokenizer = try Tokenizer(data: try Checkpoint.open(path: Fixtures.path(RealModelTests.gguf), tokenizerPath: nil).tokenizer)
        let schema =
            #"{"type":"object","properties":{"n":{"type":"integer","maximum":99},"s":{"type":"string","maxLength":3}},"required":["n","s"],"additionalProperties":false}"#
        let c = try TokenConstraint(.jsonSchema(JSONValue.parse(schema)), tokenizer: tokenizer)
        let output = #"{"n": 42, "s": "a\"é"}"#
        let ids = tokenizer.encode(output)
        #expect(ids.count < output.utf8.count, "multi-character tokens")
        var state = c.initialState(atSequenceStart: false)
        for (step, id) in ids.enumerated() {
            let mask = c.mask(state)
            #expect(mask.allows(id), "token \(step) '\(String(decoding: tokenizer.bytes(of: id), as: UTF8.self))'")
            #expect(!mask.allowsEnd)
            for other in stride(from: step, to: tokenizer.vocabSize, by: 13) {
                #expect((c.advance(state, token: other) != nil) == mask.allows(other), "token \(other) at step \(step)")
            }
            state = try #require(c.advance(state, token: id))
        }
        #expect(c.isComplete(state))
        #expect(c.mask(state).allowsEnd && c.mask(state).count == 0)
        // Too long a string, a number above the maximum: refused mid-token.
        for bad in [#"{"n": 42, "s": "abcd"}"#, #"{"n": 100, "s": ""}"#] {
            var s: TokenConstraint.State? = c.initialState(atSequenceStart: false)
            for id in tokenizer.encode(bad) { s = s.flatMap { c.advance($0, token: id) } }
            #expect(s == nil, "\(bad)")
        }
    }
}

/// Constrained generation end to end on stories260K (a SentencePiece vocabulary: the first token's leading space
/// is dropped from the text and from what the constraint sees).
struct ConstrainedGenerationTests {
    struct Character: Decodable, Equatable {
        let name: String
        let age: Int
        let kind: String
    }

    @Test func typedValuesDecodeFromSchemaConstrainedOutput() throws {
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 2)
        let schema = try JSONValue.parse(
            #"{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":1,"maximum":12},"kind":{"enum":["cat","dog"]}},"required":["name","age","kind"],"additionalProperties":false}"#
        )
        for seed: UInt64 in [1, 2, 3] {
            var p = GenerateParameters.greedy(maxTokens: 200)
            p.sampling.temperature = 1
            p.sampling.seed = seed
            let value = try lm.generateValue(Character.self, prompt: "Once upon a time", schema: schema, parameters: p)
            #expect((1...12).contains(value.age) && ["cat", "dog"].contains(value.kind) && value.name.count <= 8, "\(value)")
        }
        // Greedy output through the plain API: the same text as the typed call decoded, mask times reported per step.
        var p = GenerateParameters.greedy(maxTokens: 200)
        p.constraint = .regex("[A-Z][a-z]+ (is|was) [0-9]{1,2}")
        var text = ""
        let info = try lm.generate(promptTokens: lm.encode("Once upon a time"), parameters: p) { _, piece in
            text += piece; return true
        }
        #expect(info.stopReason == .endOfSequence)
        #expect(text.wholeMatch(of: /[A-Z][a-z]+ (is|was) [0-9]{1,2}/) != nil, "\(text)")
        #expect(info.maskSeconds.count + info.forcedTokens == info.generatedTokens)
    }

    /// Tokens the constraint forces are fed in batches without a sample: on SmolLM2's byte-level vocabulary a literal
    /// leaves exactly one token at some steps. The output is token for token what sampling every step gives
    /// (`logprobs` turns fast-forward off, since it reports what the sampler saw at each token).
    @Test func forcedTokensFastForwardToTheSameOutput() throws {
        guard let lm = try RealModelTests.keptLanguageModel() else { return }
        var p = GenerateParameters.greedy(maxTokens: 100)
        p.constraint = .regex(" [0-9]{4}-[0-9]{2}-[0-9]{2}, rocket number 12345678 named Apollo-XVII-ZZZZ")
        var runs: [(tokens: [Int], forced: Int, text: String)] = []
        for logprobs in [nil, 0] as [Int?] {
            p.logprobs = logprobs
            var text = ""
            let info = try lm.generate(promptTokens: lm.encode("The launch date was"), parameters: p) { _, piece in
                text += piece; return true
            }
            #expect(info.stopReason == .endOfSequence)
            runs.append((info.tokens, info.forcedTokens, text))
        }
        #expect(runs[0].forced >= 5, "forced \(runs[0].forced) of \(runs[0].tokens.count)")
        #expect(runs[1].forced == 0)
        #expect(runs[0].tokens == runs[1].tokens)
        #expect(runs[0].text.hasSuffix(", rocket number 12345678 named Apollo-XVII-ZZZZ"), "\(runs[0].text)")
    }
}
