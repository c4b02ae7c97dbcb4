import Foundation
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing

// Every example in the documentation runs here, so that the docs cannot drift
// from the tool. The documentation is README.md, every Markdown file under
// docs/, and the DocC catalogues under Sources/*/*.docc. Its fenced blocks
// follow three conventions (docs/README.md explains them to writers):
//
// - ```scenario: a complete scenario with `expect` lines. It must parse, run
//   under its own `mmu` line with every expectation holding, and pass the
//   differential checker under every other configuration that can run it.
// - ```console: `$ shadowmmu ARGUMENTS` lines, run from the package root, each
//   followed by the output it prints (standard output and error as a terminal
//   shows them). A line `...` stands for any number of lines, a line ending in
//   `...` for a line that begins with what precedes it; a command with no
//   output shown is checked for its exit status only. The exit status must be 0
//   unless the command line ends with a comment `# exit N`.
// - ```swift in a DocC catalogue: the code must appear, line for line, in a
//   test under Tests/, where it is compiled and run.
//
// Build instructions (`swift build`, `swift test`) go in ```sh blocks and a
// command's usage with placeholders in ```synopsis blocks; neither is run. A failure names the documentation file and the line of the
// block's opening fence.

// MARK: Finding the blocks

/// A fenced code block of a documentation file.
struct DocumentationBlock: Sendable, CustomTestStringConvertible {
    /// Path relative to the package root.
    var file: String
    /// Line of the opening fence (1-based).
    var line: Int
    /// The fence's info string (`scenario`, `console`, …), empty if none.
    var language: String
    /// The lines between the fences.
    var lines: [String]

    var location: String { "\(file):\(line)" }
    var testDescription: String { "\(location) (```\(language))" }
    var text: String { lines.joined(separator: "\n") + "\n" }
}

enum Documentation {
    /// README.md, docs/**/*.md and Sources/*/*.docc/**/*.md, sorted.
    static let files: [String] = {
        let fileManager = FileManager.default
        var files = ["README.md"]
        func markdown(under folder: String) -> [String] {
            let root = packageRoot.appendingPathComponent(folder)
            guard let enumerator = fileManager.enumerator(atPath: root.path) else { return [] }
            return enumerator.compactMap { $0 as? String }.filter { $0.hasSuffix(".md") }.map { folder + "/" + $0 }
        }
        files += markdown(under: "docs")
        let sources = (try? fileManager.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("Sources").path)) ?? []
        for module in sources {
            let catalogues = (try? fileManager.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("Sources/" + module).path)) ?? []
            for catalogue in catalogues where catalogue.hasSuffix(".docc") {
                files += markdown(under: "Sources/\(module)/\(catalogue)")
            }
        }
        return files.sorted()
    }()

    /// Every fenced block of every documentation file.
    static let blocks: [DocumentationBlock] = files.flatMap { file -> [DocumentationBlock] in
        guard let text = try? String(contentsOf: packageRoot.appendingPathComponent(file), encoding: .utf8) else { return [] }
        return fencedBlocks(in: text, file: file)
    }

    static func blocks(_ language: String) -> [DocumentationBlock] { blocks.filter { $0.language == language } }

    /// Blocks fenced with three or more backticks; the closing fence is the
    /// first line of at least as many backticks and nothing else.
    static func fencedBlocks(in text: String, file: String) -> [DocumentationBlock] {
        var blocks: [DocumentationBlock] = []
        var open: (line: Int, fence: String, language: String, indent: Int)?
        var body: [String] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            let trimmed = line.drop { $0 == " " }
            if let current = open {
                if trimmed.hasPrefix(current.fence), trimmed.allSatisfy({ $0 == "`" || $0 == " " }) {
                    blocks.append(DocumentationBlock(file: file, line: current.line, language: current.language, lines: body))
                    open = nil
                } else {
                    // Drop the fence's own indentation (fences inside list items).
                    var content = Substring(line)
                    var dropped = 0
                    while dropped < current.indent, content.first == " " {
                        content = content.dropFirst()
                        dropped += 1
                    }
                    body.append(String(content))
                }
            } else if trimmed.hasPrefix("```") {
                let fence = String(trimmed.prefix { $0 == "`" })
                let info = trimmed.dropFirst(fence.count).trimmingCharacters(in: .whitespaces)
                open = (index + 1, fence, info.split(separator: " ").first.map(String.init) ?? "", line.count - trimmed.count)
                body = []
            }
        }
        return blocks
    }
}

