import ArgumentParser
import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ScenarioVisualization

/// `shadowmmu report FILE -o report.html [--at LINE]…`.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one self-contained HTML page about a scenario run: outcomes, exits and faults, counters, table pictures.",
        discussion: """
            The page lists the scenario with each command's outcome (ok, fault with its error \
            code, #GP) and what it cost the hypervisor (exits, faults fixed, guest page faults, \
            other counters), charts exits and faults per command and the counters over time, and \
            draws the guest's and the hypervisor's page tables after each --at LINE (default: \
            after the last line). It needs no network, scripts or fonts: CSS and SVG are inline.

            Examples:
              shadowmmu report examples/shadow-pae.scenario -o report.html
              shadowmmu report examples/shadow-pae.scenario --at 31 --at 44 -o report.html
            """
    )

    @Argument(help: "The scenario file (.scenario).")
    var file: String

    @Option(name: .shortAndLong, help: "The HTML file to write.")
    var output: String

    @Option(
        parsing: .unconditionalSingleValue, help: "Draw the tables after this line has run (repeatable; default: after the last line).",
        transform: NumericOption.parser(0...lineLimit))
    var at: [Int] = []

    @Option(
        parsing: .unconditional, help: "List at most this many present entries per table in the pictures, 1 to \(maxEntriesLimit). (default: \(PageTableGraph.defaultMaxEntriesPerNode))",
        transform: NumericOption.parser(1...maxEntriesLimit))
    var maxEntries = PageTableGraph.defaultMaxEntriesPerNode

    @OptionGroup var mmu: MMUOption

    @OptionGroup var regression: RegressionOption

    @OptionGroup var fix: FixOption

    func run() throws {
        try checkOutput(output)
        let report: ScenarioReport
        do {
            let source = try ScenarioSource.load(file)
            report = try ScenarioReport.run(
                mmu.applied(to: source.scenario), source: source.text, pictureLines: at, maxEntriesPerNode: maxEntries,
                regressions: regression.regressions, fixes: fix.fixes)
        } catch {
            OutputStream.standardError.writeLine(error.description)
            throw ExitCode(2)
        }
        try writeOutput(report.html, to: output)
        let outcomes = report.outcomeCounts
        let stdout = OutputStream.standardOutput
        stdout.writeLine(
            "\(output): \(report.steps.count) commands (\(outcomes.ok) ok, \(outcomes.fault) faults, \(outcomes.gp) #GP), "
                + "\(report.pictures.count) table \(report.pictures.count == 1 ? "picture" : "pictures")")
        stdout.flush()
    }
}
