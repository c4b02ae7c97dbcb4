import Foundation
import Testing

/// `--mmu WORDS` on the commands that run one scenario, and the commands
/// `check` prints under a FAIL to reproduce it.
@Suite struct Reproduction {
    static let stale = "Tests/ShadowMMUTests/Regressions/stale-npt-pdpte.scenario"

    @Test func mmuReplacesTheFilesLine() throws {
        // The file says `mmu tdp format=npt levels=4`; upstream's special roots
        // read L1's nPDPTEs at root load and show the stale mapping (line 49).
        let special = try shadowmmu(["run", Self.stale, "--mmu", "tdp format=npt levels=4 roots=special", "--stats"])
        #expect(special.status == 1, "\(special.stderr)")
        #expect(special.stderr.contains("stale-npt-pdpte.scenario:50: expectation failed"), "\(special.stderr)")
        let stats = try JSON.parse(try #require(special.stdoutLines.last))
        #expect((stats["stats"]?["special_roots_created"]?.int ?? 0) > 0, "\(stats)")

        let local = try shadowmmu(["run", Self.stale, "--mmu", "mmu tdp format=npt levels=4 roots=local"])
        #expect(local.status == 0, "\(local.stderr)")
    }

    @Test(arguments: [
        ["run"], ["explain", "--line", "49"], ["draw"], ["report", "-o", "/dev/null"],
    ])
    func everyOneScenarioCommandTakesMMUAndRegress(_ command: [String]) throws {
        let words = "tdp format=npt levels=4 host=64bit"
        let plain = try shadowmmu([command[0], Self.stale] + command.dropFirst() + ["--mmu", words])
        #expect(plain.status == 0, "\(plain.stderr)")
        let regressed = try shadowmmu([command[0], Self.stale] + command.dropFirst() + ["--mmu", words, "--regress", "stale-npt-pdpte"])
        if command[0] == "run" {
            #expect(regressed.status == 1, "the regression must change what the run sees: \(regressed.stderr)")
        } else {
            #expect(regressed.status == 0, "\(regressed.stderr)")
            #expect(plain.stdout != regressed.stdout || command[0] == "report", "--regress must change \(command[0])'s output")
        }
        let bad = try shadowmmu([command[0], Self.stale] + command.dropFirst() + ["--mmu", "shadow roots=eager"])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("unusable --mmu 'shadow roots=eager' at column 14: expected 'local', 'local-eager' or 'special' for 'roots='"), "\(bad.stderr)")
    }

    @Test func explainUnderTheOtherDesignShowsTheOtherResult() throws {
        let special = try shadowmmu(["explain", Self.stale, "--line", "49", "--mmu", "tdp format=npt roots=special"])
        let local = try shadowmmu(["explain", Self.stale, "--line", "49", "--mmu", "tdp format=npt"])
        #expect(special.stdout.contains("it reads 0x2222"), "\(special.stdout)")
        #expect(!local.stdout.contains("it reads 0x2222"), "\(local.stdout)")
    }

    @Test func aFailPrintsCommandsThatReproduceIt() throws {
        let check = try shadowmmu(["check", "--roots", "local", "--regress", "stale-npt-pdpte", Self.stale])
        #expect(check.status == 1)
        let lines = check.stdoutLines
        let reproduce = lines.filter { $0.hasPrefix("      reproduce: shadowmmu ") }
        let explain = lines.filter { $0.hasPrefix("      explain:   shadowmmu ") }
        #expect(reproduce.count == lines.filter { $0.hasPrefix("FAIL ") }.count && reproduce.count == 3, "\(check.stdout)")
        #expect(explain.count == 3)
        for line in reproduce + explain {
            let words = Array(try shellWords(line.split(separator: ":", maxSplits: 1)[1]).dropFirst())
            let result = try shadowmmu(words)
            // The run reproduces the FAIL: the file's expectation (the architecture's result) fails again.
            #expect(result.status == (words[0] == "run" ? 1 : 0), "\(line): \(result.stderr)")
            if words[0] == "explain" { #expect(result.stdout.contains("it reads 0x2222"), "\(line)") }
        }
    }

    @Test func workloadTakesScenarioWordsAndShortNamesAlike() throws {
        let words = try shadowmmu(["workload", "fork", "--mode", "pae", "--mmu", "shadow host=pae32", "--json"])
        let name = try shadowmmu(["workload", "fork", "--mode", "pae", "--mmu", "shadow-pae32", "--json"])
        #expect(words.status == 0 && name.status == 0, "\(words.stderr) \(name.stderr)")
        #expect(words.stdout == name.stdout)
        #expect(try JSON.parse(words.stdout)["mmu"]?.string == "mmu shadow host=pae32")
    }

    @Test func workloadRootsRunsEachDesignOnTheSameGuest() throws {
        let both = try shadowmmu(["workload", "processes", "--mode", "pae", "--size", "6", "--roots", "all", "--json"])
        #expect(both.status == 0, "\(both.stderr)")
        let designs = try #require(try JSON.parse(both.stdout)["designs"]?.array)
        #expect(designs.map { $0["roots"]?.string } == ["local", "local-eager", "special"])
        // The guest does the same under each design ...
        #expect(Set(designs.map { $0["kernel"]?.description }).count == 1)
        // ... and each column is what a single run under that design gives.
        for design in designs {
            let single = try shadowmmu([
                "workload", "processes", "--mode", "pae", "--size", "6", "--json",
                "--mmu", "shadow roots=\(design["roots"]?.string ?? "")",
            ])
            #expect(try JSON.parse(single.stdout)["stats"] == design["stats"])
        }
        let special = designs[2]["stats"], local = designs[0]["stats"]
        #expect((special?["special_roots_created"]?.int ?? 0) > 0 && special?["local_roots_created"]?.int == 0)
        #expect((local?["local_roots_created"]?.int ?? 0) > 0 && local?["special_roots_created"]?.int == 0)

        let text = try shadowmmu(["workload", "processes", "--mode", "32-bit", "--size", "6", "--roots", "both"])
        #expect(text.status == 0)
        #expect(text.stdoutLines.contains { $0.contains("roots=local") && $0.contains("roots=special") }, "\(text.stdout)")
        #expect(text.stdoutLines.contains { $0.hasPrefix("  exits per switch") }, "\(text.stdout)")

        let refused = try shadowmmu(["workload", "fork", "--roots", "both", "--emit", "/tmp/x.scenario"])
        #expect(refused.status == 2 && refused.stderr.contains("--roots runs the workload several times"), "\(refused.stderr)")
    }
}

/// Splits a POSIX shell command line with single quotes (what
/// `Reproduction.shellQuoted` writes) into its words.
func shellWords<S: StringProtocol>(_ line: S) throws -> [String] {
    var words: [String] = []
    var current = ""
    var inWord = false
    var quoted = false
    for character in line {
        if quoted {
            if character == "'" { quoted = false } else { current.append(character) }
        } else if character == "'" {
            quoted = true
            inWord = true
        } else if character == " " {
            if inWord { words.append(current) }
            current = ""
            inWord = false
        } else {
            current.append(character)
            inWord = true
        }
    }
    if quoted { throw JSON.ParseError(message: "unterminated quote in \(line)", offset: 0) }
    if inWord { words.append(current) }
    return words
}
