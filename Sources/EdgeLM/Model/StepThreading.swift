import Foundation

/// Chooses, for a session's single-token decode steps, between the thread pool's workers and the calling thread
/// alone, by timing the steps. When another program takes a core, a worker holding a task of a job is descheduled
/// for a scheduler time slice (milliseconds) while a small model's step is a fraction of a millisecond, so the
/// calling thread alone decodes faster than all of them. Running alone changes no result: a job keeps its tasks
/// (the same rows and heads per task), only the thread that runs them changes.
///
/// Steps are timed in windows of `window` steps. On the workers, a probe of `probe` steps alone follows a window 25%
/// slower than the fastest seen (a load arriving) and, whatever the windows say, 64 steps, then 128, 256, ... up to
/// `longestInterval` (a load present from the start; the interval doubles after each probe that loses). A probe wins
/// when its steps are faster than the window before it; steps then stay alone, probing the workers the same way
/// (after 64 steps, then 128, ...), and go back to them when a probe of the workers wins.
struct StepThreading {
    /// Whether the next step runs on the calling thread alone.
    var alone: Bool { mainAlone != probing }
    /// Steps per timed window on the workers.
    static let window = 16
    /// Steps of a probe.
    static let probe = 4
    /// The longest stretch between probes, in steps.
    static let longestInterval = 1024
    /// How much slower than the fastest window a window must be to trigger a probe alone.
    static let slower = 1.25

    private var mainAlone = false
    private var probing = false
    /// The current stretch: seconds and steps.
    private var seconds = 0.0
    private var steps = 0
    /// Mean step of the last finished stretch in the main mode, and of the fastest window on the workers.
    private var mainMean = 0.0
    private var fastestShared = Double.infinity
    /// Steps until the next probe (counted in main-mode steps), and the stretch it doubles to after a failed probe.
    private var untilProbe = 4 * window
    private var interval = 4 * window

    /// Records one step of `elapsed` seconds, run as `alone` said.
    mutating func record(seconds elapsed: Double) {
        seconds += elapsed
        steps += 1
        if probing {
            guard steps == Self.probe else { return }
            let mean = finish()
            probing = false
            if mean < mainMean {
                mainAlone.toggle()
                interval = 4 * Self.window
                fastestShared = mainAlone ? fastestShared : mean
            } else {
                interval = min(Self.longestInterval, interval * 2)
                if !mainAlone { fastestShared = mainMean }
            }
            untilProbe = interval
            return
        }
        untilProbe -= 1
        guard steps == Self.window else { return }
        mainMean = finish()
        if !mainAlone { fastestShared = min(fastestShared, mainMean) }
        if untilProbe <= 0 || (!mainAlone && mainMean > Self.slower * fastestShared) { probing = true }
    }

    /// The mean step of the stretch that ends, and a new stretch.
    private mutating func finish() -> Double {
        defer { (seconds, steps) = (0, 0) }
        return seconds / Double(steps)
    }
}

extension InferenceSession {
    /// Starts a single-token step on a pool of several threads, on the workers or this thread alone as `threading`
    /// says, and returns its start time (nil on a one-thread pool: nothing to choose).
    func beginStep() -> UInt64? {
        guard pool.threadCount > 1 else { return nil }
        pool.runsAlone = threading.alone
        return DispatchTime.now().uptimeNanoseconds
    }

    /// Ends the step `beginStep` started, timing it for `threading`.
    func endStep(startedAt start: UInt64) {
        pool.runsAlone = false
        threading.record(seconds: Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
    }
}
