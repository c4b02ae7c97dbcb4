import ArgumentParser
import Conformance
import Foundation
import RealKVM
import ScenarioLanguage
import ScenarioRuntime

/// `shadowmmu conform FILE…`: the three witnesses — the architecture, the
/// model, and the host's real KVM.
struct Conform: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run scenarios inside real VMs on the host's /dev/kvm and compare every result three ways: the architecture, the model, real KVM.",
        discussion: """
            Each scenario's own 'mmu' line is ignored: the reference is 'mmu native', the model is the \
            configuration that corresponds to the host (shadow paging when its KVM runs without TDP), \
            and the third witness is a VM on /dev/kvm whose guest does every access, register write and \
            invalidation itself. Every observable line is classified: agree, allowed (different results \
            the architecture both allows), deviation NAME (KVM and the model agree, a catalogued \
            deviation explains the architecture's difference), host-flavour NAME, model-differs or \
            unexplained. A scenario the host cannot run (32-bit or PAE paging, LA57, PKU, nested) is \
            reported as not run, with the reason. docs/conform.md says what it proves and what it needs.

            Exit status 0 when no line is model-differs or unexplained, 1 otherwise, 2 for unusable \
            input or when /dev/kvm cannot be used.

            Examples:
              shadowmmu conform examples/4-level.scenario
              shadowmmu conform --json examples/tour.scenario
            """
    )

    @Argument(help: "Scenario files (.scenario).")
    var files: [String]

    @Flag(help: "Print one JSON object per scenario, with each line's class.")
    var json = false

    @Flag(help: "Print every line's class, not only the ones that are not 'agree'.")
    var verbose = false

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("expected at least one scenario file, e.g. shadowmmu conform examples/4-level.scenario") }
    }

    func run() throws {
        let stdout = OutputStream.standardOutput, stderr = OutputStream.standardError
        let host: KVMHost
        switch KVMHost.probe() {
        case .success(let probed): host = probed
        case .failure(let error):
            stderr.writeLine("conform: the host's KVM cannot be used: \(error)")
            throw ExitCode(2)
        }
        let runner = ConformanceRunner(host: host)
        // Parse every file first: unusable input runs nothing.
        var scenarios: [Scenario] = []
        do {
            for file in files {
                let scenario = try ScenarioFile.load(file)
                if runner.reasonNotRunnable(scenario) == nil { try ConformanceRunner.checkRunnerRegion(scenario) }
                scenarios.append(scenario)
            }
        } catch {
            stderr.writeLine(error.description)
            throw ExitCode(2)
        }
        if !json { stdout.writeLine("conform: \(host); model: \(runner.modelConfiguration)") }
        var failed = false
        var totals: [String: Int] = [:]
        let started = Date()
        for scenario in scenarios {
            let result: ScenarioConformance
            do { result = try runner.run(scenario) } catch {
                stderr.writeLine(error.description)
                throw ExitCode(2)
            }
            failed = failed || result.failed
            if json {
                stdout.writeLine(result.json.encoded)
                continue
            }
            if let reason = result.notRun {
                totals["not run", default: 0] += 1
                stdout.writeLine("not run  \(scenario.fileName)  \(reason)")
                continue
            }
            totals[result.failed ? "FAIL" : "pass", default: 0] += 1
            let counts = result.counts.sorted { $0.key.description < $1.key.description }.map { "\($0.key) \($0.value)" }
            stdout.writeLine("\(result.failed ? "FAIL" : "pass")  \(scenario.fileName)  \(counts.joined(separator: ", "))")
            for line in result.lines where verbose || line.lineClass != .agree {
                stdout.writeLine("      line \(line.line): \(line.lineClass)  \(line.command)  architecture: \(line.architecture); model: \(line.model); kvm: \(line.kvm)")
            }
            if verbose || result.failed { for note in result.notes { stdout.writeLine("      note: \(note)") } }
        }
        if !json {
            let seconds = Date().timeIntervalSince(started)
            let summary = ["pass", "FAIL", "not run"].compactMap { key in totals[key].map { "\($0) \(key)" } }
            stdout.writeLine("\(summary.joined(separator: ", ")) in \(String(format: "%.2f", seconds)) s (\(String(format: "%.1f", Double(scenarios.count) / max(seconds, 1e-9))) scenarios/s)")
        }
        stdout.flush()
        if failed { throw ExitCode(1) }
    }
}
