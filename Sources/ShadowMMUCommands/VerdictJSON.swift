import KVMCatalogue
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ShadowMMU

/// The JSON Lines that `check --json`, `fuzz --json` and `matrix --json`
/// print for CI (docs/commands.md#json-output): one object per result, then
/// one `{"summary":…}` object.
enum VerdictJSON {
    /// `"pass"`, `"deviation"` or `"fail"`, and the deviations' names.
    static func fields(_ verdict: DifferentialChecker.Verdict) -> [(String, JSONValue)] {
        switch verdict {
        case .pass: [("verdict", .string("pass")), ("deviations", .array([]))]
        case .deviation(let set): [("verdict", .string("deviation")), ("deviations", names(set))]
        case .fail: [("verdict", .string("fail")), ("deviations", .array([]))]
        }
    }

    static func names(_ deviations: Set<Deviation>) -> JSONValue {
        .array(Deviation.allCases.filter(deviations.contains).map { .string($0.rawValue) })
    }

    /// One configuration's run of a scenario.
    static func report(
        _ report: DifferentialChecker.Report, file: String?, regressions: Set<Regression>, fixes: Set<Deviation>, strict: Bool
    ) -> [(String, JSONValue)] {
        var fields: [(String, JSONValue)] = []
        if let file { fields.append(("file", .string(file))) }
        fields.append(("mmu", .string(report.configuration.scenarioText)))
        fields += Self.fields(report.verdict)
        fields.append(("first_mismatch_line", report.firstMismatchLine.map { .number($0) } ?? .null))
        fields.append(("mismatches", .array(report.mismatches.map { .string($0) })))
        fields.append(("audit_failures", .array(report.auditFailures.map { .string($0) })))
        if let file, report.isFailure(strict: strict) {
            let commands = Reproduction.commands(
                file: file, configuration: report.configuration, line: report.firstMismatchLine, regressions: regressions, fixes: fixes)
            fields.append(("reproduce", .array(commands.map { .string($0) })))
        }
        return fields
    }
}

extension VerdictTally {
    /// `{"pass":N,"deviation":N,"fail":N,"deviations":{"NAME":k,…}}`.
    var json: JSONValue {
        let names = Deviation.allCases.map(\.rawValue).filter { deviations[$0] != nil }
            + deviations.keys.filter { Deviation(rawValue: $0) == nil }.sorted()
        return .object([
            ("pass", .number(passes)), ("deviation", .number(deviationCount)), ("fail", .number(failures)),
            ("deviations", .object(names.map { ($0, .number(deviations[$0]!)) })),
        ])
    }
}
