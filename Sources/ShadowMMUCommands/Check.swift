import Foundation
import ArgumentParser
import GuestWorkloads
import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ScenarioVisualization

/// `shadowmmu check FILE…`: the differential checker.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run scenarios under every MMU configuration that can run them and compare each with the reference.",
        discussion: """
            The reference is 'mmu native' (the architectural walker); each file's own 'mmu' line \
            is ignored. Every printed result must match the reference exactly (dirty logs may list \
            extra frames, never miss one), and the hypervisor's audits must hold after every command. \
            A configuration that differs is re-run with every KVM deviation fixed: if the difference \
            disappears it is reported as 'deviation NAME' (known KVM behaviour, docs/deviations.md), \
            else as FAIL. Exit status 0 when no configuration fails on any file (deviations allowed \
            unless --strict), 1 when one does, 2 for unusable input.

            Examples:
              shadowmmu check examples/pae.scenario
              shadowmmu check examples/*.scenario
            """
    )

    @Argument(help: "Scenario files (.scenario).")
    var files: [String]

    @OptionGroup var regression: RegressionOption

    @OptionGroup var fix: FixOption

    @OptionGroup var roots: RootsOption

    @OptionGroup var strict: StrictOption

    @Flag(help: "Print JSON Lines: one object per file and configuration, then a summary object (docs/commands.md#json-output).")
    var json = false

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("expected at least one scenario file, e.g. shadowmmu check examples/*.scenario") }
    }

    func run() throws {
        let stdout = OutputStream.standardOutput
        let progress = output.progressLine()
        var tally = VerdictTally()
        for (index, file) in files.enumerated() {
            progress.update("check \(file)", done: index, total: files.count)
            let reports: [DifferentialChecker.Report]
            do {
                reports = try DifferentialChecker.check(
                    try ScenarioFile.load(file), under: roots.configurations, regressions: regression.regressions, fixes: fix.fixes)
            } catch {
                progress.clear()
                stdout.flush()
                OutputStream.standardError.writeLine(error.description)
                throw ExitCode(2)
            }
            for report in reports {
                tally.add([report.verdict], at: file)
                if json {
                    let fields = VerdictJSON.report(
                        report, file: file, regressions: regression.regressions, fixes: fix.fixes, strict: strict.strict)
                    stdout.writeLine(JSONValue.object(fields).encoded)
                    continue
                }
                guard !output.quiet || report.verdict != .pass else { continue }
                stdout.writeLine("\(report.verdict)  \(file)  \(report.configuration)")
                for line in report.mismatches + report.auditFailures { stdout.writeLine("      \(line)") }
                if report.isFailure(strict: strict.strict) {
                    for line in Reproduction.lines(
                        file: file, configuration: report.configuration, line: report.firstMismatchLine,
                        regressions: regression.regressions, fixes: fix.fixes) { stdout.writeLine("      \(line)") }
                }
            }
        }
        progress.clear()
        if json {
            stdout.writeLine(JSONValue.object([("summary", tally.json)]).encoded)
        } else if !output.quiet || tally.passes < tally.total {
            stdout.writeLine(tally.summary)
        }
        stdout.flush()
        if tally.failures > 0 || (strict.strict && tally.deviationCount > 0) { throw ExitCode(1) }
    }
}

/// `--strict`: count a deviation of KVM's as a failure.
struct StrictOption: ParsableArguments {
    @Flag(help: "Count a KVM deviation (a difference that --fix removes) as a failure, for the exit status too.")
    var strict = false
}
