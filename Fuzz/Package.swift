// swift-tools-version: 6.1
// libFuzzer harness over every EdgeLM reader of untrusted input. Built by Fuzz/run with
// -sanitize=fuzzer,address; see Fuzz/README.md.
import PackageDescription

let package = Package(
    name: "EdgeLMFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "EdgeLM", path: "..")],
    targets: [
        .executableTarget(
            name: "EdgeLMFuzz",
            dependencies: [.product(name: "EdgeLM", package: "EdgeLM")]
        ),
    ]
)
