import Foundation
import Testing
@testable import EdgeLM

@Suite struct ImportTests {
    @Test func storiesParsesIdenticallyFromGGUFv1v3AndLlama2C() throws {
        guard Fixtures.available(Fixtures.stories + "stories260K-v1.gguf"), Fixtures.available(Fixtures.stories + "stories260K.bin"),
            Fixtures.available(Fixtures.stories + "tok512.bin")
        else { return }
        let v3 = try Checkpoint.open(path: Fixtures.storiesGGUF, tokenizerPath: nil)
        let v1 = try Checkpoint.open(path: Fixtures.path(Fixtures.stories + "stories260K-v1.gguf"), tokenizerPath: nil)
        let bin = try Checkpoint.open(
            path: Fixtures.path(Fixtures.stories + "stories260K.bin"),
            tokenizerPath: Fixtures.path(Fixtures.stories + "tok512.bin"))
        #expect(v3.format == "gguf v3" && v1.format == "gguf v1" && bin.format == "llama2.c")
        let expected = ModelConfig(
            dim: 64, layers: 5, heads: 8, kvHeads: 4, ffnDim: 172, vocabSize: 512, contextLength: 512,
            ropeLayout: .interleaved, normEpsilon: 1e-5, tiedOutput: true)
        for c in [v3, v1, bin] {
            #expect(c.config == expected, "\(c.format)")
            #expect(Set(c.tensors.keys) == Set(expected.tensorShapes.map(\.name)))
        }
        for name in v3.tensors.keys {
            let a = try v3.tensors[name]!.floats(path: ""), b = try v1.tensors[name]!.floats(path: ""), c = try bin.tensors[name]!.floats(path: "")
            #expect(a == b && a == c, "tensor \(name)")
        }
        #expect(v3.tokenizer == v1.tokenizer)
        #expect(bin.tokenizer.pieces == v3.tokenizer.pieces)
        #expect(bin.tokenizer.scores == v3.tokenizer.scores)
        #expect(bin.tokenizer.types == v3.tokenizer.types)
        #expect(bin.tokenizer.bos == 1 && bin.tokenizer.eos == 2 && v3.tokenizer.unk == 0)
        #expect(v3.sha256() == "3c4a7c3a8313e00ae6a6b64df717828f4ba18391ea31ffb01abe9a2c4f7bb9a9")
        #expect(bin.sha256() == "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696")
    }

    @Test(arguments: [1, 2, 3])
    func writtenGGUFVersionsReadBack(version: Int) throws {
        let dir = TemporaryDirectory()
        let path = dir.file("v\(version).gguf")
        try TinyModel.gguf(version: version).write(to: path)
        let c = try Checkpoint.open(path: path, tokenizerPath: nil)
        #expect(c.format == "gguf v\(version)")
        #expect(c.config == TinyModel.config)
        #expect(c.tokenizer == TinyModel.tokenizer)
    }

    @Test func f16TensorsWidenExactly() throws {
        let dir = TemporaryDirectory()
        var w = GGUFWriter()
        w.setLlama(TinyModel.config, tokenizer: TinyModel.tokenizer)
        var rng = TestRandom(seed: 9)
        var original: [String: [Float]] = [:]
        for (name, shape) in TinyModel.config.tensorShapes {
            let v = rng.normals(shape.reduce(1, *), std: 0.02).map { HalfFloat.toFloat(HalfFloat.fromFloat($0)) }
            original[name] = v
            w.addTensor(name + ".weight", shape: shape, type: .f16, values: v)
        }
        try w.write(to: dir.file("h.gguf"))
        let c = try Checkpoint.open(path: dir.file("h.gguf"), tokenizerPath: nil)
        for (name, v) in original { #expect(try c.tensors[name]!.floats(path: "") == v) }
    }

    @Test func rejectsHostileGGUFHeaders() throws {
        let dir = TemporaryDirectory()
        let good = TinyModel.gguf().encoded()
        func check(_ bytes: [UInt8], _ name: String, _ matches: (EdgeLMError) -> Bool) throws {
            let p = dir.file(name)
            try Data(bytes).write(to: URL(fileURLWithPath: p))
            #expect { try Checkpoint.open(path: p, tokenizerPath: nil) } throws: { ($0 as? EdgeLMError).map(matches) ?? false }
        }
        var v = good
        v[4] = 7
        try check(v, "version", { if case .unsupportedVersion = $0 { true } else { false } })
        var huge = good
        for i in 8..<16 { huge[i] = 0xFF }  // tensor count near 2^64
        try check(huge, "count", { if case .invalidField(_, "tensor count", _) = $0 { true } else { false } })
        try check(Array(good.prefix(good.count - 1000)), "trunc", { if case .tensorOutOfBounds = $0 { true } else { false } })
        try check(Array(good.prefix(30)), "short", { if case .truncated = $0 { true } else { false } })
    }

    @Test func rejectsNaNWeightsAndLeavesNoOutput() throws {
        let dir = TemporaryDirectory()
        try TinyModel.gguf(poison: "blk.1.ffn_down").write(to: dir.file("nan.gguf"))
        let c = try Checkpoint.open(path: dir.file("nan.gguf"), tokenizerPath: nil)
        let out = dir.file("nan.edgelm")
        #expect { try Converter.convert(c, to: out, options: ConversionOptions(type: .q8)) } throws: {
            ($0 as? EdgeLMError).map { if case .nonFiniteWeight(_, "blk.1.ffn_down", 96 * 64 / 2) = $0 { true } else { false } } ?? false
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["nan.gguf"])
    }

    @Test func quantizationErrorIsReportedOnRequest() throws {
        let dir = TemporaryDirectory()
        try TinyModel.gguf().write(to: dir.file("t.gguf"))
        let c = try Checkpoint.open(path: dir.file("t.gguf"), tokenizerPath: nil)
        let quiet = try Converter.convert(c, to: dir.file("a.edgelm"), options: ConversionOptions(type: .q4))
        #expect(quiet.tensors.allSatisfy { $0.error == nil })
        let measured = try Converter.convert(c, to: dir.file("b.edgelm"), options: ConversionOptions(type: .q4, measureError: true))
        let q = measured.tensors.first { $0.name == "blk.0.attn_q" }?.error
        #expect((q?.relativeRMS ?? 0) > 0.05 && (q?.relativeRMS ?? 1) < 0.15)
        #expect(measured.tensors.first { $0.name == "output_norm" }?.error == nil)
    }

    @Test func refusesToOverwriteWithoutForce() throws {
        let dir = TemporaryDirectory()
        try TinyModel.gguf().write(to: dir.file("t.gguf"))
        let c = try Checkpoint.open(path: dir.file("t.gguf"), tokenizerPath: nil)
        let out = dir.file("t.edgelm")
        try Data("precious".utf8).write(to: URL(fileURLWithPath: out))
        #expect(throws: EdgeLMError.self) { try Converter.convert(c, to: out, options: ConversionOptions(type: .q4)) }
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "precious")
        _ = try Converter.convert(c, to: out, options: ConversionOptions(type: .q4, overwrite: true))
        #expect(try ModelFile(path: out, verify: true).metadata.quantization.type == .q4)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["t.edgelm", "t.gguf"])
        #expect(throws: EdgeLMError.self) { try Converter.convert(c, to: dir.file("missing/dir/x.edgelm"), options: ConversionOptions(type: .q8)) }
    }
}
