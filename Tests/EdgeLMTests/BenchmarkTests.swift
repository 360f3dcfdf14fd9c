import Foundation
import Testing

@testable import EdgeLM

/// `edgelm bench --breakdown`: the forward pass's stages, sampling and the rest add up to the step, and the
/// profile counts the pool's jobs.
struct BenchmarkTests {
    @Test func breakdownRowsAddUpToTheStepAndLeaveTheLogitsAlone() throws {
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 2, contextLength: 64)
        let plain = Array(try lm.session.forward([1, 300, 20]))
        let result = try Benchmark.breakdown(lm, tokens: 6, repetitions: 2, depth: 3)
        #expect(result.tokens == 12)
        #expect(result.rows.map(\.stage) == ForwardProfile.Stage.allCases.map(\.name) + [Benchmark.samplingStage, "rest of the step (checks, bookkeeping)"])
        let sum = result.rows.reduce(0) { $0 + $1.msPerToken }
        #expect(abs(sum - result.msPerToken) <= 1e-9 * result.msPerToken, "rows \(sum) ms, step \(result.msPerToken) ms")
        for stage in [ForwardProfile.Stage.projections, .attention, .gateUp, .down, .head] {
            #expect(result.rows[stage.rawValue].msPerToken > 0, "\(stage.name)")
        }
        #expect(result.rows[result.rows.count - 2].msPerToken > 0 && result.argmaxMsPerToken > 0)
        #expect(lm.session.profile == nil)
        lm.session.reset()
        #expect(Array(try lm.session.forward([1, 300, 20])) == plain)
        #expect(throws: EdgeLMError.self) { _ = try Benchmark.breakdown(lm, tokens: 60, repetitions: 1, depth: 10) }
    }

    /// A prompt batch's breakdown: its rows add up too, every stage of the pass has time, and the session computes
    /// what it did before.
    @Test func promptBreakdownTimesOneBatchPerRun() throws {
        let lm = try LanguageModel(path: try ConvertedModels.stories("q8", ConversionOptions(type: .q8)), threads: 2, contextLength: 64)
        let plain = Array(try lm.session.forward([1, 300, 20]))
        let steps = try Benchmark.breakdown(lm, tokens: 12, repetitions: 2)
        let prompt = try Benchmark.breakdown(lm, tokens: 12, repetitions: 2, promptBatch: true)
        #expect(prompt.promptBatch && !steps.promptBatch && prompt.tokens == 24)
        let sum = prompt.rows.reduce(0) { $0 + $1.msPerToken }
        #expect(abs(sum - prompt.msPerToken) <= 1e-9 * prompt.msPerToken, "rows \(sum) ms, batch \(prompt.msPerToken) ms per token")
        for stage in [ForwardProfile.Stage.embedding, .projections, .rope, .attention, .gateUp, .down, .head] {
            #expect(prompt.rows[stage.rawValue].msPerToken > 0, "\(stage.name)")
        }
        lm.session.reset()
        #expect(Array(try lm.session.forward([1, 300, 20])) == plain)
    }

    @Test func profileCountsTheJobsOfEachStage() {
        let pool = ThreadPool(threads: 2)
        let profile = ForwardProfile(pool: pool)
        profile.start()
        for _ in 0..<3 { pool.run(tasks: 2) { _, _ in } }
        pool.run(tasks: 1) { _, _ in }
        profile.lap(.down)
        pool.run(tasks: 2) { _, _ in }
        profile.lap(.head)
        #expect(profile.jobs[ForwardProfile.Stage.down.rawValue] == 3 && profile.jobs[ForwardProfile.Stage.head.rawValue] == 1)
        #expect(profile.jobs.reduce(0, +) == 4)
        profile.clear()
        #expect(profile.jobs.allSatisfy { $0 == 0 } && profile.nanoseconds.allSatisfy { $0 == 0 })
    }
}