// MARK: Console blocks

/// One `$ shadowmmu …` line of a console block and the output shown under it.
struct ConsoleCommand {
    /// Line of the command in the documentation file.
    var line: Int
    var arguments: [String]
    var expectedStatus: Int32
    var expectedOutput: [String]

    /// Splits a console block into commands; a problem (a `$` line that is
    /// not a shadowmmu command, output before any command) is returned as a
    /// message.
    static func parse(_ block: DocumentationBlock) -> ([ConsoleCommand], [String]) {
        var commands: [ConsoleCommand] = []
        var problems: [String] = []
        for (offset, raw) in block.lines.enumerated() {
            let line = block.line + 1 + offset
            if raw.hasPrefix("$ ") {
                var command = String(raw.dropFirst(2))
                var status: Int32 = 0
                if let hash = command.range(of: " #") {
                    let comment = command[hash.upperBound...].trimmingCharacters(in: .whitespaces)
                    command = String(command[..<hash.lowerBound])
                    if comment.hasPrefix("exit ") {
                        guard let value = Int32(comment.dropFirst(5).trimmingCharacters(in: .whitespaces)) else {
                            problems.append("\(block.file):\(line): expected '# exit N' with a number, found '# \(comment)'")
                            continue
                        }
                        status = value
                    }
                }
                let words = command.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                guard words.first == "shadowmmu" else {
                    problems.append(
                        "\(block.file):\(line): a console block runs only '$ shadowmmu …' lines (put build commands in a ```sh block), found '\(raw)'")
                    continue
                }
                commands.append(ConsoleCommand(line: line, arguments: expandGlobs(Array(words.dropFirst())), expectedStatus: status, expectedOutput: []))
            } else if commands.isEmpty {
                if !raw.trimmingCharacters(in: .whitespaces).isEmpty {
                    problems.append("\(block.file):\(line): output shown before any '$ shadowmmu' command: '\(raw)'")
                }
            } else {
                commands[commands.count - 1].expectedOutput.append(raw)
            }
        }
        for index in commands.indices {
            while let last = commands[index].expectedOutput.last, last.trimmingCharacters(in: .whitespaces).isEmpty {
                commands[index].expectedOutput.removeLast()
            }
        }
        return (commands, problems)
    }

    /// The shell's `*` expansion, in the last path component, relative to the package root.
    static func expandGlobs(_ words: [String]) -> [String] {
        words.flatMap { word -> [String] in
            guard word.contains("*") else { return [word] }
            let folder = (word as NSString).deletingLastPathComponent
            let pattern = (word as NSString).lastPathComponent
            let names = (try? FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent(folder).path)) ?? []
            let matches = names.filter { fnmatch(pattern, $0, 0) == 0 }.sorted()
            return matches.isEmpty ? [word] : matches.map { folder.isEmpty ? $0 : folder + "/" + $0 }
        }
    }
}

/// Runs the built `shadowmmu` with standard output and error going to one
/// file, as a terminal interleaves them.
func shadowmmuAsInATerminal(_ arguments: [String]) throws -> (status: Int32, output: [String]) {
    let binary = try shadowmmuBinary.get()
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("shadowmmu-doc-\(UUID().uuidString)")
    FileManager.default.createFile(atPath: url.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: url) }
    let handle = try FileHandle(forWritingTo: url)
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    process.currentDirectoryURL = packageRoot
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    process.waitUntilExit()
    try handle.close()
    let text = String(decoding: try Data(contentsOf: url), as: UTF8.self)
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0) }
    while let last = lines.last, last.trimmingCharacters(in: .whitespaces).isEmpty { lines.removeLast() }
    return (process.terminationStatus, lines)
}

