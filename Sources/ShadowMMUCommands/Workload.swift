import ArgumentParser
import Foundation
import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ScenarioVisualization

/// `shadowmmu workload NAME` and `shadowmmu workload --trace FILE`.
struct WorkloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workload",
        abstract: "Run a guest kernel's realistic behaviour (or a real program's memory trace) under an MMU and summarise what it cost.",
        discussion: """
            A small guest kernel boots (direct map with huge pages, kernel image with global \
            pages, paging on) and then acts like an operating system: processes with demand \
            paging and context switches, fork with copy-on-write, exec, munmap with TLB \
            invalidation, huge pages, idle and busy periods. It reacts to each access's result \
            (a page fault runs its fault handler) and checks every result against the tables it \
            wrote. Everything it does is a scenario: --emit writes it (each access followed by \
            an 'expect' line), so 'shadowmmu run' and 'shadowmmu check' replay it.

            Workloads (--size counts): boot (memory-map pages), processes (processes), fork \
            (forks), munmap (pages per round), hugepages (huge pages), mix (processes). \
            Sizes: small, medium, large, or a number.

            --trace FILE replays a trace written by 'valgrind --tool=lackey --trace-mem=yes' \
            inside one guest process with demand paging (see docs/workloads.md).

            --check replays the recorded scenario (its expectations must hold) and runs the \
            differential checker on it under every MMU configuration.

            Exit status: 0 when the run (and --check) passed, 1 when the machine broke the \
            architecture or a check failed, 2 for unusable input.

            Examples:
              shadowmmu workload fork --mmu shadow --mode pae
              shadowmmu workload mix --mmu tdp-ept --json
              shadowmmu workload processes --mode pae --size 20 --roots both
              shadowmmu workload processes --mode 5-level --emit /tmp/processes.scenario
              shadowmmu workload --trace examples/traces/walk.lackey --mmu shadow
            """
    )

    @Argument(help: "The workload: \(WorkloadName.allCases.map(\.rawValue).joined(separator: ", ")) (none with --trace).")
    var name: String?

    @Option(help: "A memory trace to replay (valgrind --tool=lackey --trace-mem=yes output) instead of a named workload.")
    var trace: String?

    @Option(help: ArgumentHelp(
        "The MMU: the words of a scenario's 'mmu' line (e.g. 'shadow host=pae32 roots=special', 'tdp format=ept levels=5') or a short name (\(MMUName.names)).",
        valueName: "words"))
    var mmu = "shadow"

    @Option(help: "Guest paging mode: \(GuestPagingLayout.Mode.allCases.map(\.rawValue).joined(separator: ", ")).")
    var mode = "4-level"

    @Option(parsing: .unconditional, help: "small, medium, large, or a count (of what, the workload says) up to \(Self.sizeLimits).")
    var size = "small"

    @Option(
        help: ArgumentHelp(
            "Run the workload once under each of these root designs (local, special, local-eager, both or all; the rest of --mmu kept) and print them side by side, with exits and time per context switch.",
            valueName: "design"))
    var roots: RootsOption.Choice?

    @Option(parsing: .unconditional, help: "Seed of the workload's random choices. (default: 1)", transform: NumericOption.parser(0...UInt64.max))
    var seed: UInt64 = 1

    /// "boot 200000, processes 3000, …, hugepages 20000 (32-bit 119, pae 239), …".
    static var sizeLimits: String {
        WorkloadName.allCases.map { name in
            let limits = GuestPagingLayout.Mode.allCases.map { ($0, name.maximumCount(in: $0)) }
            let widest = limits.map(\.1).max() ?? 0
            let smaller = limits.filter { $0.1 < widest }.map { "\($0.0) \($0.1)" }
            return "\(name) \(widest)" + (smaller.isEmpty ? "" : " (\(smaller.joined(separator: ", ")))")
        }.joined(separator: ", ")
    }

    @Option(help: "Write the run as a scenario to this file.")
    var emit: String?

    @Flag(help: "Replay the recorded scenario: its expectations must hold, and every MMU configuration must match the reference on it.")
    var check = false

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @OptionGroup var fix: FixOption

    @OptionGroup var output: OutputOptions

    func validate() throws {
        switch (name, trace) {
        case (nil, nil):
            throw ValidationError("expected a workload name (\(WorkloadName.allCases.map(\.rawValue).joined(separator: ", "))) or --trace FILE")
        case (_?, _?):
            throw ValidationError("expected a workload name or --trace FILE, not both: drop one of them")
        case (let name?, nil) where WorkloadName(rawValue: name) == nil:
            throw ValidationError("unknown workload '\(name)': choose one of \(WorkloadName.allCases.map(\.rawValue).joined(separator: ", "))")
        default: break
        }
        let configuration = try MMUOption.configuration(mmu)
        guard let mode = GuestPagingLayout.Mode(name: mode) else {
            throw ValidationError("unknown --mode '\(mode)': choose one of \(GuestPagingLayout.Mode.allCases.map(\.rawValue).joined(separator: ", ")) (a workload's kernel turns paging on)")
        }
        guard let workloadSize = WorkloadSize(argument: size) else {
            throw ValidationError("unknown --size '\(size)': use small, medium, large, or a count of 1 or more (at most \(Self.sizeLimits))")
        }
        let options = WorkloadOptions(mode: mode, mmu: configuration, size: workloadSize)
        if let problem = name.flatMap(WorkloadName.init(rawValue:)).map({ Workload.problem($0, options: options) }) ?? options.problem {
            throw ValidationError(problem)
        }
        if roots != nil {
            if configuration == .native { throw ValidationError("--roots compares hypervisor designs: give a hypervisor --mmu (shadow or tdp), not native") }
            if emit != nil || check { throw ValidationError("--roots runs the workload several times: drop --emit and --check, or --roots") }
        }
    }

    func run() throws {
        if let roots { return try compareRoots(roots.designs) }
        let stdout = OutputStream.standardOutput
        if let emit {
            do { try OutputPath(path: emit, option: "--emit").checkFile() } catch {
                OutputStream.standardError.writeLine(error.description)
                throw ExitCode(2)
            }
        }
        let progress = output.progressLine()
        let options = WorkloadOptions(
            mode: GuestPagingLayout.Mode(name: mode)!, mmu: try MMUOption.configuration(mmu),
            size: WorkloadSize(argument: size)!, seed: seed, record: emit != nil || check, fixes: fix.fixes)
        let log: ((String) -> Void)? = output.verbose ? { progress.message($0) } : nil

        let result = try runOnce(options, progress: progress, label: "", log: log)
        progress.clear()

        if let failure = result.failure, failure.kind == .unusable {
            OutputStream.standardError.writeLine("shadowmmu workload: \(failure.message)")
            throw ExitCode(2)
        }
        if let emit, let text = result.scenario {
            do {
                try ScenarioFile.save(text, to: emit, option: "--emit")
            } catch {
                OutputStream.standardError.writeLine(error.description)
                throw ExitCode(2)
            }
        }
        var checkLines: [(String, Bool)] = []
        if check, result.failure == nil, let text = result.scenario {
            checkLines = try replayAndCheck(text, fileName: emit ?? "workload.scenario", progress: progress)
        }

        if json {
            var summary = result.summaryJSON
            if check, case .object(var fields) = summary {
                fields.append(("check", .array(checkLines.map { .object([("what", .string($0.0)), ("passed", .bool($0.1))]) })))
                summary = .object(fields)
            }
            stdout.writeLine(summary.encoded)
        } else {
            stdout.writeLine(result.summaryText)
            if let emit, result.scenario != nil, !output.quiet { stdout.writeLine("scenario written to \(emit) (\(result.commands) commands)") }
            for (line, passed) in checkLines where !output.quiet || !passed { stdout.writeLine("\(passed ? "pass" : "FAIL")  \(line)") }
        }
        stdout.flush()
        if let failure = result.failure {
            OutputStream.standardError.writeLine("shadowmmu workload: \(failure) (replay the scenario written with --emit to see the line, or run with --verbose)")
            throw ExitCode(1)
        }
        if checkLines.contains(where: { !$0.1 }) { throw ExitCode(1) }
    }

    /// Parses the recorded scenario, replays it (every `expect` must hold) and
    /// runs the differential checker on it.
    func replayAndCheck(_ text: String, fileName: String, progress: ProgressLine) throws -> [(String, Bool)] {
        let scenario: Scenario
        do {
            scenario = try ScenarioParser.parse(text, fileName: fileName)
        } catch {
            return [("the recorded scenario parses: \(error)", false)]
        }
        var lines: [(String, Bool)] = []
        progress.update("check: replaying", done: 0, total: 1)
        var failures: [ExpectationFailure] = []
        let runner = try ScenarioRunner(scenario, fixes: fix.fixes)
        runner.run(expectationFailed: { failures.append($0) })
        lines.append(("replay under \(scenario.mmu.scenarioText): \(failures.isEmpty ? "every expectation holds" : failures.prefix(3).map(\.description).joined(separator: "; "))", failures.isEmpty))
        progress.update("check: every configuration", done: 0, total: 1)
        for report in try DifferentialChecker.check(scenario, fixes: fix.fixes) {
            let detail = (report.mismatches + report.auditFailures).prefix(3).joined(separator: "; ")
            lines.append(("\(report.configuration.scenarioText) matches the reference" + (detail.isEmpty ? "" : ": " + detail), report.passed))
        }
        progress.clear()
        return lines
    }

    /// The named workload, or the trace's replay, once under `options`; an
    /// unusable trace is exit status 2 with its message.
    func runOnce(_ options: WorkloadOptions, progress: ProgressLine, label: String, log: ((String) -> Void)?) throws -> WorkloadRun {
        guard let trace else {
            let name = WorkloadName(rawValue: name!)!
            return Workload.run(name, options: options, progress: { progress.update("workload \(name)\(label)", done: $0, total: $1) }, log: log)
        }
        do {
            return try TraceReplay.replayFile(trace, options: options, progress: { progress.update("trace \(trace)\(label)", done: $0, total: $1) }, log: log)
        } catch {
            progress.clear()
            OutputStream.standardError.writeLine("\(error.description)")
            throw ExitCode(2)
        }
    }

    /// `--roots`: the same workload (same seed, same guest actions) once per
    /// root design, and what each cost, side by side.
    func compareRoots(_ designs: [RootsDesign]) throws {
        let stdout = OutputStream.standardOutput
        let progress = output.progressLine()
        let base = try MMUOption.configuration(mmu)
        var runs: [(design: RootsDesign, run: WorkloadRun, seconds: Double)] = []
        for design in designs {
            let options = WorkloadOptions(
                mode: GuestPagingLayout.Mode(name: mode)!, mmu: base.with(roots: design),
                size: WorkloadSize(argument: size)!, seed: seed, record: false, fixes: fix.fixes)
            let clock = ContinuousClock()
            let start = clock.now
            let result = try runOnce(options, progress: progress, label: " roots=\(design)", log: nil)
            let elapsed = clock.now - start
            runs.append((design, result, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18))
        }
        progress.clear()
        if let failure = runs.lazy.compactMap(\.run.failure).first(where: { $0.kind == .unusable }) {
            OutputStream.standardError.writeLine("shadowmmu workload: \(failure.message)")
            throw ExitCode(2)
        }
        let comparison = RootDesignComparison(runs: runs)
        if json {
            stdout.writeLine(comparison.json.encoded)
        } else {
            stdout.writeLine(comparison.text)
        }
        stdout.flush()
        for (design, run, _) in runs {
            if let failure = run.failure {
                OutputStream.standardError.writeLine("shadowmmu workload: under roots=\(design): \(failure)")
            }
        }
        if runs.contains(where: { $0.run.failure != nil }) { throw ExitCode(1) }
    }
}

