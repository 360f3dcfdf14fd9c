import Testing

@testable import EdgeLM

/// The choice between the workers and the calling thread alone for decode steps, on synthetic step times.
@Suite struct StepThreadingTests {
    /// Runs `steps` steps whose time depends on the step and on whether it ran alone; returns which ran alone.
    func simulate(steps: Int, time: (_ step: Int, _ alone: Bool) -> Double) -> [Bool] {
        var threading = StepThreading(), alone: [Bool] = []
        for step in 0..<steps {
            alone.append(threading.alone)
            threading.record(seconds: time(step, threading.alone))
        }
        return alone
    }

    @Test func staysOnTheWorkersWhileTheyAreFaster() {
        let alone = simulate(steps: 4000) { _, alone in alone ? 1.6e-3 : 1e-3 }
        // Probes of 4 steps after 64, 128, 256, 512, 1024, 1024 ... workers' steps.
        #expect(alone.prefix(64).allSatisfy { !$0 })
        #expect(alone.filter { $0 }.count <= 4 * 8)
    }

    @Test func goesAloneUnderALoadPresentFromTheStart() {
        let alone = simulate(steps: 2000) { _, alone in alone ? 1e-3 : 2e-3 }
        let first = alone.firstIndex(of: true)!
        #expect(first == 64)
        // Alone from then on but for 4-step probes of the workers after 64, 128, 256, ... alone steps.
        #expect(alone[first...].filter { !$0 }.count <= 4 * 6)
    }

    @Test func followsALoadThatArrivesAndLeaves() {
        // Quiet until step 600, loaded until 1400, quiet again.
        let loaded = 600..<1400
        let alone = simulate(steps: 3000) { step, alone in alone ? 1.6e-3 : loaded.contains(step) ? 3e-3 : 1e-3 }
        let switched = alone[loaded].firstIndex(of: true)!
        #expect(switched < loaded.lowerBound + 2 * StepThreading.window)
        #expect(alone[(switched + 4)..<loaded.upperBound].filter { $0 }.count >= 700)
        let back = alone[loaded.upperBound...].firstIndex(of: false)!
        #expect(back < loaded.upperBound + StepThreading.longestInterval + StepThreading.window)
        #expect(alone.suffix(500).filter { $0 }.count <= 4)
    }
}
