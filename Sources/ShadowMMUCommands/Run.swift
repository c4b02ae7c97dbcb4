import ArgumentParser
import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ScenarioVisualization

/// `shadowmmu run FILE [--stats] [--dump-shadow]`.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a scenario and print one JSON line per observable command.",
        discussion: """
            Exit status: 0 when every 'expect' line held, 1 when one failed (reported on \
            standard error with its file and line; the run continues), 2 when the file \
            cannot be used (its location and what was expected are printed; nothing runs).

            Examples:
              shadowmmu run examples/4-level.scenario
              shadowmmu run examples/32-bit.scenario --stats
              shadowmmu run examples/pae.scenario --dump-shadow
            """
    )

    @Argument(help: "The scenario file (.scenario).")
    var file: String

    @Flag(help: "Finish with one line {\"stats\":{…}} holding the MMU's counters.")
    var stats = false

    @Flag(help: "Finish with one line per vCPU describing the hypervisor's current root ({\"shadow\":…}).")
    var dumpShadow = false

    @Flag(help: "Finish with each vCPU's current root as an indented tree, for reading (shared pages printed once).")
    var shadowTree = false

    @OptionGroup var mmu: MMUOption

    @OptionGroup var regression: RegressionOption

    @OptionGroup var fix: FixOption

    func run() throws {
        let stdout = OutputStream.standardOutput
        let stderr = OutputStream.standardError
        let runner: ScenarioRunner
        do {
            runner = try ScenarioRunner(
                mmu.applied(to: try ScenarioFile.load(file)), regressions: regression.regressions, fixes: fix.fixes)
        } catch {
            stderr.writeLine(error.description)
            throw ExitCode(2)
        }
        var failures = 0
        runner.run(
            observe: { observation in
                if observation.isPrinted { stdout.writeLine(observation.json) }
            },
            expectationFailed: { failure in
                failures += 1
                stdout.flush()
                stderr.writeLine(failure.description)
            })
        if dumpShadow { runner.shadowDumpJSON.forEach(stdout.writeLine) }
        if shadowTree { runner.shadowTreeText.forEach(stdout.writeLine) }
        if stats { stdout.writeLine(runner.statisticsJSON) }
        stdout.flush()
        if failures > 0 { throw ExitCode(1) }
    }
}
