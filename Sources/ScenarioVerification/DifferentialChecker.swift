import KVMCatalogue
import ShadowMMU
import VirtualMachine
import X86Paging
import ScenarioLanguage
import ScenarioRuntime

/// Runs one scenario under other MMU configurations and checks what the guest
/// can see against the architecture: every access's result (faults with their
/// error codes, values read) must be one the architecture allows — exactly the
/// reference's when the guest invalidated after each change, else also any
/// result through a translation the CPU may still hold — and every `peek` of
/// memory (so accessed/dirty flags in the guest's tables too) and every
/// register write's acceptance must match. Dirty logs may over-report (a
/// frame listed that was not written), never under-report. With auditing on,
/// the hypervisor's invariants are checked after every command.
///
/// A configuration that differs is classified (``Verdict``): re-run with every
/// KVM deviation fixed (`Deviation`), a difference that disappears is that
/// deviation — known KVM behaviour — and anything else is a failure.
public enum DifferentialChecker {
    /// What a configuration's run came to.
    public enum Verdict: Hashable, Sendable, CustomStringConvertible {
        /// No mismatch with the reference and no audit failure.
        case pass
        /// It differs, and the difference disappears when these KVM
        /// deviations are fixed (`Deviation`, docs/deviations.md): known KVM
        /// behaviour that the model reproduces, not a bug of the model. One
        /// deviation when fixing it alone suffices, else those that had to be
        /// fixed together (a run can meet several).
        case deviation(Set<Deviation>)
        /// It differs, and fixing every deviation does not remove the difference.
        case fail

        /// The deviations by name, in `Deviation.allCases` order: "efer-nx-forced".
        public static func names(_ deviations: Set<Deviation>) -> String {
            Deviation.allCases.filter(deviations.contains).map(\.rawValue).joined(separator: "+")
        }

        /// `pass`, `deviation NAME` (`NAME+NAME` for a set), `FAIL`.
        public var description: String {
            switch self {
            case .pass: "pass"
            case .deviation(let deviations): "deviation \(Self.names(deviations))"
            case .fail: "FAIL"
            }
        }

        /// Whether this verdict makes a check fail: `.fail` always, `.deviation` only when `strict`.
        public func isFailure(strict: Bool) -> Bool {
            switch self {
            case .pass: false
            case .deviation: strict
            case .fail: true
            }
        }
    }

    public struct Report {
        public var configuration: MMUConfiguration
        /// "line N: reference …; this configuration …", in order: what the run
        /// under the requested fixes gave, also when the verdict is a deviation.
        public var mismatches: [String]
        /// The scenario line of the first mismatch (what to `explain`).
        public var firstMismatchLine: Int?
        public var auditFailures: [String]
        /// The machine that ran it (under the requested fixes), as it ended (its counters, its roots).
        public var machine: any GuestMachine
        /// `.pass`, or which deviations explain the difference, or `.fail`.
        public var verdict: Verdict
        /// No mismatch and no audit failure under the requested fixes.
        public var passed: Bool { mismatches.isEmpty && auditFailures.isEmpty }
        /// Whether this report makes the check fail (a deviation only when `strict`).
        public func isFailure(strict: Bool = false) -> Bool { verdict.isFailure(strict: strict) }
    }

    /// The configurations a scenario can be checked under today.
    /// Every MMU configuration, under the series' root design.
    public static let localConfigurations: [MMUConfiguration] = [
        .shadow(host: .bits64), .shadow(host: .pae32),
        .tdp(format: .ept, levels: 4, host: .bits64), .tdp(format: .ept, levels: 5, host: .bits64),
        .tdp(format: .npt, levels: 4, host: .bits64), .tdp(format: .npt, levels: 5, host: .bits64),
        .tdp(format: .npt, levels: 3, host: .pae32),
    ]

    /// What `check`, `fuzz` and `matrix` run by default: every configuration
    /// under the series' design and under upstream's special roots.
    public static let configurations = configurations(roots: [.local, .special])

    /// Every configuration under each of `designs`, each configuration's
    /// designs together. EPT configurations come only with local roots: an
    /// EPT root always has the guest's (or the EPTP's) shape, so no design
    /// has anything to build there.
    public static func configurations(roots designs: [RootsDesign]) -> [MMUConfiguration] {
        localConfigurations.flatMap { base in
            designs.compactMap { design -> MMUConfiguration? in
                if design != .local, case .tdp(.ept, _, _, _) = base { return nil }
                return base.with(roots: design)
            }
        }
    }

    /// Whether `configuration`'s root design can matter to `scenario`: not
    /// for a 4- or 5-level NPT map without an L1 whose nested tables have
    /// fewer levels (every root there is an ordinary page under each design),
    /// so that run is skipped; everything else may build such roots.
    static func rootDesignMatters(_ scenario: Scenario, _ configuration: MMUConfiguration) -> Bool {
        guard configuration.roots != .local, case .tdp(.npt, _, .bits64, _) = configuration else { return true }
        return scenario.commands.contains { command in
            if case .enterNested(let entry) = command.action, case .npt(_, let mode)? = entry.secondStage { return mode.levels <= 3 }
            return false
        }
    }

    /// Checks `scenario` under each of `configurations` that can run it.
    public static func check(
        _ scenario: Scenario, under configurations: [MMUConfiguration] = configurations, audit: AuditLevel? = .full,
        regressions: Set<Regression> = [], fixes: Set<Deviation> = []
    ) throws(ScenarioError) -> [Report] {
        try requireReference(scenario)
        return configurations.compactMap { check(scenario, under: $0, audit: audit, regressions: regressions, fixes: fixes) }
    }

