import CEdgeKernels
import Foundation
import Synchronization

/// A persistent pool of worker threads that run one parallel job at a time, the calling thread taking
/// part as worker 0.
///
/// A job is a number of tasks that the threads claim one at a time from a shared counter, so the work goes
/// to whichever threads are running: a worker that the OS has descheduled (another program busy on its
/// core) claims nothing, and the others finish the job without it. Only a task already claimed is waited
/// for. Waiting threads spin briefly (a decode step issues hundreds of small jobs per token, and waking
/// through the kernel each time would dominate), then yield the core, then sleep on a futex, so that a
/// waiting thread never holds a core another thread of the job needs, and an idle pool costs no CPU.
public final class ThreadPool: @unchecked Sendable {
    /// Number of threads taking part in a job, the caller included.
    public let threadCount: Int
    /// The current job: generation (high 32 bits), task count (bits 16-31), next unclaimed task (bits 0-15).
    /// A claim is a compare-and-swap on the whole word, so a claim can only succeed for the job it read.
    private let state = Atomic<UInt64>(0)
    /// Tasks of the current job finished.
    private let done = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let exited = Atomic<Int>(0)
    /// Workers asleep on `jobWord`, and whether the caller is asleep on `doneWord`.
    private let sleepers = Atomic<Int>(0)
    private let callerAsleep = Atomic<Bool>(false)
    /// Futex words: bumped when a job is published, and when a job's last task finishes.
    private let jobWord = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    private let doneWord = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    private var job: UnsafeRawPointer?
    private var generation: UInt64 = 0
    /// Jobs run across the threads so far (jobs of one task, or on a one-thread pool, run inline and do not count).
    private(set) var jobsStarted = 0

    /// When set, jobs run all their tasks on the calling thread (the workers stay idle): the same tasks, so the same
    /// results bit for bit, without waiting for workers whose cores another program holds (`StepThreading`).
    public var runsAlone = false

    /// Most tasks of one job.
    public static let maxTasks = 0xFFFF

    /// How long a waiting thread spins (with the CPU's pause hint), and then yields its core between checks,
    /// before it sleeps. A decode step leaves workers idle for tens of microseconds between jobs; waking a
    /// sleeping thread costs about as much again, so they spin through such gaps, yielding so that a thread
    /// sharing their core (another worker of the pool when the machine is busy) gets it at once.
    private static let spinNanoseconds: UInt64 = 20_000
    private static let yieldNanoseconds: UInt64 = 2_000_000

