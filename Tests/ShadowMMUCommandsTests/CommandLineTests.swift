import ArgumentParser
import Foundation
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import ShadowMMUCommands
import Testing

// The commands library exposes `ShadowMMUCommand` (argument parsing and help,
// used in-process below), but `run` and `explain` write straight to file
// descriptors 1 and 2 and `main()` exits the process, so their behaviour is
// tested by running the built `shadowmmu` executable as a subprocess.

// MARK: Helpers

/// The field order the contract fixes for one output line, or nil if the
/// line is not a contract line.
private func contractKeys(of object: JSON) -> [String]? {
    let head = ["line", "vcpu", "op"]
    switch object["op"]?.string {
    case "read", "write", "fetch":
        let access = head + ["gva", "user", "result"]
        switch object["result"]?.string {
        case "ok": return access + ["gpa"] + (object["op"]?.string == "read" ? ["value"] : [])
        case "fault": return access + ["vector", "error_code"]
        case "gp": return access
        // Nested virtualization (docs/SCENARIO-FORMAT.md, extension): a fault delivered to L1.
        case "npf": return access + ["gpa", "exit_info_1"]
        case "ept-violation": return access + ["gpa", "qualification"]
        case "ept-misconfig": return access + ["gpa"]
        default: return nil
        }
    case "peek": return head + ["addr", "value"]
    case "dirty-log": return head + ["gfns"]
    case "cr0", "cr3", "cr4", "efer", "pkru": return head + ["result"]
    default: return nil
    }
}

/// Checks one stdout line of `run` against the contract; returns the problems found.
private func contractProblems(_ line: String) -> [String] {
    let object: JSON
    do { object = try JSON.parse(line) } catch { return ["not JSON (\(error)): \(line)"] }
    guard case .object = object else { return ["not a JSON object: \(line)"] }
    guard let keys = contractKeys(of: object) else { return ["unknown op/result: \(line)"] }
    var problems: [String] = []
    if object.keys != keys { problems.append("field order \(object.keys), contract says \(keys): \(line)") }
    if object["line"]?.int == nil || object["vcpu"]?.int == nil { problems.append("line/vcpu not integers: \(line)") }
    for key in ["gva", "gpa", "value", "addr", "error_code", "exit_info_1", "qualification"] where object[key] != nil {
        if !isContractHex(object[key]?.string) { problems.append("\(key) is not a lowercase 0x string: \(line)") }
    }
    if object["user"] != nil, object["user"]?.bool == nil { problems.append("user is not a boolean: \(line)") }
    if object["vector"] != nil, object["vector"]?.int != 14 { problems.append("vector is not 14: \(line)") }
    if let gfns = object["gfns"] {
        if !(gfns.array?.allSatisfy { isContractHex($0.string) } ?? false) { problems.append("gfns not hex strings: \(line)") }
        let values = gfns.array?.compactMap { $0.string.flatMap { UInt64($0.dropFirst(2), radix: 16) } } ?? []
        if values != values.sorted() || Set(values).count != values.count { problems.append("gfns not sorted and unique: \(line)") }
    }
    if ["cr0", "cr3", "cr4", "efer", "pkru"].contains(object["op"]?.string ?? ""), object["result"]?.string != "gp" {
        problems.append("an accepted register write was printed: \(line)")
    }
    return problems
}

/// The command word(s) of each non-empty line of a scenario, by line number.
private func sourceCommands(_ text: String) -> [Int: [Substring]] {
    var commands: [Int: [Substring]] = [:]
    for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let code = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let tokens = code.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
        if !tokens.isEmpty { commands[index + 1] = tokens }
    }
    return commands
}

private func isObservableSource(_ tokens: [Substring]) -> Bool {
    ["read", "write", "fetch", "peek"].contains(tokens[0]) || tokens.prefix(3) == ["host", "dirty-log", "read"]
}

private let fourLevelPrologue = """
    machine memory=64M
    poke 0x1000 0x2007
    poke 0x2000 0x3007
    poke 0x3000 0x4007
    poke 0x4008 0x100007
    cr4 0x20
    cr3 0x1000
    efer 0x100
    cr0 0x80010001
    """

// MARK: run

