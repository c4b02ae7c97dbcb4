import ArgumentParser
import Conformance
import Foundation
import RealKVM
import ScenarioLanguage
import ScenarioVerification

extension Fuzz {
    /// `fuzz --kvm`: the generated guests of the families this host's KVM can
    /// run, through the three-way comparison of `conform`; a guest with a
    /// `model-differs` or `unexplained` line is minimized and saved.
    func runOnKVM() throws {
        let stdout = OutputStream.standardOutput
        let host: KVMHost
        switch KVMHost.probe() {
        case .success(let probed): host = probed
        case .failure(let error):
            OutputStream.standardError.writeLine("fuzz --kvm: the host's KVM cannot be used: \(error)")
            throw ExitCode(2)
        }
        let runner = ConformanceRunner(host: host)
        // The host runs 64-bit guests in 4-level paging (5-level where it has LA57).
        let runnable: [GuestFamily] = [.plain(.level4)] + (host.supportsLA57 ? [.plain(.level5)] : [])
        let families = runnable.filter { mode == nil || $0.description == mode }
        guard !families.isEmpty else {
            OutputStream.standardError.writeLine("fuzz --kvm: this host's KVM (\(host.flavour)) cannot run '\(mode ?? "")' guests; it runs \(runnable.map(\.description).joined(separator: ", "))")
            throw ExitCode(2)
        }
        let progress = output.progressLine()
        try prepareFolders(progress: progress)
        var classes: [String: Int] = [:]
        var guests = 0, notRun = 0, failed = 0
        let started = Date()
        for family in families {
            for seed in seed..<(seed + count) {
                progress.update("fuzz --kvm \(family)", done: Int(seed - self.seed), total: Int(count))
                let name = "fuzz-kvm-\(family)-\(seed).scenario"
                let generated = try ScenarioParser.parse(family.generate(seed: seed, length: length), fileName: name)
                let text = "# generated: mode=\(family) seed=\(seed), what this host's KVM cannot do taken out\n"
                    + runner.runnableVariant(of: generated).scenarioText
                try saveGenerated(text, name: name)
                guests += 1
                let result = try runner.run(try ScenarioParser.parse(text, fileName: name))
                if output.verbose, result.notRun == nil { progress.message("\(result.failed ? "FAIL" : "pass") \(name)") }
                if let reason = result.notRun {
                    notRun += 1
                    if output.verbose { progress.message("not run \(name): \(reason)") }
                    continue
                }
                for (lineClass, n) in result.counts { classes[lineClass.description, default: 0] += n }
                guard result.failed else { continue }
                failed += 1
                stdout.writeLine("FAIL \(name) on the host's KVM")
                for line in result.lines where line.lineClass.isFailure {
                    stdout.writeLine("      line \(line.line): \(line.lineClass)  \(line.command)  architecture: \(line.architecture); model: \(line.model); kvm: \(line.kvm)")
                }
                try saveFailure(text, name: name) { candidate in
                    guard let scenario = try? ScenarioParser.parse(candidate, fileName: name),
                          let result = try? runner.run(scenario) else { return false }
                    return result.failed
                }
            }
        }
        progress.clear()
        let seconds = Date().timeIntervalSince(started)
        let counts = classes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        stdout.writeLine("fuzz --kvm: \(guests) guests (\(guests - notRun - failed) pass, \(failed) FAIL, \(notRun) not run) in \(String(format: "%.1f", seconds)) s, \(String(format: "%.1f", Double(guests) / max(seconds, 1e-9))) guests/s; lines: \(counts)")
        stdout.flush()
        if failed > 0 { throw ExitCode(1) }
    }
}
