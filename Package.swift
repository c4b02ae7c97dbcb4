// swift-tools-version: 6.1
//
// ShadowMMU: an executable model of the Linux KVM x86 MMU.
//
// Modules, dependencies pointing one way (see docs/ and DESIGN.md §3):
//   X86Paging ← HostPlatform ← MMUEncoding ← ShadowMMU ← VirtualMachine ← ScenarioRuntime
//   ← {ScenarioVerification, ScenarioVisualization, GuestWorkloads} ← ShadowMMUCommands
//   ← shadowmmu; KVMCatalogue (KVM's deviations and historical bugs) ← ShadowMMU
//   RealKVM (stand-alone: runs guest operations on the host's /dev/kvm)
//   ← Conformance (the three witnesses: architecture, model, real KVM)
//
// The scenario language (ScenarioLanguage: AST, parser, printer) imports only
// X86Paging; the runtime runs it on a machine; the three tool modules above
// the runtime (verification, visualization, guest workloads) never import
// each other: the commands library composes them. Conformance sits above
// verification (it reuses the architectural oracle) and RealKVM.
//
// Benchmarks live in their own package under Benchmarks/ so that building and
// testing this package never pulls in the benchmark harness.
import PackageDescription

let package = Package(
    name: "ShadowMMU",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "X86Paging", targets: ["X86Paging"]),
        .library(name: "HostPlatform", targets: ["HostPlatform"]),
        .library(name: "MMUEncoding", targets: ["MMUEncoding"]),
        .library(name: "KVMCatalogue", targets: ["KVMCatalogue"]),
        .library(name: "ShadowMMU", targets: ["ShadowMMU"]),
        .library(name: "VirtualMachine", targets: ["VirtualMachine"]),
        .library(name: "ScenarioLanguage", targets: ["ScenarioLanguage"]),
        .library(name: "ScenarioRuntime", targets: ["ScenarioRuntime"]),
        .library(name: "ScenarioVerification", targets: ["ScenarioVerification"]),
        .library(name: "ScenarioVisualization", targets: ["ScenarioVisualization"]),
        .library(name: "GuestWorkloads", targets: ["GuestWorkloads"]),
        .library(name: "RealKVM", targets: ["RealKVM"]),
        .library(name: "Conformance", targets: ["Conformance"]),
        .executable(name: "shadowmmu", targets: ["shadowmmu"]),
        .executable(name: "shadowmmu-fuzz", targets: ["shadowmmu-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(name: "X86Paging"),
        // The host the hypervisor runs on: host memory, memslots, guest memory.
        .target(name: "HostPlatform", dependencies: ["X86Paging"]),
        // The words KVM's MMU writes and keys its pages by: sptes, page roles.
        .target(name: "MMUEncoding", dependencies: ["HostPlatform", "X86Paging"]),
        // Where KVM departs from the architecture (--fix) and its historical
        // bugs (--regress): names and what is known about each.
        .target(name: "KVMCatalogue"),
        .target(name: "ShadowMMU", dependencies: ["HostPlatform", "MMUEncoding", "KVMCatalogue", "X86Paging"]),
        .target(name: "VirtualMachine", dependencies: ["ShadowMMU", "HostPlatform", "X86Paging"]),
        .target(name: "ScenarioLanguage", dependencies: ["X86Paging"]),
        .target(
            name: "ScenarioRuntime",
            dependencies: ["ScenarioLanguage", "VirtualMachine", "ShadowMMU", "MMUEncoding", "KVMCatalogue", "X86Paging"]),
        .target(
            name: "ScenarioVerification",
            dependencies: ["ScenarioRuntime", "ScenarioLanguage", "VirtualMachine", "ShadowMMU", "KVMCatalogue", "X86Paging"]),
        .target(
            name: "ScenarioVisualization",
            dependencies: ["ScenarioRuntime", "ScenarioLanguage", "ShadowMMU", "MMUEncoding", "KVMCatalogue", "X86Paging"]),
        .target(name: "GuestWorkloads", dependencies: ["ScenarioRuntime", "ScenarioLanguage", "KVMCatalogue", "X86Paging"]),
        // Runs guest operations on the host's real /dev/kvm (Glibc only).
        .target(name: "RealKVM"),
        .target(
            name: "Conformance",
            dependencies: ["RealKVM", "ScenarioVerification", "ScenarioRuntime", "ScenarioLanguage", "ShadowMMU", "KVMCatalogue", "X86Paging"]),
        .target(
            name: "ShadowMMUCommands",
            dependencies: [
                "ScenarioLanguage", "ScenarioRuntime", "ScenarioVerification", "ScenarioVisualization", "GuestWorkloads",
                "Conformance", "RealKVM", "ShadowMMU", "KVMCatalogue", "X86Paging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            plugins: ["BuildStamp"]
        ),
        // Stamps the git commit the sources were built from (`shadowmmu --version`).
        .plugin(name: "BuildStamp", capability: .buildTool()),
        .executableTarget(name: "shadowmmu", dependencies: ["ShadowMMUCommands"]),
        // The fuzz target over the tool's inputs (scenario parser, run, Lackey
        // parser) and the long mutation run scripts/fuzz-inputs.sh drives;
        // the tests replay its corpus and findings (Tests/Fuzz/).
        .target(name: "InputFuzzing", dependencies: ["GuestWorkloads", "ScenarioLanguage", "ScenarioRuntime"]),
        .executableTarget(
            name: "shadowmmu-fuzz",
            dependencies: ["InputFuzzing", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // Helpers several test targets share (where the repository's files
        // are, hex, a scenario run to its printed lines); not a test target.
        .target(name: "TestSupport", dependencies: ["ScenarioLanguage", "ScenarioRuntime"], path: "Tests/TestSupport"),
        .testTarget(name: "X86PagingTests", dependencies: ["X86Paging"]),
        .testTarget(name: "HostPlatformTests", dependencies: ["HostPlatform", "X86Paging"]),
        .testTarget(name: "MMUEncodingTests", dependencies: ["MMUEncoding", "X86Paging"]),
        .testTarget(name: "KVMCatalogueTests", dependencies: ["KVMCatalogue"]),
        .testTarget(
            name: "ShadowMMUTests",
            dependencies: [
                "ShadowMMU", "HostPlatform", "MMUEncoding", "KVMCatalogue", "VirtualMachine", "ScenarioLanguage", "ScenarioRuntime",
                "ScenarioVerification", "X86Paging", "TestSupport",
            ],
            exclude: ["Regressions", "Deviations"]  // scenarios the tests read from disk
        ),
        .testTarget(name: "VirtualMachineTests", dependencies: ["VirtualMachine", "ShadowMMU", "X86Paging"]),
        .testTarget(name: "ScenarioLanguageTests", dependencies: ["ScenarioLanguage", "X86Paging", "TestSupport"]),
        .testTarget(
            name: "ScenarioRuntimeTests",
            dependencies: ["ScenarioRuntime", "ScenarioLanguage", "ShadowMMU", "HostPlatform", "X86Paging", "TestSupport"]),
        .testTarget(
            name: "ScenarioVerificationTests",
            dependencies: ["ScenarioVerification", "ScenarioRuntime", "ScenarioLanguage", "ShadowMMU", "KVMCatalogue", "X86Paging", "TestSupport"]),
        .testTarget(
            name: "ScenarioVisualizationTests",
            dependencies: ["ScenarioVisualization", "ScenarioRuntime", "ScenarioLanguage", "X86Paging", "TestSupport"]),
        .testTarget(name: "GuestWorkloadsTests", dependencies: ["GuestWorkloads", "ScenarioVerification", "ScenarioRuntime", "ScenarioLanguage", "X86Paging", "TestSupport"]),
        .testTarget(name: "RealKVMTests", dependencies: ["RealKVM"]),
        .testTarget(
            name: "ConformanceTests", dependencies: ["Conformance", "RealKVM", "ScenarioLanguage", "ShadowMMU", "TestSupport"],
            exclude: ["Scenarios"]),
        .testTarget(name: "InputFuzzingTests", dependencies: ["InputFuzzing"]),
        .testTarget(
            name: "ShadowMMUCommandsTests",
            dependencies: ["ShadowMMUCommands", "ScenarioLanguage", "ScenarioRuntime", "ScenarioVerification", "KVMCatalogue", "RealKVM", "TestSupport"],
            exclude: ["Fixtures"]),  // pages the browser check reads from disk
    ]
)