/// A workload run once per root design: the guest does the same thing each
/// time (same seed), so every difference is the hypervisor's.
struct RootDesignComparison {
    var runs: [(design: RootsDesign, run: WorkloadRun, seconds: Double)]

    /// (heading, value per run) for each row of the table.
    var rows: [(String, [String])] {
        func counter(_ counter: Counter) -> [String] { runs.map { String($0.run.statistics[counter]) } }
        func perSwitch(_ value: (WorkloadRun, Double) -> Double, format: String) -> [String] {
            runs.map { run in
                let switches = run.run.kernel.contextSwitches
                return switches == 0 ? "-" : String(format: format, value(run.run, run.seconds) / Double(switches))
            }
        }
        return [
            ("exits", counter(.exits)),
            ("shadow faults fixed", counter(.shadowFaultsFixed)),
            ("roots loaded", counter(.rootsLoaded)),
            ("cached-root hits", counter(.cachedRootHits)),
            ("local roots built", counter(.localRootsCreated)),
            ("special roots built", counter(.specialRootsCreated)),
            ("roots freed", counter(.rootsFreed)),
            ("shadow pages now", counter(.shadowPages)),
            ("shadow pages created", counter(.shadowPagesCreated)),
            ("host table KiB", runs.map { String($0.run.statistics[.hostTableFrames] * 4) }),
            ("context switches", runs.map { String($0.run.kernel.contextSwitches) }),
            ("exits per switch", perSwitch({ run, _ in Double(run.statistics[.exits]) }, format: "%.2f")),
            ("run time (s)", runs.map { String(format: "%.3f", $0.seconds) }),
            ("µs per switch", perSwitch({ _, seconds in seconds * 1e6 }, format: "%.1f")),
        ]
    }

