import Benchmark
import EdgeLM
import Foundation

/// The synthetic s15m model, created on first use and cached in `$EDGELM_BENCH_MODELS` (default
/// ../models beside this package, which git ignores).
func s15m(_ type: TensorScheme) throws -> String {
    let dir = ProcessInfo.processInfo.environment["EDGELM_BENCH_MODELS"] ?? "../models"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let gguf = dir + "/s15m.gguf", model = dir + "/s15m-\(type).edgelm"
    if !FileManager.default.fileExists(atPath: gguf) { try SyntheticCheckpoint.write(.s15m, type: .f16, to: gguf) }
    if !FileManager.default.fileExists(atPath: model) {
        _ = try Converter.convert(try Checkpoint.open(path: gguf, tokenizerPath: nil), to: model, options: ConversionOptions(type: type))
    }
    return model
}

let benchmarks: @Sendable () -> Void = {
    for type in [TensorScheme.q8, .q4] {
        guard let lm = try? LanguageModel(path: try s15m(type)) else { fatalError("cannot prepare the s15m \(type) model") }
        let prompt = (0..<128).map { 300 + $0 * 7 }
        Benchmark("s15m \(type) pp128", configuration: .init(metrics: [.wallClock, .throughput])) { benchmark in
            for _ in benchmark.scaledIterations {
                lm.session.reset()
                blackHole(try? lm.session.forward(prompt))
            }
        }
        Benchmark("s15m \(type) tg64", configuration: .init(metrics: [.wallClock, .throughput])) { benchmark in
            for _ in benchmark.scaledIterations {
                lm.session.reset()
                for t in prompt.prefix(64) { blackHole(try? lm.session.forward([t])) }
            }
        }
    }
}
