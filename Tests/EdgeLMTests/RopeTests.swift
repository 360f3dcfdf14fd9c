import Foundation
import Testing
@testable import EdgeLM

/// RoPE tables as transformers computes them (llama3 is also checked end to end by the llama3 zoo golden).
@Suite struct RopeTests {
    let base = RopeTable.standard(theta: 10000, dims: 16).inverseFrequencies

    @Test func yarnBlendsInterpolationIntoExtrapolation() throws {
        // Context 256 over an original 64: factor 4. Correction range for beta 32..1 over 16 dims at theta 1e4:
        // floor(-0.99) -> 0 and ceil(2.02) -> 3, so pair 0 keeps its frequency, pairs >= 3 are divided by 4.
        let t = try RopeTable.compute(
            kind: .yarn, theta: 10000, dims: 16, parameters: ["factor": 4, "original_max_position_embeddings": 64],
            contextLength: 256, field: "rope_scaling", path: "test")
        #expect(abs(t.attentionFactor - (0.1 * log(4.0) + 1)) < 1e-12)
        #expect(t.inverseFrequencies[0] == base[0])
        for i in 3..<8 { #expect(abs(t.inverseFrequencies[i] / (base[i] / 4) - 1) < 1e-12) }
        let ramp = 1.0 / 3
        #expect(abs(t.inverseFrequencies[1] - (base[1] / 4 * ramp + base[1] * (1 - ramp))) < 1e-15)
        let explicit = try RopeTable.compute(
            kind: .yarn, theta: 10000, dims: 16, parameters: ["factor": 4, "attention_factor": 1.5],
            contextLength: 64, field: "rope_scaling", path: "test")
        #expect(explicit.attentionFactor == 1.5)
    }

    @Test func llama3KeepsHighAndDividesLowFrequencies() throws {
        let t = try RopeTable.compute(
            kind: .llama3, theta: 10000, dims: 16,
            parameters: ["factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 64],
            contextLength: 512, field: "rope_parameters", path: "test")
        for (i, f) in base.enumerated() {
            let wavelength = 2 * Double.pi / f
            if wavelength < 16 { #expect(t.inverseFrequencies[i] == f) }
            if wavelength > 64 { #expect(t.inverseFrequencies[i] == f / 8) }
        }
    }

    /// A GGUF asking for YaRN (`rope.scaling.type = yarn`, how llama.cpp's converter writes Qwen2.5's long
    /// context) is refused by that key's name; linear scaling is read.
    @Test func ggufYarnIsRefusedByName() throws {
        func open(_ type: String) throws -> Checkpoint {
            var w = TinyModel.gguf()
            w.set("llama.rope.scaling.type", .string(type))
            w.set("llama.rope.scaling.factor", .f32(4))
            let path = NSTemporaryDirectory() + "rope-\(type)-\(UUID().uuidString).gguf"
            defer { try? FileManager.default.removeItem(atPath: path) }
            try w.write(to: path)
            return try Checkpoint.open(path: path, tokenizerPath: nil)
        }
        #expect { try open("yarn") } throws: { e in
            if case let .invalidField(_, "llama.rope.scaling.type", message) = e as! EdgeLMError { message.contains("YaRN") } else { false }
        }
        let linear = try open("linear").config.rotary.tables![0]
        #expect(linear.kind == .linear && linear.inverseFrequencies[1] == RopeTable.standard(theta: 10000, dims: 16).inverseFrequencies[1] / 4)
    }

    /// Zoo folders with scaled RoPE (their config's `rope_parameters` replaced) against float64 transformers 5.24 on
    /// the zoo window (BOS + 255 text tokens): mean NLL within 1e-4 relative perplexity. The goldens come from
    /// `scripts/rope-goldens.py` (torch, outside CI), which lists the same variants; YaRN's with the original context
    /// at a quarter, half and an eighth of the model's, default and explicit beta ranges, a factor that disagrees with
    /// the contexts' ratio, and DeepSeek's mscale pair.
    static let scaledRopeGoldens: [(name: String, family: String, type: String, rope: [String: Double], meanNLL: Double)] = [
        ("qwen2-yarn4", "qwen2", "yarn", ["rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 128], 4.179049823274855),
        (
            "qwen2-yarn2-betas", "qwen2", "yarn",
            [
                "rope_theta": 1e6, "factor": 2.0, "original_max_position_embeddings": 256,
                "beta_fast": 16.0, "beta_slow": 2.0,
            ], 4.091061824342721
        ),
        ("llama3-yarn8", "llama3", "yarn", ["rope_theta": 500000.0, "factor": 8.0, "original_max_position_embeddings": 64], 4.200226905310291),
        // A factor that disagrees with max_position_embeddings / original: transformers (and EdgeLM) use the ratio, 2.
        ("qwen2-yarn-context-ratio", "qwen2", "yarn", ["rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 256], 4.103675189023136),
        (
            "llama3-yarn8-mscale", "llama3", "yarn",
            [
                "rope_theta": 500000.0, "factor": 8.0, "original_max_position_embeddings": 64,
                "mscale": 1.0, "mscale_all_dim": 0.5,
            ], 4.173371420241757
        ),
        ("llama3-linear2", "llama3", "linear", ["rope_theta": 500000.0, "factor": 2.0], 4.330101267649808),
    ]

    @Test(arguments: scaledRopeGoldens.indices)
    func scaledRopeMatchesTransformers(index: Int) throws {
        let golden = Self.scaledRopeGoldens[index]
        guard Fixtures.available(ZooFixture.folder(golden.family) + "/model.safetensors"), Fixtures.available("fixtures/zoo-\(golden.family).json") else {
            return
        }
        let dir = TemporaryDirectory()
        try ZooFixture.linkFolder(golden.family, into: dir, config: nil)
        var config =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path(ZooFixture.folder(golden.family)) + "/config.json")))
            as! [String: Any]
        var rope: [String: Any] = golden.rope
        rope["rope_type"] = golden.type
        config["rope_parameters"] = rope
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir.file("config.json")))
        _ = try Converter.convert(try Checkpoint.open(path: dir.path, tokenizerPath: nil), to: dir.file("m.edgelm"), options: ConversionOptions(type: .f32))
        let window = try ZooFixture(golden.family).windowIds
        let lm = try LanguageModel(path: dir.file("m.edgelm"), threads: 2, keyType: .f32, valueType: .f32)
        let report = try PerplexityEvaluator.run(
            model: lm, reference: nil, tokens: Array(window.dropFirst()),
            options: PerplexityOptions(context: window.count, chunks: 1, addBOS: true))
        print("\(golden.name): mean NLL \(report.meanNLL.value) vs transformers \(golden.meanNLL)")
        #expect(abs(exp(report.meanNLL.value - golden.meanNLL) - 1) <= 1e-4, "\(golden.name): \(report.meanNLL.value) vs \(golden.meanNLL)")
    }

    @Test func refusesBadParameters() {
        #expect(throws: EdgeLMError.self) {
            try RopeTable.compute(kind: .linear, theta: 10000, dims: 16, parameters: ["factor": 0.5], contextLength: 64, field: "f", path: "t")
        }
        #expect(throws: EdgeLMError.self) {
            try RopeTable.compute(kind: .llama3, theta: 10000, dims: 16, parameters: ["factor": 8], contextLength: 64, field: "f", path: "t")
        }
    }
}
