// swift-tools-version: 6.1
//
// ShadowMMU's benchmarks, a package of their own so that building and testing
// the main package never pulls in the benchmark harness.
//
//   cd Benchmarks && swift package benchmark
//
// package-benchmark needs its MallocInterposer trait to count allocations
// (DESIGN.md §3: hot paths allocate nothing; the benchmarks show it).
import Foundation
import PackageDescription

// A path dependency is identified by its folder name, which is wherever the
// repository was cloned.
let shadowMMUPackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "ShadowMMUBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "X86PagingBenchmarks",
            dependencies: [
                .product(name: "X86Paging", package: shadowMMUPackage),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/X86PagingBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
