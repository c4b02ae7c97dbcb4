import KVMCatalogue
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import ShadowMMU
import Testing

/// Random guests in every paging mode, run under shadow paging (64-bit and
/// 32-bit PAE hosts) and compared with the reference walker line for line,
/// with the MMU's audits after every command, KVM's deviations fixed.
@Suite("Shadow paging against the reference")
struct DifferentialTests {
    static let seedsPerMode: UInt64 = 8

    @Test(arguments: ScenarioGenerator.GuestMode.allCases)
    func randomGuestsMatchTheReference(_ mode: ScenarioGenerator.GuestMode) throws {
        for seed in 0..<Self.seedsPerMode {
            let text = ScenarioGenerator(mode: mode, seed: seed, length: 120).generate()
            let scenario = try ScenarioParser.parse(text, fileName: "generated-\(mode)-\(seed).scenario")
            // With every KVM deviation fixed (the guests' setting episodes meet
            // them by default, and the checker would report them as deviations).
            let reports = try DifferentialChecker.check(scenario, fixes: Set(Deviation.allCases))
            #expect(!reports.isEmpty, "no configuration could run mode \(mode)")
            for report in reports where !report.passed {
                let detail = (report.mismatches.prefix(3) + report.auditFailures.prefix(3)).joined(separator: "\n  ")
                Issue.record("mode \(mode) seed \(seed) under \(report.configuration):\n  \(detail)")
            }
        }
    }
}
