import Foundation

/// Where a session's forward passes spend their time, stage by stage (`edgelm bench --breakdown`). Each stage is
/// wall time on the calling thread, so a parallel job's wait for its slowest worker counts in its stage; `jobs`
/// counts the thread-pool jobs (each one a wake-up and a wait) a stage started.
public final class ForwardProfile: @unchecked Sendable {
    /// A stage of the forward pass.
    public enum Stage: Int, CaseIterable, Sendable {
        /// Embedding rows (and their scale).
        case embedding
        /// RMS norms before each sublayer, post-sublayer norms and residual adds, activation quantization.
        case norms
        /// The q, k and v products, their biases and per-head norms.
        case projections
        /// RoPE on queries and keys, and the KV cache writes.
        case rope
        /// Attention over the KV cache (scores, softmax, values).
        case attention
        /// The attention output product (wo).
        case output
        /// The gate and up products with the activation.
        case gateUp
        /// The down product.
        case down
        /// The final norm and the output head (logits, soft-capping).
        case head

        /// The name in tables.
        public var name: String {
            switch self {
            case .embedding: "embedding"
            case .norms: "norms, residuals, activation quantization"
            case .projections: "q, k, v products"
            case .rope: "RoPE and KV cache writes"
            case .attention: "attention"
            case .output: "attention output product"
            case .gateUp: "gate and up products, activation"
            case .down: "down product"
            case .head: "final norm and output head"
            }
        }
    }

    /// Nanoseconds spent in each stage (indexed by `Stage.rawValue`).
    public private(set) var nanoseconds = [UInt64](repeating: 0, count: Stage.allCases.count)
    /// Thread-pool jobs started in each stage.
    public private(set) var jobs = [Int](repeating: 0, count: Stage.allCases.count)
    private var last: UInt64 = 0
    private var lastJobs = 0
    private let pool: ThreadPool

    /// A profile of forward passes that run their jobs on `pool`.
    init(pool: ThreadPool) { self.pool = pool }

    /// Starts timing: the time until the next `lap` belongs to that lap's stage.
    func start() {
        last = DispatchTime.now().uptimeNanoseconds
        lastJobs = pool.jobsStarted
    }

    /// Adds the time and jobs since the previous `start` or `lap` to `stage`.
    func lap(_ stage: Stage) {
        let now = DispatchTime.now().uptimeNanoseconds, started = pool.jobsStarted
        nanoseconds[stage.rawValue] += now - last
        jobs[stage.rawValue] += started - lastJobs
        last = now
        lastJobs = started
    }

    /// Forgets every measurement.
    func clear() {
        nanoseconds = nanoseconds.map { _ in 0 }
        jobs = jobs.map { _ in 0 }
    }
}
