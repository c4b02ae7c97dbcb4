import ArgumentParser
import Scenarios

/// `shadowmmu check FILE`: the differential checker on one scenario.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a scenario under every MMU configuration that can run it and compare each with the reference.",
        discussion: """
            The reference is 'mmu native' (the architectural walker); the scenario's own 'mmu' line \
            is ignored. Every printed result must match the reference exactly (dirty logs may list \
            extra frames, never miss one), and the hypervisor's audits must hold after every command. \
            Exit status 0 when every configuration passes, 1 when one does not, 2 for unusable input.

            Examples:
              shadowmmu check examples/pae.scenario
              shadowmmu check examples/32-bit.scenario
            """
    )

    @Argument(help: "The scenario file (.scenario).")
    var file: String

    func run() throws {
        let stdout = OutputStream.standardOutput
        let reports: [DifferentialChecker.Report]
        do {
            reports = try DifferentialChecker.check(try ScenarioFile.load(file))
        } catch {
            OutputStream.standardError.writeLine(error.description)
            throw ExitCode(2)
        }
        var failed = false
        for report in reports {
            stdout.writeLine("\(report.passed ? "pass" : "FAIL")  \(report.configuration)")
            for line in report.mismatches + report.auditFailures { stdout.writeLine("      \(line)") }
            failed = failed || !report.passed
        }
        stdout.flush()
        if failed { throw ExitCode(1) }
    }
}

/// `shadowmmu fuzz`: random guests through the differential checker.
struct Fuzz: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate random guests in every paging mode and check each configuration against the reference.",
        discussion: """
            Each guest is a scenario in which every page-table change is followed by the \
            invalidation that makes the outcome unique, so every configuration must match the \
            reference line for line. A failing guest is written to the --save-failures folder so \
            that it can be replayed with 'shadowmmu check'.

            Examples:
              shadowmmu fuzz --seeds 200
              shadowmmu fuzz --mode pae --seeds 1000 --length 400 --save-failures /tmp/fuzz
            """
    )

    @Option(help: "Guest paging mode (nonpaging, 32-bit, 32-bit-pse, pae, 4-level, 5-level); every mode when omitted.")
    var mode: String?

    @Option(help: "Guests per mode.")
    var seeds: UInt64 = 100

    @Option(help: "First seed.")
    var firstSeed: UInt64 = 0

    @Option(help: "Random operations per guest.")
    var length: Int = 200

    @Option(help: "Folder to write failing guests to.")
    var saveFailures: String?

    @Option(help: "Folder to write every generated guest to (to study or replay them).")
    var saveAll: String?

    func validate() throws {
        if let mode, ScenarioGenerator.GuestMode(rawValue: mode) == nil {
            throw ValidationError("expected a mode among \(ScenarioGenerator.GuestMode.allCases.map(\.rawValue).joined(separator: ", ")), found '\(mode)'")
        }
        guard seeds > 0, length > 0 else { throw ValidationError("--seeds and --length must be positive") }
    }

    func run() throws {
        let stdout = OutputStream.standardOutput
        let modes = mode.flatMap(ScenarioGenerator.GuestMode.init(rawValue:)).map { [$0] } ?? ScenarioGenerator.GuestMode.allCases
        var failures = 0
        for mode in modes {
            var passed = 0
            for seed in firstSeed..<(firstSeed + seeds) {
                let text = ScenarioGenerator(mode: mode, seed: seed, length: length).generate()
                let name = "fuzz-\(mode)-\(seed).scenario"
                if let folder = saveAll { try ScenarioFile.save(text, to: folder + "/" + name) }
                let reports = try DifferentialChecker.check(try ScenarioParser.parse(text, fileName: name))
                let failed = reports.filter { !$0.passed }
                if failed.isEmpty {
                    passed += 1
                    continue
                }
                failures += 1
                for report in failed {
                    stdout.writeLine("FAIL \(name) under \(report.configuration)")
                    for line in (report.mismatches + report.auditFailures).prefix(5) { stdout.writeLine("      \(line)") }
                }
                if let folder = saveFailures { try ScenarioFile.save(text, to: folder + "/" + name) }
            }
            stdout.writeLine("\(mode): \(passed)/\(seeds) guests match the reference")
            stdout.flush()
        }
        if failures > 0 { throw ExitCode(1) }
    }
}
