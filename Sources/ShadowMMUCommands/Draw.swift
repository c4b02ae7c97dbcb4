import ArgumentParser
import Foundation
import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ScenarioVisualization

/// `shadowmmu draw FILE [--at LINE] [--format dot|svg] [-o OUT]`.
struct Draw: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the guest's page tables and the hypervisor's tables side by side (Graphviz).",
        discussion: """
            Runs the scenario up to and including --at LINE (default: to the end), then draws \
            the guest's page tables, walked from each vCPU's CR3 in its current paging mode, and \
            the hypervisor's tables reachable from each vCPU's root (shadow pages under 'mmu \
            shadow', the direct map under 'mmu tdp'), each table a node with its present \
            entries. Local shadow pages, unsync pages, write-protected guest tables and huge \
            mappings are coloured (see the legend); a dashed arrow goes from each shadow page \
            to the guest table it shadows. --format svg needs Graphviz's 'dot' on PATH.

            Examples:
              shadowmmu draw examples/shadow-pae.scenario -o pae.dot
              shadowmmu draw examples/shadow-pae.scenario --at 31 --format svg -o pae.svg
              shadowmmu draw examples/tdp-ept.scenario | dot -Tpng -o tdp.png
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case dot, svg
    }

    @Argument(help: "The scenario file (.scenario).")
    var file: String

    @Option(parsing: .unconditional, help: "Draw after this line has run (default: after the last).", transform: NumericOption.parser(0...lineLimit))
    var at: Int?

    @Option(help: "dot (Graphviz source) or svg (rendered by Graphviz's dot).")
    var format: Format = .dot

    @Option(name: .shortAndLong, help: "Write to this file instead of standard output.")
    var output: String?

    @Option(
        parsing: .unconditional, help: "List at most this many present entries per table (the rest are counted), 1 to \(maxEntriesLimit). (default: \(PageTableGraph.defaultMaxEntriesPerNode))",
        transform: NumericOption.parser(1...maxEntriesLimit))
    var maxEntries = PageTableGraph.defaultMaxEntriesPerNode

    @OptionGroup var mmu: MMUOption

    @OptionGroup var regression: RegressionOption

    @OptionGroup var fix: FixOption

    func run() throws {
        let stderr = OutputStream.standardError
        try checkOutput(output)
        let graph: PageTableGraph
        do {
            let source = try ScenarioSource.load(file)
            if let at { try PageTableGraph.checkLine(at, lineCount: source.lineCount, fileName: file) }
            graph = try PageTableGraph.draw(
                mmu.applied(to: source.scenario), at: at, maxEntriesPerNode: maxEntries,
                regressions: regression.regressions, fixes: fix.fixes)
        } catch {
            stderr.writeLine(error.description)
            throw ExitCode(2)
        }
        var text = graph.dot
        if format == .svg {
            guard let dot = Graphviz.dotExecutable() else {
                stderr.writeLine(
                    "shadowmmu draw: --format svg needs Graphviz's 'dot', which is not on PATH; install it "
                        + "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz) or use --format dot")
                throw ExitCode(2)
            }
            do {
                text = try Graphviz.render(text, dot: dot)
            } catch let failure as Graphviz.Failure {
                stderr.writeLine("shadowmmu draw: \(failure)")
                throw ExitCode(2)
            } catch {
                // Foundation's own error text names neither the folder nor what to do.
                stderr.writeLine(
                    "shadowmmu draw: cannot run Graphviz's dot through the temporary folder \(FileManager.default.temporaryDirectory.path): "
                        + "set TMPDIR to a writable folder, or use --format dot")
                throw ExitCode(2)
            }
        }
        try writeOutput(text, to: output)
    }
}

/// The largest line number `--line` and `--at` take (a scenario is read whole
/// first: its own length is the real limit, checked against the file; `--at`
/// takes 0 so that the file's check names the lines it has).
let lineLimit = 100_000_000

/// The largest `--max-entries`: a table has at most 1024 entries (32-bit paging).
let maxEntriesLimit = 1024

/// Writes a command's result to a file, or to standard output.
func writeOutput(_ text: String, to output: String?) throws {
    guard let output else {
        let stdout = OutputStream.standardOutput
        stdout.writeLine(text.hasSuffix("\n") ? String(text.dropLast()) : text)
        stdout.flush()
        return
    }
    do {
        try OutputPath(path: output, option: "-o").write(text)
    } catch {
        OutputStream.standardError.writeLine(error.description)
        throw ExitCode(2)
    }
}

/// Checks, before any work, that `-o` names a file that can be written.
func checkOutput(_ output: String?) throws {
    guard let output else { return }
    do {
        try OutputPath(path: output, option: "-o").checkFile()
    } catch {
        OutputStream.standardError.writeLine(error.description)
        throw ExitCode(2)
    }
}

/// A scenario file with its line count (for `--at`).
struct ScenarioSource {
    var scenario: Scenario
    var text: String
    var lineCount: Int { ScenarioReport.lines(of: text).count }

    static func load(_ path: String) throws(ScenarioError) -> ScenarioSource {
        let scenario = try ScenarioFile.load(path)
        let text = (FileManager.default.contents(atPath: path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return ScenarioSource(scenario: scenario, text: text)
    }
}

/// Graphviz's `dot`, run as a filter.
enum Graphviz {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `dot` on PATH, if any.
    static func dotExecutable() -> URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent("dot")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return nil
    }

    /// `dot -Tsvg` over `source`, through temporary files (no pipe to keep draining).
    static func render(_ source: String, dot: URL) throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("shadowmmu-draw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let input = folder.appendingPathComponent("tables.dot"), output = folder.appendingPathComponent("tables.svg")
        let messages = folder.appendingPathComponent("messages")
        try source.write(to: input, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: messages.path, contents: nil)
        let errors = try FileHandle(forWritingTo: messages)
        let process = Process()
        process.executableURL = dot
        process.arguments = ["-Tsvg", "-o", output.path, input.path]
        process.standardInput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        try errors.close()
        guard process.terminationStatus == 0, let svg = FileManager.default.contents(atPath: output.path) else {
            let message = String(decoding: (try? Data(contentsOf: messages)) ?? Data(), as: UTF8.self)
            throw Failure(description: "Graphviz's dot failed (status \(process.terminationStatus)): \(message)")
        }
        return String(decoding: svg, as: UTF8.self)
    }
}
