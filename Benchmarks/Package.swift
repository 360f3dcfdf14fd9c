// swift-tools-version: 6.1
// Kernel and model benchmarks (ordo-one/benchmark). A separate package so that a plain `swift build` of
// EdgeLM does not build the benchmark framework. Run from this folder: `swift package benchmark`.
import PackageDescription

let package = Package(
    name: "EdgeLMBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "EdgeLM", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "KernelBenchmarks",
            dependencies: [.product(name: "EdgeLM", package: "EdgeLM"), .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/KernelBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "ModelBenchmarks",
            dependencies: [.product(name: "EdgeLM", package: "EdgeLM"), .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/ModelBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