    var text: String {
        guard let first = runs.first?.run else { return "" }
        let mmu = first.options.mmu.with(roots: .local).scenarioText.dropFirst("mmu ".count)
        var lines = [
            "\(first.title): \(first.options.mode) guest, \(first.memorySize >> 20) MiB, under \(mmu) (size \(first.options.size), seed \(first.options.seed)), by root design:",
        ]
        let headings = [""] + runs.map { "roots=\($0.design)" }
        let table = [headings] + rows.map { [$0.0] + $0.1 }
        let widths = (0..<headings.count).map { column in table.map { $0[column].count }.max() ?? 0 }
        for row in table {
            let cells = row.enumerated().map { column, cell in
                column == 0 ? cell.padding(toLength: widths[0], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[column] - cell.count) + cell
            }
            lines.append("  " + cells.joined(separator: "  "))
        }
        lines.append("(run time is the whole run's, divided by its context switches: the model's time, not a real hypervisor's)")
        for (design, run, _) in runs where run.failure != nil { lines.append("roots=\(design): FAILED: \(run.failure!)") }
        return lines.joined(separator: "\n")
    }

    var json: JSONValue {
        .object([
            ("designs", .array(runs.map { design, run, seconds in
                guard case .object(var fields) = run.summaryJSON else { return run.summaryJSON }
                fields.insert(("roots", .string(design.rawValue)), at: 0)
                fields.append(("microseconds", .number(Int(seconds * 1e6))))
                return .object(fields)
            })),
        ])
    }
}
