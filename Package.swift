// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "EdgeLM",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "EdgeLM", targets: ["EdgeLM"]),
        .executable(name: "edgelm", targets: ["edgelm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"]), .brew(["zstd"])]
        ),
        .target(
            name: "CEdgeKernels",
            cSettings: [.unsafeFlags(["-O3"])]
        ),
        .target(
            name: "EdgeLM",
            dependencies: ["CZstd", "CEdgeKernels"],
            // Kernels and the forward pass are unusably slow unoptimised; debug builds (and so
            // `swift test`) optimise this target too, keeping -enable-testing for @testable imports.
            swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]
        ),
        .target(
            name: "EdgeLMServer",
            dependencies: [
                "EdgeLM",
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            path: "Sources/EdgeLMServer"
        ),
        .executableTarget(
            name: "edgelm",
            dependencies: [
                "EdgeLM",
                "EdgeLMServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/edgelm"
        ),
        .testTarget(
            name: "EdgeLMTests",
            // edgelm: the CLI tests run the built binary.
            dependencies: ["EdgeLM", "CEdgeKernels", "edgelm"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
