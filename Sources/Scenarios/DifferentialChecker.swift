import ShadowMMU

/// Runs one scenario under the reference (`mmu native`) and under other MMU
/// configurations, and compares what the guest can see: every access's
/// result (faults with their error codes, values read), every `peek` of
/// memory (so accessed/dirty flags in the guest's tables too), every rejected
/// register write. Dirty logs may over-report (a frame listed that was not
/// written), never under-report. With auditing on, the hypervisor's
/// invariants are checked after every command.
public enum DifferentialChecker {
    public struct Report: Sendable {
        public var configuration: MMUConfiguration
        /// "line N: reference …; this configuration …", in order.
        public var mismatches: [String]
        public var auditFailures: [String]
        public var passed: Bool { mismatches.isEmpty && auditFailures.isEmpty }
    }

    /// The configurations a scenario can be checked under today.
    public static let configurations: [MMUConfiguration] = [.shadow(host: .bits64), .shadow(host: .pae32)]

    /// Checks `scenario` under each of `configurations` that can run it.
    public static func check(
        _ scenario: Scenario, under configurations: [MMUConfiguration] = configurations, audit: AuditLevel? = .full
    ) throws(ScenarioError) -> [Report] {
        var reference = scenario
        reference.mmu = .native
        let expected = try observations(of: reference, audit: nil).observations
        var reports: [Report] = []
        for configuration in configurations {
            var variant = scenario
            variant.mmu = configuration
            guard let run = try? observations(of: variant, audit: audit) else { continue }  // this configuration cannot run it
            reports.append(Report(
                configuration: configuration, mismatches: compare(expected, run.observations), auditFailures: run.auditFailures))
        }
        return reports
    }

    static func observations(of scenario: Scenario, audit: AuditLevel?) throws(ScenarioError) -> (observations: [Observation], auditFailures: [String]) {
        let runner = try ScenarioRunner(scenario)
        let shadow = runner.machine as? ShadowMachine
        shadow?.auditLevel = audit
        var seen: [Observation] = []
        runner.run(observe: { if $0.isPrinted { seen.append($0) } })
        return (seen, shadow?.auditFailures ?? [])
    }

    static func compare(_ expected: [Observation], _ actual: [Observation]) -> [String] {
        var mismatches: [String] = []
        for (reference, other) in zip(expected, actual) {
            if case .dirtyLog(let wanted) = reference.event, case .dirtyLog(let got) = other.event, reference.line == other.line {
                let missing = Set(wanted).subtracting(got)
                if !missing.isEmpty {
                    mismatches.append("line \(reference.line): the dirty log misses written frames \(missing.sorted().map(\.hex))")
                }
                continue
            }
            if reference.json != other.json {
                mismatches.append("line \(reference.line): reference \(reference.json); this configuration \(other.json)")
            }
        }
        if expected.count != actual.count {
            mismatches.append("the reference printed \(expected.count) lines, this configuration \(actual.count)")
        }
        return mismatches
    }
}