/// Whether `actual` matches `expected`, where an expected line `...` stands
/// for any number of actual lines and a line ending in `...` for any line
/// that begins with the rest; trailing spaces are ignored.
func outputMatches(_ expected: [String], _ actual: [String]) -> Bool {
    func trim(_ line: String) -> Substring {
        var line = Substring(line)
        while line.last == " " { line.removeLast() }
        return line
    }
    func match(_ e: Int, _ a: Int) -> Bool {
        if e == expected.count { return a == actual.count }
        if expected[e] == "..." || expected[e] == "…" {
            return (a...actual.count).contains { match(e + 1, $0) }
        }
        guard a < actual.count else { return false }
        let shown = trim(expected[e])
        let same = shown.hasSuffix("...") ? trim(actual[a]).hasPrefix(shown.dropLast(3)) : shown == trim(actual[a])
        return same && match(e + 1, a + 1)
    }
    return match(0, 0)
}

// MARK: The tests

@Suite struct DocumentationExamples {
    @Test func theDocumentationHasExamplesOfEveryKind() {
        // Guards the extractor: a change of fence style must not make every test below vacuous.
        let files = Set(Documentation.blocks.map(\.file))
        for file in ["README.md", "docs/getting-started.md", "docs/scenario-language.md", "docs/commands.md"] {
            #expect(Documentation.files.contains(file), "\(file) is missing")
        }
        #expect(Documentation.blocks("scenario").count >= 5, "found \(Documentation.blocks("scenario").count) scenario blocks")
        #expect(Documentation.blocks("console").count >= 10, "found \(Documentation.blocks("console").count) console blocks")
        #expect(Documentation.blocks("swift").count >= 4, "found \(Documentation.blocks("swift").count) swift blocks in the catalogues")
        #expect(files.contains("docs/getting-started.md") && files.contains("docs/scenario-language.md"))
    }

