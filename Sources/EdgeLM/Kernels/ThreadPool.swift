import CEdgeKernels
import Foundation
import Synchronization

/// A persistent pool of worker threads that run one parallel job at a time, the calling thread taking
/// part as worker 0. Workers spin briefly waiting for the next job (a decode step issues hundreds of
/// small jobs per token, so waking through the kernel each time would dominate), then sleep on a
/// condition variable so an idle pool costs no CPU.
public final class ThreadPool: @unchecked Sendable {
    /// Number of threads taking part in a job, the caller included.
    public let threadCount: Int
    private let generation = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let sleepers = Atomic<Int>(0)
    private let condition = NSCondition()
    private var job: UnsafeRawPointer?
    private var threads: [Thread] = []

    /// How long a waiting worker spins before it sleeps. A decode step leaves workers idle for tens of
    /// microseconds between jobs (norms, attention on one thread); waking a sleeping thread costs about as
    /// much again, so workers spin through such gaps and only sleep when the pool is really idle.
    private static let spinNanoseconds: UInt64 = 2_000_000

    /// Starts `threads - 1` workers (at least one thread in all).
    public init(threads: Int) {
        threadCount = max(1, threads)
        for index in 1..<threadCount {
            // unowned(unsafe): deinit waits for every worker to leave its loop before the memory goes away.
            let t = Thread { [unowned(unsafe) self] in self.workerLoop(index) }
            t.stackSize = 1 << 20
            t.start()
            self.threads.append(t)
        }
    }

    deinit {
        stopping.store(true, ordering: .releasing)
        generation.add(1, ordering: .releasing)
        condition.lock()
        condition.broadcast()
        condition.unlock()
        while remaining.load(ordering: .acquiring) > -(threadCount - 1) { sched_yield() }
    }

    /// Runs `body(worker, workers)` on every thread and returns when all have finished.
    public func run(_ body: (Int, Int) -> Void) {
        if threadCount == 1 {
            body(0, 1)
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var closure = escapable
            withUnsafePointer(to: &closure) { pointer in
                job = UnsafeRawPointer(pointer)
                remaining.store(threadCount - 1, ordering: .relaxed)
                generation.add(1, ordering: .releasing)
                if sleepers.load(ordering: .acquiring) > 0 {
                    condition.lock()
                    condition.broadcast()
                    condition.unlock()
                }
                escapable(0, threadCount)
                while remaining.load(ordering: .acquiring) > 0 {}
                job = nil
            }
        }
    }

    /// Splits `0..<count` into one contiguous range per thread and runs `body(range)` in parallel, unless
    /// `work` (in any unit, e.g. multiply-adds) is below `serialBelow`: waking workers for tiny jobs
    /// costs more than it saves.
    public func parallelFor(_ count: Int, work: Int = .max, serialBelow: Int = 1 << 17, _ body: (Range<Int>) -> Void) {
        if count < 2 || workers(for: work, serialBelow: serialBelow) == 1 {
            body(0..<count)
            return
        }
        run { worker, workers in
            let range = Self.share(count, worker: worker, of: workers)
            if !range.isEmpty { body(range) }
        }
    }

    /// Threads a job of `work` (in any unit) should run on: all of them, or this one alone when the
    /// work is below `serialBelow`.
    public func workers(for work: Int, serialBelow: Int = 1 << 17) -> Int {
        threadCount > 1 && work >= serialBelow ? threadCount : 1
    }

    /// Worker `worker`'s contiguous share of `0..<count` among `workers`, cut on multiples of `granule`
    /// (the last share ends at `count`).
    public static func share(_ count: Int, worker: Int, of workers: Int, granule: Int = 1) -> Range<Int> {
        func cut(_ k: Int) -> Int { k == workers ? count : count * k / workers / granule * granule }
        return cut(worker)..<cut(worker + 1)
    }

    private func workerLoop(_ index: Int) {
        var seen = 0
        while true {
            var spins = 0
            var spinStart = DispatchTime.now().uptimeNanoseconds
            var current = generation.load(ordering: .acquiring)
            while current == seen {
                spins += 1
                edge_cpu_relax()
                if spins & 1023 == 0, DispatchTime.now().uptimeNanoseconds - spinStart > Self.spinNanoseconds {
                    condition.lock()
                    sleepers.add(1, ordering: .relaxed)
                    while generation.load(ordering: .acquiring) == seen { condition.wait() }
                    sleepers.subtract(1, ordering: .relaxed)
                    condition.unlock()
                    spinStart = DispatchTime.now().uptimeNanoseconds
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            if stopping.load(ordering: .acquiring) {
                remaining.subtract(1, ordering: .releasing)
                return
            }
            invokeJob(index)
            remaining.subtract(1, ordering: .releasing)
        }
    }

    /// Calls the current job. A separate, non-inlined function so that every reference the worker took
    /// to the caller's closure is released before it reports completion (the closure must not outlive `run`).
    @inline(never)
    private func invokeJob(_ index: Int) {
        job!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(index, threadCount)
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