    /// Starts `threads - 1` workers (at least one thread in all).
    public init(threads: Int) {
        threadCount = max(1, threads)
        jobWord.initialize(to: 0)
        doneWord.initialize(to: 0)
        for index in 1..<threadCount {
            // unowned(unsafe): deinit waits for every worker to leave its loop before the memory goes away.
            let t = Thread { [unowned(unsafe) self] in self.workerLoop(index) }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    deinit {
        stopping.store(true, ordering: .sequentiallyConsistent)
        edge_word_bump(jobWord)
        edge_word_wake_all(jobWord)
        while exited.load(ordering: .acquiring) < threadCount - 1 { edge_yield() }
        jobWord.deallocate()
        doneWord.deallocate()
    }

    /// Runs `body(task, worker)` for every task in `0..<tasks` across the threads (`worker` is the index of the
    /// thread running it, for per-thread scratch) and returns when all have finished.
    public func run(tasks: Int, _ body: (_ task: Int, _ worker: Int) -> Void) {
        precondition(tasks <= Self.maxTasks)
        if threadCount == 1 || tasks <= 1 || runsAlone {
            for t in 0..<tasks { body(t, 0) }
            return
        }
        jobsStarted += 1
        withoutActuallyEscaping(body) { escapable in
            var closure = escapable
            withUnsafePointer(to: &closure) { pointer in
                job = UnsafeRawPointer(pointer)
                done.store(0, ordering: .relaxed)
                generation = (generation + 1) & 0xFFFF_FFFF
                state.store(generation << 32 | UInt64(tasks) << 16, ordering: .sequentiallyConsistent)
                edge_word_bump(jobWord)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 { edge_word_wake_all(jobWord) }
                work(generation: generation, worker: 0)
                waitUntil {
                    done.load(ordering: .acquiring) == tasks
                } sleep: {
                    callerAsleep.store(true, ordering: .sequentiallyConsistent)
                    let seen = edge_word_load(doneWord)
                    if done.load(ordering: .sequentiallyConsistent) != tasks { edge_word_wait(doneWord, seen) }
                    callerAsleep.store(false, ordering: .relaxed)
                }
                job = nil
            }
        }
    }

    /// Runs `body(worker, workers)` once on each of the pool's threads' shares: task k of `threadCount` tasks
    /// is given `k` as its worker index, whichever thread runs it.
    public func run(_ body: (Int, Int) -> Void) {
        let n = threadCount
        run(tasks: n) { task, _ in body(task, n) }
    }

    /// Splits `0..<count` into contiguous ranges, a few per thread, and runs `body(range)` in parallel,
    /// unless `work` (in any unit, e.g. multiply-adds) is below `serialBelow`: waking workers for tiny jobs
    /// costs more than it saves.
    public func parallelFor(_ count: Int, work: Int = .max, serialBelow: Int = 1 << 17, _ body: (Range<Int>) -> Void) {
        let tasks = min(count, tasksPerJob)
        if tasks < 2 || workers(for: work, serialBelow: serialBelow) == 1 {
            body(0..<count)
            return
        }
        run(tasks: tasks) { task, _ in
            let range = Self.share(count, worker: task, of: tasks)
            if !range.isEmpty { body(range) }
        }
    }

    /// Tasks a job is cut into when its work divides freely: one per thread. A descheduled worker's task is
    /// taken over by the caller unless the worker claimed it first; cutting jobs finer (four per thread, and a
    /// serial back-off after a long wait) measured no better with one core busy and 10-25% slower decode on an
    /// idle machine (docs/PERFORMANCE.md).
    public var tasksPerJob: Int { threadCount }

    /// Threads a job of `work` (in any unit) should run on: all of them, or this one alone when the
    /// work is below `serialBelow`.
    public func workers(for work: Int, serialBelow: Int = 1 << 17) -> Int {
        threadCount > 1 && work >= serialBelow ? threadCount : 1
    }

    /// Share `worker` of `0..<count` among `workers` contiguous shares, cut on multiples of `granule`
    /// (the last share ends at `count`).
    public static func share(_ count: Int, worker: Int, of workers: Int, granule: Int = 1) -> Range<Int> {
        func cut(_ k: Int) -> Int { k == workers ? count : count * k / workers / granule * granule }
        return cut(worker)..<cut(worker + 1)
    }

    /// Claims and runs tasks of job `generation` until none is left. A claim succeeds only while the state
    /// still holds that job, so a thread that was descheduled never touches a later job's closure.
    private func work(generation: UInt64, worker: Int) {
        while true {
            let s = state.load(ordering: .acquiring)
            let tasks = Int((s >> 16) & 0xFFFF), next = Int(s & 0xFFFF)
            guard s >> 32 == generation, next < tasks else { return }
            guard state.compareExchange(expected: s, desired: s + 1, ordering: .acquiringAndReleasing).exchanged else { continue }
            invokeJob(task: next, worker: worker)
            if done.add(1, ordering: .acquiringAndReleasing).newValue == tasks {
                edge_word_bump(doneWord)
                if callerAsleep.load(ordering: .sequentiallyConsistent) { edge_word_wake_all(doneWord) }
            }
        }
    }

    /// Spins, then yields, then calls `sleep` until `ready` holds.
    private func waitUntil(_ ready: () -> Bool, sleep: () -> Void) {
        var spins = 0
        let start = DispatchTime.now().uptimeNanoseconds
        while !ready() {
            spins += 1
            if spins & 63 != 0 {
                edge_cpu_relax()
                continue
            }
            let waited = DispatchTime.now().uptimeNanoseconds - start
            if waited < Self.spinNanoseconds { continue }
            if waited < Self.yieldNanoseconds { edge_yield() } else { sleep() }
        }
    }

    private func workerLoop(_ index: Int) {
        var seen: UInt64 = 0
        while true {
            var current: UInt64 = 0
            waitUntil {
                current = state.load(ordering: .acquiring) >> 32
                return current != seen || stopping.load(ordering: .relaxed)
            } sleep: {
                sleepers.add(1, ordering: .sequentiallyConsistent)
                let word = edge_word_load(jobWord)
                if state.load(ordering: .sequentiallyConsistent) >> 32 == seen, !stopping.load(ordering: .sequentiallyConsistent) {
                    edge_word_wait(jobWord, word)
                }
                sleepers.subtract(1, ordering: .relaxed)
            }
            if stopping.load(ordering: .acquiring) {
                exited.add(1, ordering: .releasing)
                return
            }
            seen = current
            work(generation: current, worker: index)
        }
    }

    /// Calls the current job. A separate, non-inlined function so that every reference the worker took
    /// to the caller's closure is released before it reports completion (the closure must not outlive `run`).
    @inline(never)
    private func invokeJob(task: Int, worker: Int) {
        job!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(task, worker)
    }

    /// Physical cores of this machine (logical CPUs when the topology cannot be read).
    public static var physicalCores: Int {
        #if os(Linux)
            if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
                var cores = Set<String>()
                var physical = "0"
                for line in text.split(separator: "\n") {
                    let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                    guard parts.count == 2 else { continue }
                    if parts[0] == "physical id" { physical = parts[1] }
                    if parts[0] == "core id" { cores.insert(physical + "/" + parts[1]) }
                }
                if !cores.isEmpty { return min(cores.count, ProcessInfo.processInfo.activeProcessorCount) }
            }
        #endif
        return ProcessInfo.processInfo.activeProcessorCount
    }
}
