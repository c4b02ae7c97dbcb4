// swift-tools-version: 6.1
//
// ShadowMMU: an executable model of the Linux KVM x86 MMU.
//
// Modules, dependencies pointing one way (see docs/ and DESIGN.md §3):
//   X86Paging ← ShadowMMU ← VirtualMachine ← Scenarios ← ShadowMMUCommands ← shadowmmu
//   RealKVM (stand-alone: runs operations on the host's /dev/kvm)
//
// Benchmarks live in their own package under Benchmarks/ so that building and
// testing this package never pulls in the benchmark harness.
import PackageDescription

let package = Package(
    name: "ShadowMMU",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "X86Paging", targets: ["X86Paging"]),
        .library(name: "ShadowMMU", targets: ["ShadowMMU"]),
        .library(name: "VirtualMachine", targets: ["VirtualMachine"]),
        .library(name: "Scenarios", targets: ["Scenarios"]),
        .library(name: "RealKVM", targets: ["RealKVM"]),
        .executable(name: "shadowmmu", targets: ["shadowmmu"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(name: "X86Paging"),
        .target(name: "ShadowMMU", dependencies: ["X86Paging"]),
        .target(name: "VirtualMachine", dependencies: ["ShadowMMU", "X86Paging"]),
        .target(name: "Scenarios", dependencies: ["VirtualMachine", "ShadowMMU", "X86Paging"]),
        .target(
            name: "ShadowMMUCommands",
            dependencies: [
                "Scenarios", "ShadowMMU", "X86Paging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "shadowmmu", dependencies: ["ShadowMMUCommands"]),
        // Runs scenario operations on the host's real /dev/kvm (Glibc only).
        .target(name: "RealKVM"),
        .testTarget(name: "X86PagingTests", dependencies: ["X86Paging"]),
        .testTarget(
            name: "ShadowMMUTests", dependencies: ["ShadowMMU", "VirtualMachine", "Scenarios", "X86Paging"],
            exclude: ["Regressions"]  // scenarios the tests read from disk
        ),
        .testTarget(name: "RealKVMTests", dependencies: ["RealKVM"]),
        .testTarget(name: "ScenariosTests", dependencies: ["Scenarios", "X86Paging"]),
        .testTarget(name: "ShadowMMUCommandsTests", dependencies: ["ShadowMMUCommands", "Scenarios"]),
    ]
)
