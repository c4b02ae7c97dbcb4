import Foundation
import Testing

/// Command-line conventions: a misspelt subcommand, `--json` on the
/// commands CI runs, `--version`.
@Suite struct Conventions {
    @Test(arguments: [("rnu", "run"), ("chek", "check"), ("fuz", "fuzz"), ("matirx", "matrix"), ("expain", "explain")])
    func aMisspeltSubcommandGetsTheNearestName(_ typed: String, _ meant: String) throws {
        let result = try shadowmmu([typed, "x"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("unknown subcommand '\(typed)'; did you mean '\(meant)'?"), "\(result.stderr)")
    }

    @Test func aWordFarFromEveryNameListsThem() throws {
        let result = try shadowmmu(["xyzzyq"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("unknown subcommand 'xyzzyq'; the subcommands are run, explain, check"), "\(result.stderr)")
        #expect(!result.stderr.contains("did you mean"))
    }

    @Test func checkJSONIsOneObjectPerConfigurationAndASummary() throws {
        let file = "Tests/ShadowMMUTests/Deviations/efer-nx-forced.scenario"
        let text = try shadowmmu(["check", file])
        let result = try shadowmmu(["check", "--json", file])
        #expect(result.status == 0)
        let objects = try result.stdoutLines.map(JSON.parse)
        let reports = objects.dropLast()
        // The same verdicts as the text, configuration by configuration.
        let textVerdicts = text.stdoutLines.filter { $0.hasPrefix("pass ") || $0.hasPrefix("deviation ") || $0.hasPrefix("FAIL ") }
        #expect(reports.count == textVerdicts.count)
        for (object, line) in zip(reports, textVerdicts) {
            #expect(object.keys.prefix(3) == ["file", "mmu", "verdict"])
            #expect(line.hasSuffix("  " + (object["mmu"]?.string ?? "?")), "\(line)")
            #expect(line.hasPrefix(object["verdict"]?.string == "fail" ? "FAIL" : object["verdict"]?.string ?? "?"))
        }
        let deviation = try #require(reports.first { $0["verdict"]?.string == "deviation" })
        #expect(deviation["deviations"] == .array([.string("efer-nx-forced")]))
        #expect(deviation["first_mismatch_line"]?.int == 30)
        #expect(deviation["reproduce"] == nil, "a deviation is no failure without --strict")
        let summary = try #require(objects.last?["summary"])
        #expect(summary["deviation"]?.int == 2 && summary["fail"]?.int == 0)
        #expect(summary["pass"]?.int == reports.filter { $0["verdict"]?.string == "pass" }.count)
        #expect(summary["deviations"]?["efer-nx-forced"]?.int == 2)

        let strict = try shadowmmu(["check", "--json", "--strict", file])
        #expect(strict.status == 1)
        let reproduce = try strict.stdoutLines.map(JSON.parse).compactMap { $0["reproduce"]?.array }
        #expect(reproduce.count == 2 && reproduce.allSatisfy { $0.first?.string?.hasPrefix("shadowmmu run \(file) --mmu 'shadow") == true })
    }

    @Test func fuzzAndMatrixJSONEndWithTheirSummaries() throws {
        let fuzz = try shadowmmu(["fuzz", "--json", "--mode", "pae", "--count", "3", "--length", "40"])
        #expect(fuzz.status == 0, "\(fuzz.stderr)")
        let guests = try fuzz.stdoutLines.map(JSON.parse)
        #expect(guests.count == 3 + 1 + 1)
        #expect(guests.prefix(3).map { $0["guest"]?.string } == ["fuzz-pae-0.scenario", "fuzz-pae-1.scenario", "fuzz-pae-2.scenario"])
        #expect(guests[3]["mode"]?.string == "pae")
        #expect(guests[4]["summary"]?["pass"].flatMap(\.int).map { $0 + (guests[4]["summary"]?["deviation"]?.int ?? 0) } == 3)

        let matrix = try shadowmmu(["matrix", "--json", "--length", "30", "--roots", "local"])
        let text = try shadowmmu(["matrix", "--length", "30", "--roots", "local"])
        let rows = try matrix.stdoutLines.map(JSON.parse)
        // As many rows as the table (its header and summary line aside), and the same exits.
        let tableRows = text.stdoutLines.dropFirst().dropLast()
        #expect(rows.count - 1 == tableRows.count)
        for (row, line) in zip(rows, tableRows) {
            let cells = line.split(separator: " ", omittingEmptySubsequences: true)
            #expect(cells.contains { $0 == "\(row["exits"]?.int ?? -1)" }, "\(line) vs \(row)")
        }
        #expect(rows.last?["summary"]?["fail"]?.int == 0)
    }

    @Test func versionNamesThePackageVersionAndTheCommit() throws {
        let result = try shadowmmu(["--version"])
        #expect(result.status == 0)
        let line = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let prefix = "shadowmmu 0.1.0 (commit "
        #expect(line.hasPrefix(prefix) && line.hasSuffix(")"), "\(line)")
        let commit = line.dropFirst(prefix.count).dropLast().replacingOccurrences(of: "+changes", with: "")
        guard commit != "unknown" else {
            print("--version: built outside a git checkout (or without git): the commit is 'unknown'; not compared with git")
            return
        }
        #expect(commit.count == 12 && commit.allSatisfy(\.isHexDigit), "\(line)")
        // The commit is one of this repository's.
        let git = Process()
        git.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        git.arguments = ["git", "-C", packageRoot.path, "cat-file", "-t", commit]
        let pipe = Pipe()
        git.standardOutput = pipe
        git.standardError = FileHandle.nullDevice
        try git.run()
        git.waitUntilExit()
        let kind = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(kind.trimmingCharacters(in: .whitespacesAndNewlines) == "commit", "\(commit) is no commit of \(packageRoot.path)")
    }
}

/// `explain --json` gives each hypervisor action as a typed stage.
@Suite struct ExplainHypervisorStages {
    @Test func aShadowFaultIsEntryExitPagesSptesAndOutcome() throws {
        let result = try shadowmmu(["explain", "examples/shadow-pae.scenario", "--line", "30", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let stages = try #require(try JSON.parse(result.stdout)["stages"]?.array)
        let steps = stages.filter { $0["stage"]?.string == "hypervisor" }
        #expect(stages.allSatisfy { $0["stage"]?.string != "note" }, "every stage of a shadow fault has a structure")
        let actions = steps.map { $0["action"]?.string ?? "?" }
        #expect(actions.first == "vm-entry" && actions.contains("exit") && actions.contains("outcome"), "\(actions)")
        let entry = try #require(steps.first)
        #expect(entry["levels"]?.int == 3 && entry["local"]?.bool == true && entry["root_frame"]?.string?.hasPrefix("0x") == true)
        let created = steps.filter { $0["action"]?.string == "page-created" }
        #expect(created.map { $0["level"]?.int } == [2, 1], "the first touch builds the PD's and the PT's shadows: \(created)")
        #expect(created.allSatisfy { $0["local"]?.bool == false && $0["gfn"]?.string != nil && $0["role"]?.string?.hasPrefix("level=") == true })
        let written = steps.filter { $0["action"]?.string == "spte-written" }
        #expect(written.map { $0["level"]?.int } == [3, 2, 1])
        #expect(written.allSatisfy { $0["old"]?.string == "0x0" && $0["index"]?.int != nil })
        #expect(steps.last(where: { $0["action"]?.string == "outcome" })?["outcome"]?.string == "fixed")
        #expect(steps.allSatisfy { !($0["text"]?.string ?? "").isEmpty })

        // The text is the same sentences.
        let text = try shadowmmu(["explain", "examples/shadow-pae.scenario", "--line", "30"])
        for step in steps { #expect(text.stdout.contains(step["text"]?.string ?? "?"), "\(step)") }
    }

    @Test func aTwoDimensionalWalkListsItsSecondStageTranslations() throws {
        let result = try shadowmmu(["explain", "examples/tdp-ept.scenario", "--line", lineOfFirstRead("examples/tdp-ept.scenario"), "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let steps = try #require(try JSON.parse(result.stdout)["stages"]?.array).filter { $0["stage"]?.string == "hypervisor" }
        // The first walk: the guest's PML4E address is not mapped yet; the walk stops before reading it.
        let first = try #require(steps.firstIndex { $0["action"]?.string == "two-dimensional-walk" }, "\(steps)")
        #expect(steps[first]["references"]?.int == 1)
        let stopped = try #require(steps.first { $0["action"]?.string == "walk-stopped" })
        #expect(stopped["level"]?.int == 4 && stopped["entry_address"]?.string == "0x1000")
        let stages = try #require(try JSON.parse(result.stdout)["stages"]?.array)
        let firstWalk = try #require(stages.firstIndex { $0["stage"]?.string == "walk" })
        let firstExit = try #require(stages.firstIndex { $0["action"]?.string == "exit" })
        #expect(firstWalk > firstExit, "no guest walk is shown before the first exit: its only entry was never read")

        // The walk after the fix: 4 entry reads, 4 accessed-flag updates, the final address; 31 references.
        let walk = try #require(steps.last { $0["action"]?.string == "two-dimensional-walk" })
        let last = try #require(steps.lastIndex { $0["action"]?.string == "two-dimensional-walk" })
        let second = steps[(last + 1)...].prefix { $0["action"]?.string == "second-stage" }
        #expect(second.map { $0["purpose"]?.string ?? "?" } == Array(repeating: "read-entry", count: 4) + Array(repeating: "set-accessed-dirty", count: 4) + ["final-address"])
        #expect(second.allSatisfy { $0["guest_physical_address"]?.string != nil && $0["result"]?.string == "translated" })
        #expect(walk["references"]?.int == second.reduce(0) { $0 + ($1["references"]?.int ?? 0) } + 4, "4 guest entries and each translation's references")
    }

    @Test func aFaultingAccessSaysWhatHappenedToTheAccessedAndDirtyFlags() throws {
        // Line 16 of the tour: a write through a not-present PTE.
        let fault = try shadowmmu(["explain", "examples/tour.scenario", "--line", "16"])
        #expect(fault.stdout.contains("Accessed/dirty flags: none written (the access faults)."), "\(fault.stdout)")
        let ok = try shadowmmu(["explain", "examples/tour.scenario", "--line", "14"])
        #expect(ok.stdout.contains("Accessed/dirty flags written by the CPU:") && !ok.stdout.contains("the access faults"), "\(ok.stdout)")
    }

    func lineOfFirstRead(_ file: String) throws -> String {
        let text = try String(contentsOf: packageRoot.appendingPathComponent(file), encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let index = try #require(lines.firstIndex { $0.hasPrefix("read ") })
        return String(index + 1)
    }
}

/// `run --shadow-tree`: the root as a tree a person reads.
@Suite struct ShadowTree {
    @Test func aSharedPageIsPrintedOnceAndReferredToAfter() throws {
        let result = try shadowmmu(["run", "examples/shadow-pae.scenario", "--shadow-tree"])
        #expect(result.status == 0, "\(result.stderr)")
        let tree = result.stdoutLines.filter { !$0.hasPrefix("{") }
        #expect(tree.first == "vCPU 0:")
        #expect(tree.dropFirst().first?.hasPrefix("  L3 local (level=3") == true, "\(tree)")
        // Every table printed in full once; the second PDPTE's link to the same directory is a reference.
        let hosts = tree.compactMap { line -> String? in
            guard !line.contains("(shown above)"), let range = line.range(of: #"host 0x[0-9a-f]+$"#, options: .regularExpression) else { return nil }
            return String(line[range])
        }
        #expect(Set(hosts).count == hosts.count, "a table printed twice: \(tree)")
        let references = tree.filter { $0.contains("(shown above)") }
        #expect(!references.isEmpty, "\(tree)")
        for reference in references {
            let host = reference.components(separatedBy: "host ").last?.components(separatedBy: " ").first ?? "?"
            #expect(hosts.contains("host " + host), "\(reference) refers to a table not shown")
        }
        // The JSON dump is the contract and stays what it was.
        let json = try shadowmmu(["run", "examples/shadow-pae.scenario", "--dump-shadow"])
        #expect(json.stdoutLines.last?.hasPrefix("{\"shadow\":{\"vcpu\":0,\"root\":{\"level\":3,\"local\":true") == true)
    }

    @Test func nativeHasNoShadowTables() throws {
        let result = try shadowmmu(["run", "examples/4-level.scenario", "--shadow-tree"])
        #expect(result.stdoutLines.last == "vCPU 0: no hypervisor (mmu native): no shadow tables")
    }
}

/// `fuzz --jobs N` checks guests concurrently and prints what one job prints.
@Suite struct FuzzJobs {
    @Test func severalJobsPrintWhatOneJobPrints() throws {
        let common = ["fuzz", "--count", "2", "--length", "60", "--save-failures", "/tmp/shadowmmu-jobs-test"]
        let one = try shadowmmu(common + ["--jobs", "1"])
        let three = try shadowmmu(common + ["--jobs", "3"])
        #expect(one.status == three.status)
        #expect(one.stdout == three.stdout && one.stdout.contains("every mode: "), "\(one.stdout)\n---\n\(three.stdout)")
        let json = try shadowmmu(common + ["--jobs", "3", "--json", "--regress", "pde32-write-zaps-one-half", "--mode", "32-bit"])
        let jsonOne = try shadowmmu(common + ["--jobs", "1", "--json", "--regress", "pde32-write-zaps-one-half", "--mode", "32-bit"])
        #expect(json.stdout == jsonOne.stdout && json.status == jsonOne.status)
        let refused = try shadowmmu(["fuzz", "--jobs", "0"])
        #expect(refused.status == 2 && refused.stderr.contains("expected a number from 1 to 256"), "\(refused.stderr)")
    }
}
