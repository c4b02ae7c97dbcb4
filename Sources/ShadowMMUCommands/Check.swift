import Foundation
import ArgumentParser
import GuestWorkloads
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
            Exit status 0 when every configuration passes on every file, 1 when one does not, 2 for \
            unusable input.

            Examples:
              shadowmmu check examples/pae.scenario
              shadowmmu check examples/*.scenario
            """
    )

    @Argument(help: "Scenario files (.scenario).")
    var files: [String]

    @OptionGroup var regression: RegressionOption

    @OptionGroup var fix: FixOption

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("expected at least one scenario file, e.g. shadowmmu check examples/*.scenario") }
    }

    func run() throws {
        let stdout = OutputStream.standardOutput
        let progress = output.progressLine()
        var failed = false
        for (index, file) in files.enumerated() {
            progress.update("check \(file)", done: index, total: files.count)
            let reports: [DifferentialChecker.Report]
            do {
                reports = try DifferentialChecker.check(try ScenarioFile.load(file), regressions: regression.regressions, fixes: fix.fixes)
            } catch {
                progress.clear()
                stdout.flush()
                OutputStream.standardError.writeLine(error.description)
                throw ExitCode(2)
            }
            for report in reports where !output.quiet || !report.passed {
                stdout.writeLine("\(report.passed ? "pass" : "FAIL")  \(file)  \(report.configuration)")
                for line in report.mismatches + report.auditFailures { stdout.writeLine("      \(line)") }
                failed = failed || !report.passed
            }
        }
        progress.clear()
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
            reference line for line. A failing guest is written, whole and minimized, to the \
            --save-failures folder (default ./fuzz-failures) so that it can be replayed with \
            'shadowmmu check'.

            Examples:
              shadowmmu fuzz --count 200
              shadowmmu fuzz --mode pae --seed 5000 --count 1000 --length 400 --save-failures /tmp/fuzz
            """
    )

    @Option(help: "Guest paging mode (nonpaging, 32-bit, 32-bit-pse, pae, 4-level, 5-level), or an L1 hypervisor's nested paging for nested guests (npt-32-bit, npt-pae, npt-4-level, npt-5-level, ept-4-level, ept-5-level); every one when omitted.")
    var mode: String?

    @Option(help: "Guests per mode.")
    var count: UInt64 = 100

    @Option(help: "Seed of the first guest; guest k uses seed+k.")
    var seed: UInt64 = 0

    @Option(help: "Random operations per guest.")
    var length: Int = 200

    @OptionGroup var fix: FixOption

    @Flag(help: "Run the guests the host's KVM can run on /dev/kvm too, and compare architecture, model and KVM (as 'conform' does).")
    var kvm = false

    @Option(help: "Folder for failing guests: each is written as found and minimized.")
    var saveFailures = "fuzz-failures"

    @Option(help: "Folder to write every generated guest to (to study or replay them).")
    var saveAll: String?

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let mode, !GuestFamily.all.contains(where: { $0.description == mode }) {
            throw ValidationError("expected a mode among \(GuestFamily.all.map(\.description).joined(separator: ", ")), found '\(mode)'")
        }
        guard count > 0, length > 0 else { throw ValidationError("--count and --length must be positive, e.g. --count 100 --length 200") }
    }

    func run() throws {
        if kvm { return try runOnKVM() }
        let stdout = OutputStream.standardOutput
        let progress = output.progressLine()
        let families = GuestFamily.all.filter { mode == nil || $0.description == mode }
        var failures = 0
        for mode in families {
            var passed = 0
            for seed in seed..<(seed + count) {
                progress.update("fuzz \(mode)", done: Int(seed - self.seed), total: Int(count))
                let text = mode.generate(seed: seed, length: length)
                let name = "fuzz-\(mode)-\(seed).scenario"
                if let folder = saveAll { try ScenarioFile.save(text, to: folder + "/" + name) }
                let reports = try DifferentialChecker.check(try ScenarioParser.parse(text, fileName: name), fixes: fix.fixes)
                let failed = reports.filter { !$0.passed }
                if failed.isEmpty {
                    passed += 1
                    if output.verbose { progress.message("pass \(name)") }
                    continue
                }
                failures += 1
                for report in failed {
                    stdout.writeLine("FAIL \(name) under \(report.configuration)")
                    for line in (report.mismatches + report.auditFailures).prefix(5) { stdout.writeLine("      \(line)") }
                }
                let minimized = ScenarioMinimizer.minimize(text) { candidate in
                    guard let scenario = try? ScenarioParser.parse(candidate, fileName: name),
                          let reports = try? DifferentialChecker.check(scenario, fixes: fix.fixes) else { return false }
                    return reports.contains { !$0.passed }
                }
                let path = saveFailures + "/" + name
                let minimizedPath = saveFailures + "/" + name.replacingOccurrences(of: ".scenario", with: "-min.scenario")
                try ScenarioFile.save(text, to: path)
                try ScenarioFile.save(minimized + "\n", to: minimizedPath)
                stdout.writeLine("      written to \(path), minimized (\(minimized.split(separator: "\n").count) lines) to \(minimizedPath)")
            }
            progress.clear()
            if !output.quiet || passed < count { stdout.writeLine("\(mode): \(passed)/\(count) guests match the reference") }
            stdout.flush()
        }
        if failures > 0 { throw ExitCode(1) }
    }
}