@Suite struct RunCommand {
    @Test func theExamplesTheDocumentationPromisesExist() {
        for name in [
            "4-level", "nonpaging", "32-bit", "pae", "5-level", "tlb", "smap-pku", "multi-vcpu", "dirty-log",
        ] {
            #expect(exampleFiles.contains(name + ".scenario"), "examples/\(name).scenario is missing")
        }
    }

    @Test(arguments: exampleFiles)
    func exampleRunsCleanlyAndPrintsTheContractsLines(_ name: String) throws {
        let path = "examples/" + name
        let result = try shadowmmu(["run", path])
        #expect(result.status == 0, "\(path) exited \(result.status): \(result.stderr)")
        #expect(result.stderr.isEmpty, "\(path) wrote to stderr: \(result.stderr)")
        #expect(result.stdout.hasSuffix("\n"))
        let lines = result.stdoutLines
        #expect(!lines.isEmpty)
        for line in lines {
            for problem in contractProblems(line) { Issue.record("\(path): \(problem)") }
        }

        // Every output line names the source line of its command, in file order,
        // and every read/write/fetch/peek/dirty-log read of the file printed one.
        let source = sourceCommands(try String(contentsOf: examplesDirectory.appendingPathComponent(name), encoding: .utf8))
        let printed = lines.compactMap { (try? JSON.parse($0))?["line"]?.int }
        #expect(printed == printed.sorted() && Set(printed).count == printed.count, "\(path): line numbers out of order")
        for (line, object) in zip(printed, lines.compactMap { try? JSON.parse($0) }) {
            let tokens = source[line] ?? []
            let op = object["op"]?.string ?? ""
            let word = op == "dirty-log" ? "host" : op
            #expect(tokens.first.map(String.init) == word, "\(path):\(line): printed op '\(op)' for '\(tokens.joined(separator: " "))'")
        }
        let observable = source.filter { isObservableSource($0.value) }.keys.sorted()
        #expect(Set(observable).isSubset(of: Set(printed)), "\(path): an observable command printed nothing")
    }

    /// The examples are stories with checks: every line the run prints is
    /// followed by an `expect` before the next observable command.
    @Test(arguments: exampleFiles)
    func everyPrintedResultOfAnExampleIsChecked(_ name: String) throws {
        let source = sourceCommands(try String(contentsOf: examplesDirectory.appendingPathComponent(name), encoding: .utf8))
        let result = try shadowmmu(["run", "examples/" + name])
        let printed = Set(result.stdoutLines.compactMap { (try? JSON.parse($0))?["line"]?.int })
        let ordered = source.keys.sorted()
        for (position, line) in ordered.enumerated() where printed.contains(line) {
            var checked = false
            for next in ordered[(position + 1)...] {
                let tokens = source[next] ?? []
                if tokens.first == "expect" { checked = true; break }
                if isObservableSource(tokens) || printed.contains(next) { break }
                if ["cr0", "cr3", "cr4", "efer", "pkru"].contains(tokens.first ?? "") { break }
            }
            #expect(checked, "examples/\(name):\(line) prints a result that no 'expect' checks")
        }
    }

    @Test func aFailedExpectationExitsOneNamesFileAndLineAndTheRunContinues() throws {
        try withScenarioFile("failing.scenario", """
            machine memory=64M
            read 0x1000                 # paging is off: gpa 0x1000, value 0
            expect ok gpa=0x2000        # wrong
            expect ok gpa=0x1000        # right
            peek 0x1000
            expect value=0x5            # wrong
            write 0x2000 value=0x7
            expect ok gpa=0x2000        # right
            """) { path in
            let result = try shadowmmu(["run", path])
            #expect(result.status == 1)
            #expect(result.stderrLines.count == 2, "\(result.stderr)")
            #expect(result.stderr.contains("\(path):3:"), "\(result.stderr)")
            #expect(result.stderr.contains("\(path):6:"), "\(result.stderr)")
            #expect(!result.stderr.contains("\(path):4:") && !result.stderr.contains("\(path):8:"))
            // The run went on after the failures.
            #expect(result.stdoutLines.count == 3)
            #expect(result.stdoutLines.last == #"{"line":7,"vcpu":0,"op":"write","gva":"0x2000","user":false,"result":"ok","gpa":"0x2000"}"#)
        }
    }