    @Test func everyExampleIsInABlockTheTestsRun() {
        // A scenario or a shadowmmu command fenced any other way would escape the tests.
        // A command's synopsis (```synopsis) shows placeholders, not an example.
        let run: Set<String> = ["scenario", "console", "swift", "synopsis"]
        for block in Documentation.blocks where !run.contains(block.language) {
            let code = block.lines.map { $0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "" }
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            #expect(
                code.first.map { !$0.hasPrefix("machine ") } ?? true,
                "\(block.location): a scenario in a ```\(block.language) block is not run by the tests; fence it as ```scenario")
            #expect(
                !code.contains { $0.hasPrefix("shadowmmu ") || $0.hasPrefix("$ shadowmmu ") },
                "\(block.location): a shadowmmu command in a ```\(block.language) block is not run by the tests; fence it as ```console with '$ shadowmmu …'")
        }
    }

    @Test(arguments: Documentation.blocks("scenario"))
    func scenarioRunsWithEveryExpectationHolding(_ block: DocumentationBlock) throws {
        // Blank lines before the block make diagnostics name the documentation file's own lines.
        let text = String(repeating: "\n", count: block.line) + block.text
        let scenario: Scenario
        do {
            scenario = try ScenarioParser.parse(text, fileName: block.file)
        } catch {
            Issue.record("\(block.location): the scenario does not parse: \(error)")
            return
        }
        #expect(
            scenario.commands.contains { if case .expect = $0.action { true } else { false } },
            "\(block.location): a documented scenario shows its results with 'expect' lines; this one has none")
        let runner = try ScenarioRunner(scenario)
        var failures: [String] = []
        runner.run(expectationFailed: { failures.append($0.description) })
        #expect(failures.isEmpty, "\(block.location): \(failures.joined(separator: "; "))")

        for report in try DifferentialChecker.check(scenario) where !report.passed {
            let details = (report.mismatches + report.auditFailures).prefix(3).joined(separator: "; ")
            Issue.record("\(block.location): under \(report.configuration) the guest saw something else than under the reference: \(details)")
        }
    }

    @Test(arguments: Documentation.blocks("console"))
    func consoleCommandsExitAndPrintAsShown(_ block: DocumentationBlock) throws {
        let (commands, problems) = ConsoleCommand.parse(block)
        for problem in problems { Issue.record(Comment(rawValue: problem)) }
        #expect(!commands.isEmpty || !problems.isEmpty, "\(block.location): a console block without a '$ shadowmmu' command")
        for command in commands {
            let where_ = "\(block.file):\(command.line)"
            let shown = "shadowmmu " + command.arguments.joined(separator: " ")
            let (status, output) = try shadowmmuAsInATerminal(command.arguments)
            #expect(
                status == command.expectedStatus,
                "\(where_): '\(shown)' exited \(status), the documentation says \(command.expectedStatus); it printed:\n\(output.prefix(20).joined(separator: "\n"))")
            if !command.expectedOutput.isEmpty {
                #expect(
                    outputMatches(command.expectedOutput, output),
                    "\(where_): '\(shown)' printed\n\(output.joined(separator: "\n"))\n— the documentation shows\n\(command.expectedOutput.joined(separator: "\n"))")
            }
        }
    }

    /// The code of every quick start lives in a test, where it is compiled and run.
    @Test(arguments: Documentation.blocks("swift"))
    func swiftCodeIsCompiledAndRunByATest(_ block: DocumentationBlock) throws {
        func normalized(_ lines: [String]) -> [String] {
            lines.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        let wanted = normalized(block.lines)
        #expect(!wanted.isEmpty, "\(block.location): an empty swift block")
        let testsFolder = packageRoot.appendingPathComponent("Tests")
        let files = (FileManager.default.enumerator(atPath: testsFolder.path)?.compactMap { $0 as? String } ?? []).filter { $0.hasSuffix(".swift") }
        let found = try files.contains { path in
            let lines = normalized(try String(contentsOf: testsFolder.appendingPathComponent(path), encoding: .utf8)
                .split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
            guard lines.count >= wanted.count else { return false }
            return (0...(lines.count - wanted.count)).contains { Array(lines[$0..<($0 + wanted.count)]) == wanted }
        }
        #expect(found, "\(block.location): this Swift code appears in no test under Tests/ (copy it, line for line, into a test that runs it)")
    }

    // The conventions the tests above rely on, checked on small inputs.

    @Test func outputMatchingTreatsAnEllipsisAsAnyLines() {
        #expect(outputMatches(["a", "...", "d"], ["a", "b", "c", "d"]))
        #expect(outputMatches(["a", "...", "b"], ["a", "b"]))
        #expect(outputMatches(["a  "], ["a"]))
        #expect(!outputMatches(["a", "d"], ["a", "b", "d"]))
        #expect(!outputMatches(["a"], ["a", "b"]))
        #expect(!outputMatches(["a", "...", "e"], ["a", "b", "c", "d"]))
        #expect(outputMatches(["{\"a\":1,..."], ["{\"a\":1,\"b\":2}"]))
        #expect(!outputMatches(["{\"a\":2,..."], ["{\"a\":1,\"b\":2}"]))
    }

    @Test func consoleBlocksSplitIntoCommandsWithStatusAndOutput() {
        let block = DocumentationBlock(
            file: "x.md", line: 10, language: "console",
            lines: ["$ shadowmmu run a.scenario", "line one", "", "$ shadowmmu run b.scenario   # exit 2", "error", "$ swift build"])
        let (commands, problems) = ConsoleCommand.parse(block)
        #expect(commands.count == 2)
        #expect(commands.first?.line == 11 && commands.first?.arguments == ["run", "a.scenario"])
        #expect(commands.first?.expectedOutput == ["line one"] && commands.first?.expectedStatus == 0)
        #expect(commands.last?.expectedStatus == 2 && commands.last?.expectedOutput == ["error"])
        #expect(problems.count == 1 && problems[0].hasPrefix("x.md:16:"))
    }

    @Test func fencesInsideListItemsAreFound() {
        let text = "intro\n\n1. Step:\n\n   ```scenario\n   machine memory=1M\n   ```\n\n````md\n```scenario\n````\n"
        let blocks = Documentation.fencedBlocks(in: text, file: "x.md")
        #expect(blocks.count == 2)
        #expect(blocks.first?.line == 5 && blocks.first?.language == "scenario" && blocks.first?.lines == ["machine memory=1M"])
        #expect(blocks.last?.language == "md" && blocks.last?.lines == ["```scenario"])
    }
}
