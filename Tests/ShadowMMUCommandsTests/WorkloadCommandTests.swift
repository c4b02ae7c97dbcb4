import Foundation
import Testing

@Suite struct WorkloadCommandLine {
    @Test func aWorkloadPrintsItsSummaryAndNothingOnStandardErrorWhenPiped() throws {
        let result = try shadowmmu(["workload", "fork", "--size", "1", "--mode", "pae", "--mmu", "shadow"])
        #expect(result.status == 0, "\(result.stderr)")
        for words in ["fork: pae guest", "copy-on-write", "exits", "shadow faults fixed", "emulated writes", "unsync / sync", "roots", "shadow pages"] {
            #expect(result.stdout.contains(words), "no '\(words)' in:\n\(result.stdout)")
        }
        // No progress line: standard error is not a terminal.
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }

    @Test func jsonIsOneObjectWithTheKernelAndHypervisorCounters() throws {
        let result = try shadowmmu(["workload", "munmap", "--size", "4", "--mmu", "tdp-npt", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdoutLines.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["workload"] as? String == "munmap")
        #expect(object["mmu"] as? String == "mmu tdp format=npt levels=4 host=64bit")
        #expect(object["result"] as? String == "ok")
        let kernel = try #require(object["kernel"] as? [String: Any])
        #expect(kernel["segmentation_faults"] as? Int == 2)
        let stats = try #require(object["stats"] as? [String: Any])
        #expect((stats["walk_references"] as? Int ?? 0) > 0)
    }

    @Test func theEmittedScenarioRunsAndChecks() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("workload-\(UUID().uuidString).scenario").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try shadowmmu(["workload", "hugepages", "--size", "2", "--mode", "32-bit", "--emit", path, "--check"])
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("pass  replay under mmu shadow host=64bit: every expectation holds"))
        #expect(result.stdout.contains("pass  mmu shadow host=pae32 matches the reference"))
        #expect(!result.stdout.contains("FAIL"))
        let run = try shadowmmu(["run", path])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdoutLines.count > 50)
        let check = try shadowmmu(["check", path])
        #expect(check.status == 0, "\(check.stdout)")
    }

    @Test func theShippedTraceReplays() throws {
        let result = try shadowmmu(["workload", "--trace", "examples/traces/walk.lackey", "--mmu", "tdp-ept", "--quiet"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("trace examples/traces/walk.lackey: 4-level guest"))
        #expect(result.stdout.contains("pages touched"))
        #expect(result.stdout.contains("accesses replayed"))
        #expect(result.stdout.contains("two-dimensional walks"))
    }

    @Test func aMalformedTraceExitsTwoNamingFileLineAndColumn() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("trace-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("bad.lackey").path
        try "==7== Lackey\nI  00401000,4\n L 0040zz00,8\n".write(toFile: path, atomically: true, encoding: .utf8)
        let result = try shadowmmu(["workload", "--trace", path])
        #expect(result.status == 2)
        #expect(result.stderr.hasPrefix("\(path):3:8: expected ',' and a size in bytes after the address, found 'zz00,8'"), "\(result.stderr)")
        #expect(result.stdout.isEmpty)

        let missing = try shadowmmu(["workload", "--trace", directory.appendingPathComponent("none.lackey").path])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("valgrind --tool=lackey --trace-mem=yes"), "the message says how to make one: \(missing.stderr)")

        let high = directory.appendingPathComponent("high.lackey").path
        try "I  00401000,4\n S 1fff000398,8\n".write(toFile: high, atomically: true, encoding: .utf8)
        let pae = try shadowmmu(["workload", "--trace", high, "--mode", "pae"])
        #expect(pae.status == 2)
        #expect(pae.stderr.contains("high.lackey:2:4:") && pae.stderr.contains("--mode 4-level"), "\(pae.stderr)")
    }

    @Test(arguments: [
        (["workload"], "expected a workload name"),
        (["workload", "forks"], "unknown workload 'forks': choose one of boot, processes, fork, munmap, hugepages, mix"),
        (["workload", "fork", "--mmu", "kvm"], "unusable --mmu 'kvm' at column 1: expected 'native', 'shadow' or 'tdp' after 'mmu', found 'kvm'; use the words of a scenario's 'mmu' line or one of native, shadow, shadow-pae32"),
        (["workload", "fork", "--mode", "nonpaging"], "unknown --mode 'nonpaging'"),
        (["workload", "fork", "--size", "huge"], "unknown --size 'huge': use small, medium, large"),
        (["workload", "fork", "--mode", "4-level", "--mmu", "shadow-pae32"], "use --mode 32-bit or --mode pae"),
        (["workload", "fork", "--quiet", "--verbose"], "--quiet and --verbose exclude each other"),
        (["workload", "fork", "--trace", "x.lackey"], "not both"),
    ])
    func badOptionsSayWhatToDo(_ arguments: [String], _ message: String) throws {
        let result = try shadowmmu(arguments)
        #expect(result.status != 0)
        #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
    }

    @Test func verboseDescribesKernelEventsOnStandardError() throws {
        let result = try shadowmmu(["workload", "fork", "--size", "1", "--verbose"])
        #expect(result.status == 0)
        #expect(result.stderr.contains("fork: pid 1 → pid 2"), "\(result.stderr.prefix(500))")
        #expect(result.stderr.contains("copy-on-write"))
        #expect(!result.stdout.contains("pid 1 →"), "events go to standard error, the summary to standard output")
    }

    /// Every `shadowmmu workload …` example of the help screen works as shown.
    @Test func theExamplesInTheHelpWork() throws {
        let help = try shadowmmu(["workload", "--help"])
        #expect(help.status == 0)
        let examples = help.stdout.split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("shadowmmu workload") }
        #expect(examples.count >= 3)
        for example in examples {
            let result = try shadowmmu(example.split(separator: " ").dropFirst().map(String.init))
            #expect(result.status == 0, "'\(example)' exited \(result.status): \(result.stderr)")
            #expect(!result.stdout.isEmpty)
        }
    }

    /// Every `shadowmmu workload` command in a code block of the README and
    /// docs/workloads.md works as shown.
    @Test func theDocumentedCommandsWork() throws {
        var commands: [String] = []
        for document in ["README.md", "docs/workloads.md"] {
            let text = try String(contentsOf: packageRoot.appendingPathComponent(document), encoding: .utf8)
            var inBlock = false
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix("```") { inBlock.toggle() }
                if inBlock, line.hasPrefix("$ shadowmmu workload") { commands.append(String(line.dropFirst(2))) }
            }
        }
        #expect(commands.count >= 5, "\(commands)")
        for command in commands {
            let result = try shadowmmu(command.split(separator: " ").dropFirst().map(String.init))
            #expect(result.status == 0, "'\(command)' exited \(result.status): \(result.stderr)")
            #expect(!result.stdout.isEmpty && !result.stdout.contains("FAIL"), "'\(command)': \(result.stdout)")
        }
    }
}