    @Test func statsAndDumpShadowAddValidJSONLines() throws {
        let result = try shadowmmu(["run", "examples/multi-vcpu.scenario", "--stats", "--dump-shadow"])
        #expect(result.status == 0)
        let lines = result.stdoutLines
        try #require(lines.count >= 3)
        let tail = try lines.suffix(3).map { try JSON.parse($0) }
        #expect(tail[0].keys == ["shadow"] && tail[0]["shadow"]?["vcpu"]?.int == 0)
        #expect(tail[1].keys == ["shadow"] && tail[1]["shadow"]?["vcpu"]?.int == 1)
        #expect(tail[2].keys == ["stats"])
        #expect(tail[2]["stats"]?["accesses"]?.int ?? 0 > 0)
    }
}

// MARK: Input that cannot be used

struct BadInput: CustomTestStringConvertible, Sendable {
    var name: String
    var text: String
    var line: Int
    var column: Int
    var message: String
    var testDescription: String { name }
}

@Suite struct UnusableInput {
    static let cases: [BadInput] = [
        BadInput(name: "syntax error", text: "machine memory=64M\nread x12\n", line: 2, column: 6,
                 message: "expected a hexadecimal address after 'read', found 'x12'"),
        BadInput(name: "access crossing 4 KiB", text: "machine memory=64M\nread 0x1000\nwrite 0x1ffc width=8\n", line: 3, column: 7,
                 message: "crosses a 4 KiB boundary"),
        BadInput(name: "long mode on a 32-bit host", text: "machine memory=64M\nmmu shadow host=pae32\ncr4 0x20\nefer 0x100\n", line: 4, column: 1,
                 message: "32-bit PAE host can run"),
        BadInput(name: "too much memory for 3-level NPT", text: "# TDP\nmachine memory=8G\nmmu tdp format=npt host=pae32\nread 0x1000\n",
                 line: 3, column: 1, message: "expected at most 4G of guest memory"),
        BadInput(name: "error after runnable lines", text: "machine memory=64M\nread 0x1000\nexpect ok\npeek 0x0\nbogus 1\n",
                 line: 5, column: 1, message: "expected a command"),
        BadInput(name: "no machine line", text: "read 0x1000\n", line: 1, column: 1, message: "'machine'"),
    ]

    @Test(arguments: cases)
    func runExitsTwoWithALocatedMessageAndRunsNothing(_ input: BadInput) throws {
        try withScenarioFile("bad.scenario", input.text) { path in
            let result = try shadowmmu(["run", path])
            #expect(result.status == 2)
            #expect(result.stdout.isEmpty, "something ran: \(result.stdout)")
            #expect(result.stderrLines.count == 1, "\(result.stderr)")
            #expect(result.stderr.hasPrefix("\(path):\(input.line):\(input.column): "), "\(result.stderr)")
            #expect(result.stderr.contains(input.message), "\(result.stderr)")
        }
    }

    @Test(arguments: cases)
    func explainExitsTwoWithTheSameMessage(_ input: BadInput) throws {
        try withScenarioFile("bad.scenario", input.text) { path in
            let result = try shadowmmu(["explain", path, "--line", "2"])
            #expect(result.status == 2)
            #expect(result.stdout.isEmpty)
            #expect(result.stderr.hasPrefix("\(path):\(input.line):\(input.column): "), "\(result.stderr)")
        }
    }

    @Test func aMissingFileExitsTwo() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("no-such-\(UUID().uuidString).scenario").path
        for arguments in [["run", path], ["explain", path, "--line", "1"]] {
            let result = try shadowmmu(arguments)
            #expect(result.status == 2)
            #expect(result.stdout.isEmpty)
            #expect(result.stderr.hasPrefix("\(path):1:1: "), "\(result.stderr)")
            #expect(result.stderr.contains("no such file"), "\(result.stderr)")
        }
    }
}

// MARK: explain

@Suite struct ExplainCommand {
    /// Line 10 is a user read walking all four levels; line 11 writes the same page.
    static let scenario = fourLevelPrologue + "\nread 0x1008 user\nwrite 0x1008 value=0x1 width=1 user\n"

