import Benchmark
import EdgeLM

/// A quantized matrix with random codes and scales, and quantized activations for `tokens` tokens.
final class QuantizedProblem: @unchecked Sendable {
    let scheme: TensorScheme
    let rows: Int
    let blocks: Int
    let groupBlocks: Int
    let tokens: Int
    let weights: UnsafeMutableRawPointer
    let scales: UnsafeMutablePointer<UInt16>
    let x: UnsafeMutablePointer<Int8>
    let xs: UnsafeMutablePointer<Float>
    let out: UnsafeMutablePointer<Float>

    init(_ scheme: TensorScheme, rows: Int, cols: Int, groupSize: Int, tokens: Int = 1) {
        self.scheme = scheme
        self.rows = rows
        self.tokens = tokens
        blocks = cols / 32
        groupBlocks = groupSize == 0 ? blocks : groupSize / 32
        let weightBytes = rows * blocks * (scheme == .q4 ? 16 : 32)
        weights = .allocate(byteCount: weightBytes, alignment: 64)
        var state: UInt64 = 42
        for i in 0..<weightBytes {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            weights.storeBytes(of: UInt8(truncatingIfNeeded: state >> 33) | 1, toByteOffset: i, as: UInt8.self)
        }
        let groups = rows * ((blocks + groupBlocks - 1) / groupBlocks)
        scales = .allocate(capacity: groups)
        scales.initialize(repeating: HalfFloat.fromFloat(0.01), count: groups)
        x = .allocate(capacity: tokens * cols)
        for i in 0..<(tokens * cols) { x[i] = Int8(truncatingIfNeeded: i &* 37 % 255 - 127) }
        xs = .allocate(capacity: tokens * blocks)
        xs.initialize(repeating: 0.02, count: tokens * blocks)
        out = .allocate(capacity: rows * tokens)
    }

    /// Bytes of weights and scales read by one product.
    var bytes: Int { rows * blocks * (scheme == .q4 ? 16 : 32) + rows * ((blocks + groupBlocks - 1) / groupBlocks) * 2 }

    func run(_ pool: ThreadPool) {
        let level = KernelLevel.detected
        pool.parallelFor(rows) { range in
            IntegerKernels.matmul(
                level, kernel: SchemeKernel(scheme), weights: weights, scales: scales, blocksPerRow: blocks, blocksPerGroup: groupBlocks,
                rows: range, x: x, xs: xs, tokens: tokens, out: out, rowStride: 1, tokenStride: rows)
        }
    }
}

let benchmarks: @Sendable () -> Void = {
    let pool = ThreadPool(threads: ThreadPool.physicalCores)
    let shapes = [(2048, 2048), (5632, 2048), (2048, 5632), (32000, 2048)]
    for (scheme, group) in [(TensorScheme.q8, 0), (.q4, 32)] {
        for (rows, cols) in shapes {
            let problem = QuantizedProblem(scheme, rows: rows, cols: cols, groupSize: group)
            // GB/s of weights = the name's MB x throughput (products per second) / 1000.
            let mb = (Double(problem.bytes) / 1e6 * 10).rounded() / 10
            Benchmark("matvec \(scheme) \(rows)x\(cols) (\(mb) MB)", configuration: .init(metrics: [.wallClock, .throughput])) { benchmark in
                for _ in benchmark.scaledIterations { problem.run(pool) }
            }
        }
        let batch = QuantizedProblem(scheme, rows: 2048, cols: 2048, groupSize: group, tokens: 128)
        Benchmark("matmul \(scheme) 2048x2048 x 128 tokens", configuration: .init(metrics: [.wallClock, .throughput])) { benchmark in
            for _ in benchmark.scaledIterations { batch.run(pool) }
        }
    }

    let n = 2048
    let x = UnsafeMutablePointer<Float>.allocate(capacity: n * 1024)
    for i in 0..<(n * 1024) { x[i] = Float(i % 97) * 0.01 - 0.5 }
    let weight = UnsafeMutablePointer<Float>.allocate(capacity: n)
    weight.initialize(repeating: 1, count: n)
    let out = UnsafeMutablePointer<Float>.allocate(capacity: n * 1024)
    Benchmark("rmsnorm 2048") { benchmark in
        for _ in benchmark.scaledIterations { FloatKernels.rmsNorm(out, x, weight: weight, count: n, epsilon: 1e-5) }
    }
    Benchmark("softmax 1024") { benchmark in
        for _ in benchmark.scaledIterations { FloatKernels.softmax(out, count: 1024) }
    }
    Benchmark("rope 32 heads x 64") { benchmark in
        for _ in benchmark.scaledIterations {
            for h in 0..<32 {
                for i in 0..<32 {
                    let c = Float(i) * 0.01, s = 1 - c
                    let a = out[h * 64 + 2 * i], b = out[h * 64 + 2 * i + 1]
                    out[h * 64 + 2 * i] = a * c - b * s
                    out[h * 64 + 2 * i + 1] = a * s + b * c
                }
            }
        }
    }
    // One head of attention over a 1024-token cache (head dim 64): scores, softmax, weighted values.
    let scores = UnsafeMutablePointer<Float>.allocate(capacity: 1024)
    Benchmark("attention 1 head, 1024-token KV cache") { benchmark in
        for _ in benchmark.scaledIterations {
            for j in 0..<1024 { scores[j] = FloatKernels.dot(x, x + j * 64, count: 64) * 0.125 }
            FloatKernels.softmax(scores, count: 1024)
            out.initialize(repeating: 0, count: 64)
            for j in 0..<1024 { FloatKernels.addScaled(out, x + j * 64, scores[j], count: 64) }
        }
    }
}
