import KVMCatalogue
import ShadowMMU
import VirtualMachine
import ScenarioLanguage
import ScenarioRuntime

/// One row of `shadowmmu matrix`: a guest paging mode run under one MMU
/// configuration, checked against the architecture, with what it cost.
public struct MatrixRow: Sendable {
    public var configuration: MMUConfiguration
    /// The guest: its paging mode, or for a nested guest L1's nested paging and L2's mode.
    public var guest: String
    /// Root levels, and how many of them are local pages (DESIGN.md §4);
    /// whether the root is a passthrough page (row 11).
    public var rootLevels: Int
    /// Levels at the root's top that are local pages, or under
    /// `roots=special` upstream's special tables (`specialRoot`).
    public var localLevels: Int
    public var specialRoot: Bool
    public var passthrough: Bool
    public var exits: Int
    public var pages: Int
    public var faultsFixed: Int
    public var guestFaults: Int
    /// Roots built (`roots_loaded`) and let go of (`roots_freed`).
    public var rootsBuilt: Int
    public var rootsFreed: Int
    /// Host memory holding the hypervisor's tables at the end, in KiB.
    public var tableKiB: Int

    /// "3 (1 local)", "4 (2 special)", "5 (passthrough)".
    public var rootShape: String {
        if passthrough { return "\(rootLevels) (passthrough)" }
        return "\(rootLevels) (\(localLevels) \(specialRoot ? "special" : "local"))"
    }
    /// Memory references per hardware walk (two-dimensional walks only).
    public var referencesPerWalk: Double?
    /// The checker's verdict: pass, a deviation of KVM's (`--fix` removes
    /// it), or a failure, with the first difference found.
    public var verdict: Verdict

    public enum Verdict: Hashable, Sendable, CustomStringConvertible {
        case pass
        /// Every difference disappears with these deviations fixed.
        case deviation(Set<Deviation>, firstDifference: String)
        case fail(firstDifference: String)

        public init(_ report: DifferentialChecker.Report) {
            let first = (report.mismatches + report.auditFailures).first ?? ""
            switch report.verdict {
            case .pass: self = .pass
            case .deviation(let deviations): self = .deviation(deviations, firstDifference: first)
            case .fail: self = .fail(firstDifference: first)
            }
        }

        /// `pass`, `deviation NAME`, or `FAIL: ` and the first difference.
        public var description: String {
            switch self {
            case .pass: "pass"
            case .deviation(let deviations, _): DifferentialChecker.Verdict.deviation(deviations).description
            case .fail(let first): "FAIL: " + first
            }
        }

        /// Whether this row fails the matrix: a failure always, a deviation only when `strict`.
        public func isFailure(strict: Bool) -> Bool {
            switch self {
            case .pass: false
            case .deviation: strict
            case .fail: true
            }
        }
    }
}

/// `shadowmmu matrix`: every configuration × every guest mode it can run, on
/// the same built-in workload (a generated guest with demand faults,
/// page-table edits with and without invalidation, CR3 switches between
/// address spaces, huge pages, control-register changes, host events).
public enum ConfigurationMatrix {
    /// The guests of the matrix: one per paging mode, then one nested guest
    /// per kind of L1 nested paging (a PAE L2 where a 32-bit host must run it).
    public static func guests(seed: UInt64, length: Int) -> [(label: String, text: String)] {
        ScenarioGenerator.GuestMode.allCases.map { mode in
            (mode.rawValue, ScenarioGenerator(mode: mode, seed: seed, length: length).generate())
        } + NestedScenarioGenerator.L1Kind.allCases.map { kind in
            let l2: ScenarioGenerator.GuestMode = kind == .npt32 || kind == .nptPAE ? .pae : .level4
            return ("L1 \(kind) / L2 \(l2)", NestedScenarioGenerator(l1: kind, l2: l2, seed: seed, length: length, changesMode: false).generate())
        }
    }

    /// `progress` hears (guests done, guests in all, the guest starting) before each guest.
    public static func run(
        seed: UInt64 = 1, length: Int = 300, fixes: Set<Deviation> = [],
        configurations: [MMUConfiguration] = DifferentialChecker.configurations, progress: ((Int, Int, String) -> Void)? = nil
    ) throws(ScenarioError) -> [MatrixRow] {
        var rows: [MatrixRow] = []
        let guests = guests(seed: seed, length: length)
        for (index, (label, text)) in guests.enumerated() {
            progress?(index, guests.count, label)
            let scenario = try ScenarioParser.parse(text, fileName: "matrix-\(label).scenario")
            for report in try DifferentialChecker.check(scenario, under: configurations, fixes: fixes) {
                guard let hypervisor = report.machine.hypervisor else { continue }
                let statistics = report.machine.statistics
                let root = completeRoot(of: scenario, under: report.configuration, fixes: fixes) ?? hypervisor.currentRoot(vcpu: 0)
                let (levels, local, special) = shape(root)
                let walks = statistics[.hardwareWalks]
                rows.append(MatrixRow(
                    configuration: report.configuration, guest: label, rootLevels: levels, localLevels: local, specialRoot: special,
                    passthrough: root?.role.passthrough ?? false,
                    exits: statistics[.exits], pages: statistics[.shadowPages],
                    faultsFixed: statistics[.shadowFaultsFixed], guestFaults: statistics[.guestPageFaults],
                    rootsBuilt: statistics[.rootsLoaded], rootsFreed: statistics[.rootsFreed],
                    tableKiB: statistics[.hostTableFrames] * 4,
                    referencesPerWalk: hypervisor.mmu.mode.isTDP && walks > 0 ? Double(statistics[.walkReferences]) / Double(walks) : nil,
                    verdict: MatrixRow.Verdict(report)))
            }
        }
        return rows
    }

    /// The root when it was most complete: the run's last root can have
    /// just been rebuilt (a CR3 load, a nested entry) with its local levels
    /// not yet filled, or not built at all. Re-runs `scenario` under
    /// `configuration` and looks at the accessing vCPU's root after every
    /// access: the one with the deepest chain of local pages (or special
    /// tables), the latest among equals, is the root's shape. (A second run:
    /// the checker's own stops at the first difference its oracle cannot
    /// follow, before the root may be complete.)
    static func completeRoot(of scenario: Scenario, under configuration: MMUConfiguration, fixes: Set<Deviation>) -> ShadowTableDump? {
        var variant = scenario
        variant.mmu = configuration
        guard let runner = try? ScenarioRunner(variant, fixes: fixes), let hypervisor = runner.machine.hypervisor else { return nil }
        var best: (root: ShadowTableDump, local: Int)?
        var vcpu = 0
        for command in variant.commands {
            runner.step(observe: { _ in }, expectationFailed: { _ in })
            if case .selectVCPU(let index) = command.action { vcpu = index }
            guard case .access = command.action, let root = hypervisor.currentRoot(vcpu: vcpu) else { continue }
            let local = shape(root).1
            if best.map({ local >= $0.local }) ?? true { best = (root, local) }
        }
        return best?.root
    }

    /// Levels of the root, how many local pages (or special tables) stack
    /// at its top, and whether they are special tables.
    static func shape(_ root: ShadowTableDump?) -> (Int, Int, Bool) {
        guard let root else { return (0, 0, false) }
        var local = 0
        var page: ShadowTableDump? = root
        while let current = page, current.local || current.special {
            local += 1
            page = current.entries.lazy.compactMap { if case .table(let child) = $0.entry { child } else { nil } }.first
        }
        return (root.level, local, root.special)
    }
}