    @Test func textShowsEveryLevelWithEntryAddressAndRawValue() throws {
        try withScenarioFile("walk.scenario", Self.scenario) { path in
            let result = try shadowmmu(["explain", path, "--line", "10"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.isEmpty)
            let text = result.stdout
            // Each level, top-down: its name, the entry's address and its raw value.
            let levels = [("PML4E", "0x1000", "0x2007"), ("PDPTE", "0x2000", "0x3007"), ("PDE", "0x3000", "0x4007"), ("PTE", "0x4008", "0x100007")]
            var searchFrom = text.startIndex
            for (name, address, value) in levels {
                guard let nameRange = text.range(of: "\(name) index", range: searchFrom..<text.endIndex) else {
                    Issue.record("no \(name) step after the previous level:\n\(text)")
                    return
                }
                // The step's own line (with the entry's address) and the next (its value).
                let step = text[nameRange.upperBound...].split(separator: "\n").prefix(2).joined(separator: "\n")
                #expect(step.contains("at \(address)"), "\(name): no entry address \(address) in:\n\(step)")
                #expect(step.contains("value \(value)"), "\(name): no raw value \(value) in:\n\(step)")
                searchFrom = nameRange.upperBound
            }
            #expect(text.contains("0x100008"), "the result's physical address is missing:\n\(text)")
        }
    }

    @Test func jsonIsOneValidObjectWithEveryStep() throws {
        try withScenarioFile("walk.scenario", Self.scenario) { path in
            let result = try shadowmmu(["explain", path, "--line", "10", "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdoutLines.count == 1)
            let object = try JSON.parse(result.stdout)
            #expect(object["line"]?.int == 10)
            #expect(object["access"]?["op"]?.string == "read")
            #expect(object["access"]?["user"]?.bool == true)
            #expect(object["result"]?["result"]?.string == "ok")
            #expect(object["result"]?["gpa"]?.string == "0x100008")
            let walk = object["stages"]?.array?.first { $0["stage"]?.string == "walk" }
            let steps = try #require(walk?["steps"]?.array)
            #expect(steps.map { $0["level"]?.int } == [4, 3, 2, 1])
            #expect(steps.map { $0["address"]?.string } == ["0x1000", "0x2000", "0x3000", "0x4008"])
            #expect(steps.map { $0["entry"]?.string } == ["0x2007", "0x3007", "0x4007", "0x100007"])
        }
    }

    @Test func aWriteAfterAReadExplainsTheCachedTranslationWithDZero() throws {
        try withScenarioFile("walk.scenario", Self.scenario) { path in
            let result = try shadowmmu(["explain", path, "--line", "11", "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            let object = try JSON.parse(result.stdout)
            let stages = object["stages"]?.array ?? []
            #expect(stages.first?["stage"]?.string == "tlb")
            #expect(stages.first?["result"]?.string == "dropped")
            #expect(stages.first?["entry"]?["dirty"]?.bool == false)
            let walk = stages.first { $0["stage"]?.string == "walk" }
            #expect(walk?["accessed_dirty_updates"]?.array?.map { $0["new"]?.string } == ["0x100067"])
        }
    }

    @Test func aFaultAndANonCanonicalAddress() throws {
        try withScenarioFile("faults.scenario", fourLevelPrologue + "\nwrite 0x5000 user\nread 0x800000000000\n") { path in
            let fault = try shadowmmu(["explain", path, "--line", "10", "--json"])
            #expect(fault.status == 0)
            let faultObject = try JSON.parse(fault.stdout)
            #expect(faultObject["result"]?.keys == ["result", "vector", "error_code"])
            #expect(faultObject["result"]?["error_code"]?.string == "0x6")
            let gp = try shadowmmu(["explain", path, "--line", "11"])
            #expect(gp.status == 0)
            #expect(gp.stdout.contains("not canonical"), "\(gp.stdout)")
            #expect(gp.stdout.contains("#GP"), "\(gp.stdout)")
        }
    }

    @Test(arguments: [
        (1, "machine line"), (2, "poke"), (9, "register write"), (11, "expect"), (12, "comment"), (13, "blank"), (500, "past the end"),
    ])
    func aLineWithoutAnAccessExitsTwo(_ line: Int, _ what: String) throws {
        try withScenarioFile("lines.scenario", fourLevelPrologue + "\nread 0x1008\nexpect ok\n# a comment\n\n") { path in
            let result = try shadowmmu(["explain", path, "--line", String(line)])
            #expect(result.status == 2, "\(what)")
            #expect(result.stdout.isEmpty, "\(what)")
            #expect(result.stderr.hasPrefix("\(path):\(line):1: expected a read, write or fetch on line \(line)"), "\(what): \(result.stderr)")
        }
    }
}

// MARK: Help

@Suite struct Help {
    @Test(arguments: ["run", "explain"])
    func subcommandHelpIncludesExamples(_ subcommand: String) throws {
        let result = try shadowmmu([subcommand, "--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("Examples:"), "\(result.stdout)")
        #expect(result.stdout.contains("shadowmmu \(subcommand) examples/"), "\(result.stdout)")
        // The same text in-process, through the library's public command type:
        // parsing `--help` yields ArgumentParser's help command, whose `run()`
        // throws the help request that `main()` would print.
        var command = try ShadowMMUCommand.parseAsRoot([subcommand, "--help"])
        do {
            try command.run()
            Issue.record("--help did not ask for help")
        } catch {
            let message = ShadowMMUCommand.fullMessage(for: error, columns: 80)
            #expect(message.contains("Examples:"))
            #expect(message.contains("shadowmmu \(subcommand) examples/"))
            #expect(ShadowMMUCommand.exitCode(for: error) == .success)
        }
    }

    /// Every subcommand's help screen: exit 0, the usage line names the
    /// subcommand, and no escape or layout debris (a stray backslash from a
    /// `\\` in a multi-line string, a tab, a doubled space inside a sentence).
    @Test(arguments: ShadowMMUCommand.configuration.subcommands.map { $0._commandName })
    func everySubcommandsHelpIsClean(_ subcommand: String) throws {
        let result = try shadowmmu([subcommand, "--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("USAGE: shadowmmu \(subcommand)"), "\(result.stdout)")
        for (number, line) in result.stdout.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            #expect(!line.contains("\\"), "help \(subcommand), line \(number + 1): a backslash: \(line)")
            #expect(!line.contains("\t"), "help \(subcommand), line \(number + 1): a tab: \(line)")
            let text = line.trimmingCharacters(in: .whitespaces)
            if !text.hasPrefix("-"), !text.hasPrefix("<"), !text.hasPrefix("shadowmmu ") {
                #expect(!text.contains(".  ") && !text.contains(",  "), "help \(subcommand), line \(number + 1): a doubled space: \(line)")
            }
        }
    }

    @Test func rootHelpListsBothSubcommandsWithExamples() throws {
        let result = try shadowmmu(["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("Examples:"))
        #expect(result.stdout.contains("run") && result.stdout.contains("explain"))
    }

    @Test func argumentsParseInProcess() throws {
        let run = try ShadowMMUCommand.parseAsRoot(["run", "examples/4-level.scenario", "--stats", "--dump-shadow"])
        #expect(String(describing: type(of: run)) == "Run")
        let explain = try ShadowMMUCommand.parseAsRoot(["explain", "examples/4-level.scenario", "--line", "22", "--json"])
        #expect(String(describing: type(of: explain)) == "Explain")
        #expect(throws: (any Error).self) { try ShadowMMUCommand.parseAsRoot(["explain", "examples/4-level.scenario"]) }
    }

    /// Every `shadowmmu …` example line printed by a help screen works as shown.
    @Test(arguments: ["", "run", "explain"])
    func theExamplesInTheHelpWork(_ subcommand: String) throws {
        let help = try shadowmmu(subcommand.isEmpty ? ["--help"] : [subcommand, "--help"])
        let examples = help.stdout.split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("shadowmmu ") }
        #expect(!examples.isEmpty)
        for example in examples {
            let arguments = example.split(separator: " ").dropFirst().map(String.init)
            let result = try shadowmmu(arguments)
            #expect(result.status == 0, "'\(example)' exited \(result.status): \(result.stderr)")
            #expect(!result.stdout.isEmpty, "'\(example)' printed nothing")
        }
    }
}
