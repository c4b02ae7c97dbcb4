import KVMCatalogue
import Foundation
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ShadowMMU
import Testing

/// The checker's verdicts: a difference that the deviations' fixes remove is
/// that deviation (known KVM behaviour), anything else a failure.
@Suite("Classifying differences")
struct ClassificationTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func load(_ path: String) throws -> Scenario {
        let text = try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
        return try ScenarioParser.parse(text, fileName: path)
    }

    @Test func aDeviationIsNamedAndKeepsItsMismatch() throws {
        let reports = try DifferentialChecker.check(try Self.load("Tests/ShadowMMUTests/Deviations/efer-nx-forced.scenario"))
        let shadow = try #require(reports.first { $0.configuration == .shadow(host: .bits64) })
        #expect(shadow.verdict == .deviation([.eferNXForced]))
        #expect("\(shadow.verdict)" == "deviation efer-nx-forced")
        #expect(!shadow.passed && !shadow.mismatches.isEmpty)
        #expect(!shadow.isFailure(strict: false) && shadow.isFailure(strict: true))
        // The same under upstream's special roots: a 4-level guest's root is an ordinary page in both designs.
        for report in reports where report.configuration.with(roots: .local) != .shadow(host: .bits64) {
            #expect(report.verdict == .pass, "\(report.configuration): \(report.verdict)")
        }
        #expect(reports.first { $0.configuration == .shadow(host: .bits64, roots: .special) }?.verdict == .deviation([.eferNXForced]))
        let fixed = try DifferentialChecker.check(try Self.load("Tests/ShadowMMUTests/Deviations/efer-nx-forced.scenario"), fixes: Set(Deviation.allCases))
        #expect(fixed.allSatisfy { $0.verdict == .pass && $0.passed })
    }

    @Test("Every deviation's scenario is reported as that deviation", arguments: Deviation.allCases)
    func eachScenarioIsItsDeviation(_ deviation: Deviation) throws {
        let scenario = try Self.load("Tests/ShadowMMUTests/Deviations/\(deviation.rawValue).scenario")
        let reports = try DifferentialChecker.check(scenario, under: [scenario.mmu])
        #expect(reports.map(\.verdict) == [.deviation([deviation])])
    }

    @Test func aModelBugStaysAFailureThoughTheDeviationsAreTried() throws {
        let scenario = try Self.load("Tests/ShadowMMUTests/Regressions/stale-npt-pdpte.scenario")
        // The series' check switched off: every configuration with local roots fails.
        let reports = try DifferentialChecker.check(scenario, under: DifferentialChecker.localConfigurations, regressions: [.staleNPTPDPTE])
        #expect(!reports.isEmpty)
        #expect(reports.allSatisfy { $0.verdict == .fail && $0.isFailure(strict: false) })
    }

    @Test func singleFixesAreTriedNarrowestFirst() throws {
        #expect(Set(DifferentialChecker.attributionOrder) == Set(Deviation.allCases))
        #expect(DifferentialChecker.attributionOrder.count == Deviation.allCases.count)
        // The example toggles CR4.PSE (and EFER.NXE, meaningless in 32-bit
        // paging): fixing efer-nx-forced would remove the difference too, by the way.
        let reports = try DifferentialChecker.check(try Self.load("examples/32-bit.scenario"), under: [.shadow(host: .bits64)])
        #expect(reports.map(\.verdict) == [.deviation([.cr4PSENotInRole])])
    }

    /// A small fuzz run, fixed seeds, in the modes where efer-nx-forced can
    /// show (PAE and long mode): the generator's setting episodes meet it.
    @Test("Generated guests meet efer-nx-forced", arguments: [ScenarioGenerator.GuestMode.pae, .level4, .level5])
    func generatedGuestsMeetEferNXForced(_ mode: ScenarioGenerator.GuestMode) throws {
        var met: UInt64?
        for seed in UInt64(0)..<6 {
            let text = GuestFamily.plain(mode).generate(seed: seed, length: 200)
            let reports = try DifferentialChecker.check(try ScenarioParser.parse(text, fileName: "fuzz-\(mode)-\(seed).scenario"), under: [.shadow(host: .bits64)])
            #expect(!reports.contains { $0.isFailure(strict: false) }, "fuzz-\(mode)-\(seed) fails")
            if reports.contains(where: { if case .deviation(let set) = $0.verdict { set.contains(.eferNXForced) } else { false } }) {
                met = seed
                break
            }
        }
        #expect(met != nil, "no \(mode) guest among seeds 0..<6 met efer-nx-forced")
    }
}