    /// Throws the reason `scenario` cannot run under the reference (`mmu
    /// native`), which every check needs; `check(_:under:…)` for one
    /// configuration leaves it to the caller, once per scenario.
    public static func requireReference(_ scenario: Scenario) throws(ScenarioError) {
        var reference = scenario
        reference.mmu = .native
        _ = try ScenarioRunner(reference)
    }

    /// Checks `scenario` under one configuration (after `requireReference`);
    /// nil when the configuration cannot run it, or its root design cannot
    /// matter to it (`rootDesignMatters`): `check` leaves such runs out.
    public static func check(
        _ scenario: Scenario, under configuration: MMUConfiguration, audit: AuditLevel? = .full,
        regressions: Set<Regression> = [], fixes: Set<Deviation> = []
    ) -> Report? {
        guard rootDesignMatters(scenario, configuration) else { return nil }
        var variant = scenario
        variant.mmu = configuration
        guard let run = run(variant, audit: audit, regressions: regressions, fixes: fixes) else { return nil }  // cannot run it
        var report = Report(
            configuration: configuration, mismatches: run.mismatches.map(\.text),
            firstMismatchLine: run.mismatches.first?.line, auditFailures: run.auditFailures,
            machine: run.machine, verdict: .pass)
        if !report.passed {
            report.verdict = classify(variant, audit: audit, regressions: regressions, fixes: fixes)
        }
        return report
    }

    /// The order in which single fixes are tried, narrowest first: a broad fix
    /// can remove another deviation's difference by the way (fixing
    /// efer-nx-forced gives pages built under each EFER.NXE setting their own
    /// role, so a 32-bit guest that toggles NXE, where XD means nothing, also
    /// loses the stale page-directory shadows of cr4-pse-not-in-role).
    public static let attributionOrder: [Deviation] = [
        .nptPDPTEsReadAtRootLoad,  // special roots over a PAE L1's nested tables only
        .pse36LimitedTo36Bits,  // the walk of a 32-bit 4 MiB PDE only
        .cr0WPEmulationSMAP,    // the spte of one emulated supervisor write
        .cr4PSENotInRole,       // zaps 32-bit page-directory shadows on a PSE change
        .eferNXForced,          // a role bit: new pages after every NXE change
    ]

    /// The verdict on a run under `fixes` that differed from the reference:
    /// re-run with every deviation fixed; if that passes, the first single
    /// deviation whose fix alone makes it pass (in `attributionOrder`), or
    /// else the deviations that must be fixed together (every one not already
    /// fixed, less each that the others do without); if even fixing all does
    /// not pass, `.fail`.
    static func classify(
        _ variant: Scenario, audit: AuditLevel?, regressions: Set<Regression>, fixes: Set<Deviation>
    ) -> Verdict {
        let candidates = attributionOrder.filter { !fixes.contains($0) }
        func passes(_ extra: Set<Deviation>) -> Bool {
            guard let run = run(variant, audit: audit, regressions: regressions, fixes: fixes.union(extra)),
                  run.machine is HypervisorMachine else { return false }
            return run.mismatches.isEmpty && run.auditFailures.isEmpty
        }
        guard !candidates.isEmpty, passes(Set(candidates)) else { return .fail }
        guard candidates.count > 1 else { return .deviation(Set(candidates)) }
        if let single = candidates.first(where: { passes([$0]) }) { return .deviation([single]) }
        // Several at once (one guest can meet two): leave out, one by one, each
        // fix the others do without.
        var needed = Set(candidates)
        for deviation in candidates where passes(needed.subtracting([deviation])) { needed.remove(deviation) }
        return .deviation(needed)
    }

    /// One run of `variant` (its `mmu` line the configuration) in lockstep
    /// with the oracle; nil when the configuration cannot run it.
    static func run(
        _ variant: Scenario, audit: AuditLevel?, regressions: Set<Regression>, fixes: Set<Deviation>
    ) -> (mismatches: [(line: Int, text: String)], auditFailures: [String], machine: any GuestMachine)? {
        guard let machine = try? ScenarioRunner.makeMachine(for: variant) else { return nil }
        machine.hypervisor?.auditLevel = audit
        machine.hypervisor?.configure(regressions: regressions, fixes: fixes, emulatedSupervisor: false)
        let mismatches = lockstep(variant, machine)
        return (mismatches, machine.hypervisor?.auditFailures ?? [], machine)
    }

    /// Runs `scenario` on `machine` and on the architectural oracle side by
    /// side, command by command; the oracle accepts any outcome the
    /// architecture allows and then follows the machine's choice.
    static func lockstep(_ scenario: Scenario, _ machine: any GuestMachine) -> [(line: Int, text: String)] {
        let model = HypervisorMachine.mode(for: scenario.mmu).map {
            VirtualMachine.guestModel(maxPhysicalAddressBits: scenario.machine.maxPhysicalAddressBits, mode: $0)
        } ?? CPUModel(maxPhysicalAddressBits: scenario.machine.maxPhysicalAddressBits)
        let lockstep = Lockstep(scenario, machine: machine, model: model)
        var mismatches: [(line: Int, text: String)] = []
        for command in scenario.commands {
            let step = lockstep.step(command)
            if let complaint = step.complaint, mismatches.count < 20 {
                mismatches.append((command.line, "line \(command.line): \(complaint)"))
            }
            if !step.oracleFollows { break }
        }
        return mismatches
    }
}
