import Foundation
import Testing
@testable import EdgeLM

/// RoPE tables as transformers computes them (llama3 is also checked end to end by the llama3 zoo golden).
@Suite struct RopeTests {
    let base = RopeTable.standard(theta: 10000, dims: 16).inverseFrequencies

    @Test func yarnBlendsInterpolationIntoExtrapolation() throws {
        // Context 256 over an original 64: factor 4. Correction range for beta 32..1 over 16 dims at theta 1e4:
        // floor(-0.99) -> 0 and ceil(2.02) -> 3, so pair 0 keeps its frequency, pairs >= 3 are divided by 4.
        let t = try RopeTable.compute(kind: .yarn, theta: 10000, dims: 16, parameters: ["factor": 8, "original_max_position_embeddings": 64],
                                      contextLength: 256, field: "rope_scaling", path: "test")
        #expect(abs(t.attentionFactor - (0.1 * log(4.0) + 1)) < 1e-12)
        #expect(t.inverseFrequencies[0] == base[0])
        for i in 3..<8 { #expect(abs(t.inverseFrequencies[i] / (base[i] / 4) - 1) < 1e-12) }
        let ramp = 1.0 / 3
        #expect(abs(t.inverseFrequencies[1] - (base[1] / 4 * ramp + base[1] * (1 - ramp))) < 1e-15)
        let explicit = try RopeTable.compute(kind: .yarn, theta: 10000, dims: 16, parameters: ["factor": 4, "attention_factor": 1.5],
                                             contextLength: 64, field: "rope_scaling", path: "test")
        #expect(explicit.attentionFactor == 1.5)
    }

    @Test func llama3KeepsHighAndDividesLowFrequencies() throws {
        let t = try RopeTable.compute(kind: .llama3, theta: 10000, dims: 16,
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
        let linear = try open("linear").config.ropeTables![0]
        #expect(linear.kind == .linear && linear.inverseFrequencies[1] == RopeTable.standard(theta: 10000, dims: 16).inverseFrequencies[1] / 4)
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
