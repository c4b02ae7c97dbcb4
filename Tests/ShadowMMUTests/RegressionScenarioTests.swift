import KVMCatalogue
import Foundation
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import ShadowMMU
import Testing

/// Every scenario in `Regressions/` (next to this file): its own `expect`
/// lines hold under `mmu native`, and the differential checker finds every
/// shadow configuration that can run it identical to the reference, with
/// clean audits after every command.
@Suite("Regression scenarios")
struct RegressionScenarioTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Regressions")

    static let names: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
        .filter { $0.hasSuffix(".scenario") }.sorted()

    /// Scenarios that show the model architectural where KVM is not: they
    /// run with that deviation fixed (the default is KVM's behaviour, shown
    /// by the deviation's own scenario in `Deviations/`).
    /// The stale-nPDPTE scenario is, under upstream's special roots, that
    /// design's documented bug (Deviations/npt-pdptes-read-at-root-load).
    static let fixes: [String: Set<Deviation>] = [
        "cr4-pse-toggle-4m-page.scenario": [.cr4PSENotInRole],
        "stale-npt-pdpte.scenario": [.nptPDPTEsReadAtRootLoad],
    ]

    @Test("The regression folder holds scenarios")
    func folderIsNotEmpty() {
        #expect(!Self.names.isEmpty, "no .scenario files in \(Self.directory.path)")
    }

    @Test("Regression scenario passes the differential checker", arguments: names)
    func regressionScenarioPasses(name: String) throws {
        let text = try String(contentsOf: Self.directory.appendingPathComponent(name), encoding: .utf8)
        let scenario = try ScenarioParser.parse(text, fileName: name)

        var native = scenario
        native.mmu = .native
        var failures: [ExpectationFailure] = []
        try ScenarioRunner(native).run(expectationFailed: { failures.append($0) })
        #expect(failures.isEmpty, "\(name): expectations fail under mmu native: \(failures.map(\.description))")

        let reports = try DifferentialChecker.check(scenario, fixes: Self.fixes[name] ?? [])
        #expect(!reports.isEmpty, "\(name): no shadow configuration can run it")
        for report in reports {
            #expect(report.passed, """
                \(name) under \(report.configuration):
                  \((report.mismatches.prefix(5) + report.auditFailures.prefix(5)).joined(separator: "\n  "))
                """)
        }
    }
}

/// The bug zoo: every `Regression` has a scenario `Regressions/NAME.scenario`
/// that the checker passes as the model is and fails with that bug switched
/// back on, and metadata naming the upstream fix.
@Suite("Bug zoo scenarios")
struct BugZooScenarioTests {
    @Test("A zoo entry's scenario passes the checker and fails it with the bug on", arguments: Regression.allCases)
    func zooScenarioCatchesItsBug(regression: Regression) throws {
        let name = regression.rawValue + ".scenario"
        let url = RegressionScenarioTests.directory.appendingPathComponent(name)
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            Issue.record("\(regression.rawValue): no scenario \(url.path)")
            return
        }
        let scenario = try ScenarioParser.parse(text, fileName: name)
        let fixes = RegressionScenarioTests.fixes[name] ?? []
        let fixed = try DifferentialChecker.check(scenario, fixes: fixes)
        #expect(!fixed.isEmpty && fixed.allSatisfy(\.passed), "\(name) fails without --regress \(regression.rawValue)")
        let broken = try DifferentialChecker.check(scenario, regressions: [regression], fixes: fixes)
        #expect(broken.contains { $0.verdict == .fail }, "\(name): no configuration fails with --regress \(regression.rawValue)")
    }

    @Test("Every zoo entry names its upstream fix and what went wrong", arguments: Regression.allCases)
    func metadataIsComplete(regression: Regression) {
        let metadata = regression.metadata
        #expect(!metadata.fixTitle.isEmpty && !metadata.summary.isEmpty, "\(regression.rawValue)")
        if let commit = metadata.commit {
            #expect(commit.count >= 12 && commit.allSatisfy(\.isHexDigit), "\(regression.rawValue): commit id '\(commit)'")
        }
    }

    @Test("The zoo has at least 15 entries")
    func zooSize() { #expect(Regression.allCases.count >= 15) }
}

/// The hardware-TLB audit (`VirtualMachine.auditHardwareTLBs`): a missing
/// remote flush is caught where it happens, by the audit after the command
/// that took the rights away, not only later when a stale write shows.
@Suite("Hardware TLB audit")
struct HardwareTLBAuditTests {
    @Test("A write-protect without a TLB flush is named by the audit", arguments: [Regression.noFlushAfterWriteProtect, .syncWriteProtectWithoutFlush])
    func missingFlushIsAudited(regression: Regression) throws {
        let name = regression.rawValue + ".scenario"
        let text = try String(contentsOf: RegressionScenarioTests.directory.appendingPathComponent(name), encoding: .utf8)
        let scenario = try ScenarioParser.parse(text, fileName: name)
        for report in try DifferentialChecker.check(scenario) {
            #expect(!report.auditFailures.contains { $0.contains("hardware TLB") }, "\(name) under \(report.configuration): \(report.auditFailures.prefix(2))")
        }
        let broken = try DifferentialChecker.check(scenario, regressions: [regression])
        #expect(broken.contains { report in report.auditFailures.contains { $0.contains("hardware TLB") && $0.contains("without a TLB flush") } },
                "\(name): the audit does not see the stale hardware translation with --regress \(regression.rawValue)")
    }
}
