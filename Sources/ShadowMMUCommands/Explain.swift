import ArgumentParser
import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ScenarioVisualization

/// `shadowmmu explain FILE --line N [--json]`.
struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explain, step by step, how the access on one line reaches its result.",
        discussion: """
            Runs the scenario up to the given line, then performs the access on that line and \
            prints what the CPU did: the TLB look-up, each paging-structure entry it read (its \
            address, raw value, decoded flags and what the walk decided), the rights along the \
            path, the permission check, the accessed/dirty flags written, and the result with \
            its error code.

            Examples:
              shadowmmu explain examples/4-level.scenario --line 30
              shadowmmu explain examples/pae.scenario --line 40 --json
            """
    )

    @Argument(help: "The scenario file (.scenario).")
    var file: String

    @Option(parsing: .unconditional, help: "The line holding the read, write or fetch to explain.", transform: NumericOption.parser(1...lineLimit))
    var line: Int

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @OptionGroup var mmu: MMUOption

    @OptionGroup var regression: RegressionOption

    @OptionGroup var fix: FixOption

    func run() throws {
        let stdout = OutputStream.standardOutput
        do {
            let runner = try ScenarioRunner(
                mmu.applied(to: try ScenarioFile.load(file)), regressions: regression.regressions, fixes: fix.fixes)
            let explanation = try runner.explain(line: line)
            if json {
                stdout.writeLine(explanation.json(line: line).encoded)
            } else {
                stdout.writeLine(explanation.text(line: line))
            }
            stdout.flush()
        } catch {
            OutputStream.standardError.writeLine(error.description)
            throw ExitCode(2)
        }
    }
}
