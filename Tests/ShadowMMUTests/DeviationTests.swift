import KVMCatalogue
import MMUEncoding
import Foundation
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import ShadowMMU
import Testing
import X86Paging

/// Every KVM deviation from the architecture (`Deviation`): its scenario in
/// `Deviations/` states the architectural results in its `expect` lines; the
/// model, like KVM, gives another result under `mmu shadow`, and with the
/// deviation fixed it matches the reference everywhere, audits included.
@Suite("KVM deviations")
struct DeviationTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Deviations")
    static let documentation = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/deviations.md")

    static func scenario(_ deviation: Deviation) throws -> Scenario {
        let name = deviation.rawValue + ".scenario"
        let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        return try ScenarioParser.parse(text, fileName: name)
    }

    @Test("Every deviation has a scenario and a documentation entry")
    func everyDeviationIsDocumented() throws {
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: Self.directory.path))
        let docs = try String(contentsOf: Self.documentation, encoding: .utf8)
        let headings = Set(docs.split(separator: "\n").filter { $0.hasPrefix("## ") }.map { $0.dropFirst(3).trimmingCharacters(in: .whitespaces) })
        for deviation in Deviation.allCases {
            #expect(files.contains(deviation.rawValue + ".scenario"), "no Deviations/\(deviation.rawValue).scenario")
            #expect(headings.contains("`\(deviation.rawValue)`"), "docs/deviations.md has no '## `\(deviation.rawValue)`' entry")
        }
        // And nothing documented or kept as a scenario that is not a case.
        for file in files where file.hasSuffix(".scenario") {
            #expect(Deviation(rawValue: String(file.dropLast(".scenario".count))) != nil, "Deviations/\(file) names no Deviation case")
        }
    }

    @Test("The scenario's expectations are the architecture's", arguments: Deviation.allCases)
    func expectationsHoldNatively(_ deviation: Deviation) throws {
        var native = try Self.scenario(deviation)
        native.mmu = .native
        var failures: [ExpectationFailure] = []
        try ScenarioRunner(native).run(expectationFailed: { failures.append($0) })
        #expect(failures.isEmpty, "\(deviation.rawValue): expectations fail under mmu native: \(failures.map(\.description))")
    }

    @Test("By default the shadow MMU gives KVM's result, not the architecture's", arguments: Deviation.allCases)
    func defaultIsKVM(_ deviation: Deviation) throws {
        let scenario = try Self.scenario(deviation)
        #expect(scenario.mmu != .native)
        var failures: [ExpectationFailure] = []
        try ScenarioRunner(scenario).run(expectationFailed: { failures.append($0) })
        #expect(!failures.isEmpty, "\(deviation.rawValue): the default shadow MMU met every architectural expectation")
        let reports = try DifferentialChecker.check(scenario, under: [scenario.mmu], audit: nil)
        #expect(reports.count == 1 && !reports[0].mismatches.isEmpty, "\(deviation.rawValue): no difference from the reference without the fix")
        // Every other fix together does not remove it: this deviation is its own.
        let others = Set(Deviation.allCases).subtracting([deviation])
        let withOthers = try DifferentialChecker.check(scenario, under: [scenario.mmu], audit: nil, fixes: others)
        #expect(withOthers.allSatisfy { !$0.mismatches.isEmpty }, "\(deviation.rawValue): another deviation's fix removes the difference")
    }

    @Test("With the fix every configuration matches the reference", arguments: Deviation.allCases)
    func fixIsArchitectural(_ deviation: Deviation) throws {
        let scenario = try Self.scenario(deviation)
        var failures: [ExpectationFailure] = []
        try ScenarioRunner(scenario, fixes: [deviation]).run(expectationFailed: { failures.append($0) })
        #expect(failures.isEmpty, "\(deviation.rawValue) fixed: \(failures.map(\.description))")
        let reports = try DifferentialChecker.check(scenario, fixes: [deviation])
        #expect(reports.contains { $0.configuration == scenario.mmu })
        for report in reports {
            #expect(report.passed, """
                \(deviation.rawValue) fixed, under \(report.configuration):
                  \((report.mismatches.prefix(5) + report.auditFailures.prefix(5)).joined(separator: "\n  "))
                """)
        }
    }

    @Test("Without fixes the shadow root forces EFER.NX, as kvm_init_shadow_mmu does")
    func defaultRootRoleForcesNX() {
        func fourLevel(nxe: Bool) -> CPURole {
            CPURole(ControlRegisters(
                model: CPUModel(), cr0: CR0(rawValue: 0x8001_0011), cr3: 0x1000, cr4: CR4(rawValue: 0x20),
                efer: EFER(rawValue: nxe ? 0xd00 : 0x500)))
        }
        #expect(!fourLevel(nxe: false).base.eferNX)
        #expect(PageRole.shadowRoot(for: fourLevel(nxe: false)).eferNX)
        #expect(!PageRole.shadowRoot(for: fourLevel(nxe: false), keepingGuestNX: true).eferNX)
        #expect(PageRole.shadowRoot(for: fourLevel(nxe: true), keepingGuestNX: true).eferNX)
        // Apart from EFER.NX the fix leaves the role as it was.
        var forced = PageRole.shadowRoot(for: fourLevel(nxe: false), keepingGuestNX: true)
        forced.eferNX = true
        #expect(forced == PageRole.shadowRoot(for: fourLevel(nxe: false)))
    }
}
