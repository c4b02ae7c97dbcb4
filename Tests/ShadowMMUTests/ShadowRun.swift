import MMUEncoding
@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import VirtualMachine
import X86Paging

/// A scenario run command by command under `mmu shadow`, with the MMU's full
/// audit after every command, so a test can stop at a marked line, look at
/// the shadow pages, and go on.
///
/// Mark a line with a comment `# @name`; `run(upTo: "name")` executes every
/// command before that line.
final class ShadowRun {
    let scenario: Scenario
    let runner: ScenarioRunner
    let machine: HypervisorMachine
    private(set) var observations: [Observation] = []
    private(set) var expectationFailures: [ExpectationFailure] = []
    private var executed = 0
    private let markers: [String: Int]

    var vm: VirtualMachine { machine.vm }
    var mmu: ShadowMMU { machine.vm.mmu }
    var printed: [String] { observations.filter(\.isPrinted).map(\.json) }

    /// `mmu`: the configuration to run under; `mmu shadow host=HOST` when nil.
    init(_ text: String, host: HostKind = .bits64, mmu configuration: MMUConfiguration? = nil, name: String = "test.scenario") throws {
        var scenario = try ScenarioParser.parse(text, fileName: name)
        scenario.mmu = configuration ?? .shadow(host: host)
        self.scenario = scenario
        runner = try ScenarioRunner(scenario)
        machine = try #require(runner.machine as? HypervisorMachine)
        machine.auditLevel = .full
        markers = Self.markers(in: text)
    }

    static func markers(in text: String) -> [String: Int] {
        var found: [String: Int] = [:]
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard let range = line.range(of: "# @") else { continue }
            let name = line[range.upperBound...].prefix { !$0.isWhitespace }
            found[String(name)] = index + 1
        }
        return found
    }

    func step() {
        runner.step(observe: { observations.append($0) }, expectationFailed: { expectationFailures.append($0) })
        executed += 1
    }

    /// Executes every command on a line before the one marked `# @marker`.
    func run(upTo marker: String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let line = markers[marker] else {
            Issue.record("no line is marked '# @\(marker)'", sourceLocation: sourceLocation)
            return
        }
        while executed < scenario.commands.count, scenario.commands[executed].line < line { step() }
    }

    func runToEnd() {
        while executed < scenario.commands.count { step() }
    }

    /// Audits, hardware violations, use of freed frames and `expect` lines.
    func expectClean(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(machine.auditFailures.isEmpty, "audit failures: \(machine.auditFailures.prefix(5))", sourceLocation: sourceLocation)
        #expect(vm.violations.isEmpty, "machine violations: \(vm.violations.prefix(5))", sourceLocation: sourceLocation)
        #expect(vm.host.poisonedReads == 0, "reads of freed host frames", sourceLocation: sourceLocation)
        #expect(expectationFailures.isEmpty, "expectations: \(expectationFailures.map(\.description))", sourceLocation: sourceLocation)
        let now = mmu.audit(level: .full, at: "end of test")
        #expect(now.isEmpty, "final audit: \(now.prefix(5))", sourceLocation: sourceLocation)
    }

    // MARK: Looking at shadow pages

    func root(vcpu: Int = 0) -> ShadowPage? { mmu.contexts[vcpu].root }

    /// The raw spte at `index` of `page`.
    func spte(_ page: ShadowPage, _ index: Int) -> UInt64 { mmu.host.entry(page.spteAddress(index)) }

    /// The page that entry `index` of `page` links, if it is present.
    func child(_ page: ShadowPage, _ index: Int) -> ShadowPage? {
        let entry = SPTE(rawValue: spte(page, index))
        return entry.isShadowPresent && page.role.level > 1 ? mmu.child(of: entry) : nil
    }

    /// Indices of the shadow-present entries of `page`.
    func presentEntries(_ page: ShadowPage) -> [Int] {
        (0..<512).filter { SPTE(rawValue: spte(page, $0)).isShadowPresent }
    }

    func isHashed(_ page: ShadowPage) -> Bool { mmu.hash.values.contains { $0 === page } }
    func isLive(_ page: ShadowPage) -> Bool { mmu.livePages.contains { $0 === page } }

    /// Hashed pages shadowing or mapping `gfn` at `level`.
    func hashedPages(gfn: UInt64, level: Int) -> [ShadowPage] {
        mmu.hashedPages.filter { $0.gfn == gfn && $0.role.level == level }
    }

    /// The leaf spte that maps `address` for `vcpu`'s current root.
    func leafSPTE(_ address: UInt64, vcpu: Int = 0) -> SPTE? { mmu.leafSPTE(mmu.contexts[vcpu], address) }
}

/// Runs `text` through the differential checker under both shadow hosts (those
/// that can run it) and requires every report to pass.
func expectMatchesReference(
    _ text: String, name: String = "test.scenario", sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let scenario = try ScenarioParser.parse(text, fileName: name)
    let reports = try DifferentialChecker.check(scenario)
    #expect(!reports.isEmpty, "no shadow configuration could run \(name)", sourceLocation: sourceLocation)
    for report in reports where !report.passed {
        let detail = (report.mismatches.prefix(4) + report.auditFailures.prefix(4)).joined(separator: "\n  ")
        Issue.record("\(name) under \(report.configuration):\n  \(detail)", sourceLocation: sourceLocation)
    }
}

/// Both shadow hosts, for the rows of DESIGN.md §4 that a 32-bit PAE host runs too.
let bothHosts: [HostKind] = [.bits64, .pae32]
