// swift-tools-version: 6.1
//
// ShadowMMU's benchmarks, a package of their own so that building and testing
// the main package never pulls in the benchmark harness.
//
//   cd Benchmarks && swift package --allow-writing-to-package-directory benchmark
//   cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --target ShadowMMUBenchmarks
//
// X86PagingBenchmarks: the reference walker and the architectural TLB.
// ShadowMMUBenchmarks: guests run through VirtualMachine under shadow paging
// (faults, TLB hits against the native reference, CR3 switches, page-table
// write emulation, memory per shadow page).
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
                "BenchmarkGuests",
                "CPagingBaseline",
                .product(name: "X86Paging", package: shadowMMUPackage),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/X86PagingBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // The plain-C baseline of trace replay (issue 14): the same job as
        // `shadowmmu workload --trace`, over the same file.
        .target(name: "CTraceReplay", path: "Support/CTraceReplay", cSettings: [.unsafeFlags(["-O2"])]),
        // The plain-C baselines of the hot paths (issue 14): a 4-level walk
        // with the architecture's checks and A/D updates over flat memory, and
        // a direct-mapped TLB hit.
        .target(name: "CPagingBaseline", path: "Support/CPagingBaseline", cSettings: [.unsafeFlags(["-O2"])]),
        // glibc's mallinfo2, for the memory-per-shadow-page figures.
        .target(name: "CHeapUsage", path: "Support/CHeapUsage"),
        // Guests for the benchmarks and the profiling driver: page tables
        // written into a VirtualMachine (shadow paging) or a SparseMemory
        // (the native reference), with the same layout.
        .target(
            name: "BenchmarkGuests",
            dependencies: [
                "CHeapUsage",
                .product(name: "ShadowMMU", package: shadowMMUPackage),
                .product(name: "VirtualMachine", package: shadowMMUPackage),
                .product(name: "X86Paging", package: shadowMMUPackage),
            ],
            path: "Support/BenchmarkGuests"
        ),
        .executableTarget(
            name: "ShadowMMUBenchmarks",
            dependencies: [
                "BenchmarkGuests",
                "CTraceReplay",
                .product(name: "GuestWorkloads", package: shadowMMUPackage),
                .product(name: "ShadowMMU", package: shadowMMUPackage),
                .product(name: "VirtualMachine", package: shadowMMUPackage),
                .product(name: "X86Paging", package: shadowMMUPackage),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/ShadowMMUBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // Not a benchmark: a plain release executable that runs one hot path
        // in a loop, for `valgrind --tool=callgrind` and `perf record`
        // (package-benchmark's harness would dominate a profile).
        .executableTarget(
            name: "HotPathProfile",
            dependencies: [
                "BenchmarkGuests",
                .product(name: "ShadowMMU", package: shadowMMUPackage),
                .product(name: "VirtualMachine", package: shadowMMUPackage),
                .product(name: "X86Paging", package: shadowMMUPackage),
            ],
            path: "Profiling/HotPathProfile"
        ),
        // Not a benchmark either: the scaling curves of docs/scaling.md (cost
        // and memory as guest memory, processes and vCPUs grow), measured in
        // one run, written as CSV and drawn as SVG by scripts/scaling-plots.sh.
        .executableTarget(
            name: "ScalingCurves",
            dependencies: [
                "BenchmarkGuests",
                .product(name: "GuestWorkloads", package: shadowMMUPackage),
                .product(name: "ScenarioLanguage", package: shadowMMUPackage),
                .product(name: "ShadowMMU", package: shadowMMUPackage),
                .product(name: "VirtualMachine", package: shadowMMUPackage),
                .product(name: "X86Paging", package: shadowMMUPackage),
            ],
            path: "Profiling/ScalingCurves"
        ),
    ]
)
