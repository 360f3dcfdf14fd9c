import Foundation
import Testing
@testable import EdgeLM

/// GPTQ's pieces on synthetic matrices: the inverse-Hessian factor, the degenerate case where it must
/// equal plain importance-weighted rounding, and the output error it exists to lower.
@Suite struct GPTQTests {
    /// x = mixing · z: activations whose columns are correlated, as real layer inputs are.
    static func activations(tokens: Int, cols: Int, seed: UInt64) -> [Float] {
        var rng = TestRandom(seed: seed)
        let mixing = (0..<(cols * cols)).map { _ in rng.uniform() - 0.5 }
        var x = [Float](repeating: 0, count: tokens * cols)
        for t in 0..<tokens {
            let z = (0..<cols).map { j in (rng.uniform() - 0.5) * (j % 7 == 0 ? 6 : 1) }
            for i in 0..<cols { x[t * cols + i] = (0..<cols).reduce(0) { $0 + mixing[i * cols + $1] * z[$1] } }
        }
        return x
    }

    static func gram(_ x: [Float], tokens: Int, cols: Int) -> [Float] {
        var h = [Float](repeating: 0, count: cols * cols)
        for t in 0..<tokens { for i in 0..<cols { for j in 0..<cols { h[i * cols + j] += x[t * cols + i] * x[t * cols + j] / Float(tokens) } } }
        return h
    }

    /// Σ over tokens and rows of ((W - Ŵ) x)².
    static func outputError(_ w: [Float], _ payload: [UInt8], layout: TensorLayout, x: [Float], tokens: Int) -> Double {
        let back = payload.withUnsafeBytes { Quantizer.decode($0, layout: layout) }
        var e = 0.0
        for t in 0..<tokens {
            for r in 0..<layout.rows {
                var d = 0.0
                for j in 0..<layout.cols { d += Double(w[r * layout.cols + j] - back[r * layout.cols + j]) * Double(x[t * layout.cols + j]) }
                e += d * d
            }
        }
        return e
    }

    @Test func inverseFactorIsTheCholeskyFactorOfTheDampedInverse() throws {
        let cols = 24, tokens = 200
        let h = Self.gram(Self.activations(tokens: tokens, cols: cols, seed: 3), tokens: tokens, cols: cols)
        let u = try GPTQ.inverseFactor(GPTQ.damped(h, cols: cols), cols: cols, level: .detected)
        let mean = (0..<cols).reduce(0.0) { $0 + Double(h[$1 * cols + $1]) } / Double(cols)
        var worst = 0.0
        for i in 0..<cols {
            for j in 0..<cols {
                // (Uᵀ U)(H + λI) must be the identity; U upper triangular.
                var s = 0.0
                for k in 0..<cols {
                    var inv = 0.0
                    for m in 0...min(i, k) { inv += u[m * cols + i] * u[m * cols + k] }
                    s += inv * (Double(h[k * cols + j]) + (k == j ? GPTQ.dampening * mean : 0))
                }
                worst = max(worst, abs(s - (i == j ? 1 : 0)))
                if j < i { #expect(u[i * cols + j] == 0) }
            }
        }
        #expect(worst < 1e-9, "largest deviation from the identity \(worst)")
    }

    @Test func diagonalHessianRoundsLikeTheImportanceQuantizer() throws {
        let rows = 9, cols = 80
        var rng = TestRandom(seed: 5)
        let w = (0..<(rows * cols)).map { _ in (rng.uniform() - 0.5) * 0.2 }
        let layout = try TensorLayout(shape: [rows, cols], scheme: .q4, groupSize: 32)
        var h = [Float](repeating: 0, count: cols * cols)
        for i in 0..<cols { h[i * cols + i] = 1 }
        // No correlation: nothing to feed back, so every code is the fitted scale's nearest, as without
        // GPTQ; only the joint refit may move the scales, and only to a lower error.
        let gptq = try GPTQ.encode(w, layout: layout, gram: h, level: .generic)
        let plain = Quantizer.encode(w, layout: layout, importance: [Float](repeating: 1, count: cols), level: .generic)
        #expect(gptq[..<layout.scalesOffset] == plain[..<layout.scalesOffset])
        func error(_ p: [UInt8]) -> Double {
            let back = p.withUnsafeBytes { Quantizer.decode($0, layout: layout) }
            return zip(w, back).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
        }
        #expect(error(gptq) <= error(plain))
    }

    @Test func scaleRefitSolvesTheWeightedLeastSquares() throws {
        // One row, two groups, H diagonal with different weights per group: each group's best scale is
        // then its own weighted least-squares scale, Σ w q / Σ q² (H's weights cancel within a group).
        let cols = 64
        let layout = try TensorLayout(shape: [1, cols], scheme: .q4, groupSize: 32)
        var rng = TestRandom(seed: 17)
        let w = (0..<cols).map { _ in (rng.uniform() - 0.5) * 0.3 }
        let codes = (0..<cols).map { Int8(min(7, max(-8, (w[$0] / 0.02).rounded()))) }
        var h = [Double](repeating: 0, count: cols * cols)
        for i in 0..<cols { h[i * cols + i] = i < 32 ? 1 : 5 }
        var scales: [UInt16] = [HalfFloat.fromFloat(0.03), HalfFloat.fromFloat(0.01)]
        codes.withUnsafeBufferPointer { c in
            h.withUnsafeBufferPointer { hp in
                GPTQ.refitScales(
                    rows: 1, values: w, codes: c.baseAddress!, codeStride: cols, scales: &scales, h: hp.baseAddress!, layout: layout, level: .detected)
            }
        }
        for g in 0..<2 {
            let range = (g * 32)..<(g * 32 + 32)
            let best = range.reduce(0.0) { $0 + Double(w[$1]) * Double(codes[$1]) } / range.reduce(0.0) { $0 + Double(codes[$1]) * Double(codes[$1]) }
            #expect(scales[g] == HalfFloat.fromFloat(Float(best)), "group \(g)")
        }
    }

    @Test func errorFeedbackLowersTheOutputError() throws {
        let rows = 16, cols = 64, tokens = 400
        var rng = TestRandom(seed: 9)
        let w = (0..<(rows * cols)).map { _ in (rng.uniform() - 0.5) * 0.2 }
        let x = Self.activations(tokens: tokens, cols: cols, seed: 10)
        let h = Self.gram(x, tokens: tokens, cols: cols)
        let layout = try TensorLayout(shape: [rows, cols], scheme: .q4, groupSize: 32)
        let importance = (0..<cols).map { h[$0 * cols + $0] }
        let plain = Self.outputError(w, Quantizer.encode(w, layout: layout, importance: importance), layout: layout, x: x, tokens: tokens)
        let gptq = Self.outputError(w, try GPTQ.encode(w, layout: layout, gram: h, level: .detected), layout: layout, x: x, tokens: tokens)
        print("GPTQ output error \(gptq) vs importance-weighted rounding \(plain)")
        #expect(gptq < 0.6 * plain)
    }

    @Test func refusesAHessianThatIsNotPositiveDefinite() throws {
        let layout = try TensorLayout(shape: [2, 32], scheme: .q4, groupSize: 32)
        var h = [Float](repeating: 0, count: 32 * 32)
        for i in 0..<32 { h[i * 32 + i] = 1 }
        h[1] = .nan
        h[32] = .nan
        #expect(throws: EdgeLMError.self) { try GPTQ.encode([Float](repeating: 0.1, count: 64), layout: layout, gram: h, level: .generic) }
    }
}
