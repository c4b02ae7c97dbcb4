import KVMCatalogue
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
              shadowmmu check examples/*.scenario --jobs 2
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

    @Option(
        parsing: .unconditional,
        help: "Files and configurations checked at once, 1 to 256 (default: this machine's cores); the output is the same as with --jobs 1, in the same order.",
        transform: NumericOption.parser(1...256))
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("expected at least one scenario file, e.g. shadowmmu check examples/*.scenario") }
    }

    /// One run to check: a file under one configuration, or a file that
    /// cannot be used (reported, when its turn comes, as exit status 2).
    enum FileRun: Sendable {
        case configuration(file: Int, Scenario, MMUConfiguration)
        case unusable(file: Int, ScenarioError)

        var file: Int {
            switch self {
            case .configuration(let file, _, _), .unusable(let file, _): file
            }
        }
    }

    /// Every file's runs, in the order of the files and the configurations:
    /// a file is read and parsed when the window reaches it.
    func fileRuns() -> some Sequence<FileRun> {
        let configurations = roots.configurations
        return files.indices.lazy.flatMap { index -> [FileRun] in
            do throws(ScenarioError) {
                let scenario = try ScenarioFile.load(files[index])
                try DifferentialChecker.requireReference(scenario)
                return configurations.map { .configuration(file: index, scenario, $0) }
            } catch {
                return [.unusable(file: index, error)]
            }
        }
    }

    func run() throws {
        let stdout = OutputStream.standardOutput
        let progress = output.progressLine()
        var tally = VerdictTally()
        let (regressions, fixes) = (regression.regressions, fix.fixes)
        try ConcurrentWindow(jobs: jobs).run(
            fileRuns(),
            announce: { run in progress.update("check \(files[run.file])", done: run.file, total: files.count) },
            perform: { run -> DifferentialChecker.Report? in
                guard case .configuration(_, let scenario, let configuration) = run else { return nil }
                return DifferentialChecker.check(scenario, under: configuration, regressions: regressions, fixes: fixes)
            }
        ) { run, report in
            if case .unusable(_, let error) = run {
                progress.clear()
                stdout.flush()
                OutputStream.standardError.writeLine(error.description)
                throw ExitCode(2)
            }
            guard let report else { return .proceed }  // the configuration cannot run this file
            printReport(report, of: files[run.file], into: &tally, on: stdout)
            return .proceed
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

    /// Counts one file's run under one configuration and prints it.
    func printReport(_ report: DifferentialChecker.Report, of file: String, into tally: inout VerdictTally, on stdout: OutputStream) {
        tally.add([report.verdict], at: file)
        if json {
            let fields = VerdictJSON.report(report, file: file, regressions: regression.regressions, fixes: fix.fixes, strict: strict.strict)
            stdout.writeLine(JSONValue.object(fields).encoded)
            return
        }
        guard !output.quiet || report.verdict != .pass else { return }
        stdout.writeLine("\(report.verdict)  \(file)  \(report.configuration)")
        for line in report.mismatches + report.auditFailures { stdout.writeLine("      \(line)") }
        if report.isFailure(strict: strict.strict) {
            for line in Reproduction.lines(
                file: file, configuration: report.configuration, line: report.firstMismatchLine,
                regressions: regression.regressions, fixes: fix.fixes) { stdout.writeLine("      \(line)") }
        }
    }
}

/// `--strict`: count a deviation of KVM's as a failure.
struct StrictOption: ParsableArguments {
    @Flag(help: "Count a KVM deviation (a difference that --fix removes) as a failure, for the exit status too.")
    var strict = false
}
