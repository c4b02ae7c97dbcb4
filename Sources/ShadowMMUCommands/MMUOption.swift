import KVMCatalogue
import ArgumentParser
import GuestWorkloads
import ScenarioLanguage
import ShadowMMU

/// `--mmu WORDS`: the MMU to run under, in the words of a scenario's `mmu`
/// line (`'shadow host=pae32'`, `'tdp format=npt levels=5 roots=special'`),
/// or one of the workload's short names (`shadow-pae32`, `tdp-ept5`, …).
/// On `run`, `explain`, `draw` and `report` it replaces the file's own `mmu`
/// line, so that a configuration `check` or `fuzz` names can be re-run as is.
struct MMUOption: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Run under this MMU instead of the file's 'mmu' line: the line's words (e.g. 'shadow host=pae32', 'tdp format=npt roots=special') or a short name (\(MMUName.names)).",
            valueName: "words"))
    var mmu: String?

    func validate() throws {
        if let mmu { _ = try Self.configuration(mmu) }
    }

    /// The configuration `--mmu` names, or nil when it is not given.
    var configuration: MMUConfiguration? {
        mmu.flatMap { try? Self.configuration($0) }
    }

    /// `scenario` with its `mmu` line replaced by `--mmu`'s, when given.
    func applied(to scenario: Scenario) -> Scenario {
        guard let configuration else { return scenario }
        var scenario = scenario
        scenario.mmu = configuration
        return scenario
    }

    /// Reads `words`: a short name, or the words of an `mmu` line.
    static func configuration(_ words: String) throws(ValidationError) -> MMUConfiguration {
        if let named = MMUName.configuration(named: words) { return named }
        do {
            return try ScenarioParser.parseMMU(words)
        } catch {
            throw ValidationError(
                "unusable --mmu '\(words)' at column \(error.column): \(error.message); use the words of a scenario's 'mmu' line or one of \(MMUName.names)")
        }
    }
}

/// The commands that re-run one configuration's run of a scenario file and
/// explain its first difference: what `check` and `fuzz` print under a FAIL.
enum Reproduction {
    /// The `run` command, and the `explain` command of `line` when known.
    static func commands(
        file: String, configuration: MMUConfiguration, line: Int?, regressions: Set<Regression>, fixes: Set<Deviation>
    ) -> [String] {
        var options = ["--mmu", shellQuoted(String(configuration.scenarioText.dropFirst("mmu ".count)))]
        options += regressions.map(\.rawValue).sorted().flatMap { ["--regress", $0] }
        options += Deviation.allCases.filter(fixes.contains).flatMap { ["--fix", $0.rawValue] }
        let common = ([shellQuoted(file)] + options).joined(separator: " ")
        return ["shadowmmu run \(common)"] + (line.map { ["shadowmmu explain \(common) --line \($0)"] } ?? [])
    }

    /// The commands as `check` and `fuzz` print them: `reproduce: …`, `explain:   …`.
    static func lines(
        file: String, configuration: MMUConfiguration, line: Int?, regressions: Set<Regression>, fixes: Set<Deviation>
    ) -> [String] {
        let commands = commands(file: file, configuration: configuration, line: line, regressions: regressions, fixes: fixes)
        return zip(["reproduce: ", "explain:   "], commands).map { $0 + $1 }
    }

    /// `text` as one word for a POSIX shell.
    static func shellQuoted(_ text: String) -> String {
        let plain = text.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:+,".contains($0) }
        return plain && !text.isEmpty ? text : "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
