import ShadowMMU
import VirtualMachine

/// One row of `shadowmmu matrix`: a guest paging mode run under one MMU
/// configuration, checked against the architecture, with what it cost.
public struct MatrixRow: Sendable {
    public var configuration: MMUConfiguration
    public var mode: ScenarioGenerator.GuestMode
    /// Root levels, and how many of them are local pages (DESIGN.md §4).
    public var rootLevels: Int
    public var localLevels: Int
    public var exits: Int
    public var pages: Int
    public var faultsFixed: Int
    public var guestFaults: Int
    /// Memory references per hardware walk (two-dimensional walks only).
    public var referencesPerWalk: Double?
    public var verdict: String
}

/// `shadowmmu matrix`: every configuration × every guest mode it can run, on
/// the same built-in workload (a generated guest with demand faults,
/// page-table edits with and without invalidation, CR3 switches between
/// address spaces, huge pages, control-register changes, host events).
public enum ConfigurationMatrix {
    /// `progress` hears (modes done, modes in all, the mode starting) before each mode.
    public static func run(
        seed: UInt64 = 1, length: Int = 300, progress: ((Int, Int, ScenarioGenerator.GuestMode) -> Void)? = nil
    ) throws(ScenarioError) -> [MatrixRow] {
        var rows: [MatrixRow] = []
        for (index, mode) in ScenarioGenerator.GuestMode.allCases.enumerated() {
            progress?(index, ScenarioGenerator.GuestMode.allCases.count, mode)
            let text = ScenarioGenerator(mode: mode, seed: seed, length: length).generate()
            let scenario = try ScenarioParser.parse(text, fileName: "matrix-\(mode).scenario")
            for report in try DifferentialChecker.check(scenario) {
                guard let machine = report.machine as? HypervisorMachine else { continue }
                let statistics = Dictionary(machine.statistics, uniquingKeysWith: { first, _ in first })
                let (levels, local) = shape(machine.vm.mmu.dumpRoot(vcpu: 0))
                let walks = statistics["hardware_walks"] ?? 0
                rows.append(MatrixRow(
                    configuration: report.configuration, mode: mode, rootLevels: levels, localLevels: local,
                    exits: statistics["exits"] ?? 0, pages: statistics["shadow_pages"] ?? 0,
                    faultsFixed: statistics["shadow_faults_fixed"] ?? 0, guestFaults: statistics["guest_page_faults"] ?? 0,
                    referencesPerWalk: machine.vm.mmu.mode.isTDP && walks > 0 ? Double(statistics["walk_references"] ?? 0) / Double(walks) : nil,
                    verdict: report.passed ? "pass" : "FAIL: " + (report.mismatches + report.auditFailures).prefix(1).joined()))
            }
        }
        return rows
    }

    /// Levels of the root, and how many local pages stack at its top.
    static func shape(_ root: ShadowTableDump?) -> (Int, Int) {
        guard let root else { return (0, 0) }
        var local = 0
        var page: ShadowTableDump? = root
        while let current = page, current.local {
            local += 1
            page = current.entries.lazy.compactMap { if case .table(let child) = $0.entry { child } else { nil } }.first
        }
        return (root.level, local)
    }
}
