import Foundation
import Testing

// `shadowmmu draw` and `shadowmmu report` through the built executable, and
// the report's check in a real headless browser (scripts/check-report.sh).

/// An executable named `name` on PATH, if any.
private func onPath(_ names: [String]) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    for name in names {
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
    }
    return nil
}

private let graphviz = onPath(["dot"])
private let chromium = ProcessInfo.processInfo.environment["CHROMIUM"] ?? onPath(["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"])

/// Runs `program ARGUMENTS` in the package root with `environment` added to
/// (or, for PATH, replacing in) the test's own.
private func runProcess(_ program: URL, _ arguments: [String], environment: [String: String] = [:]) throws -> ToolResult {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("shadowmmu-draw-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let outURL = scratch.appendingPathComponent("stdout"), errURL = scratch.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
    let process = Process()
    process.executableURL = program
    process.arguments = arguments
    process.currentDirectoryURL = packageRoot
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = out
    process.standardError = err
    try process.run()
    process.waitUntilExit()
    try out.close()
    try err.close()
    return ToolResult(
        status: process.terminationStatus, stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
        stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
}

/// A fresh temporary folder for output files.
private func withFolder<T>(_ body: (URL) throws -> T) throws -> T {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("shadowmmu-out-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    return try body(folder)
}

@Suite("draw and report commands")
struct DrawReportCommandTests {
    @Test func drawPrintsDOTOfBothSides() throws {
        let result = try shadowmmu(["draw", "examples/shadow-pae.scenario"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasPrefix("digraph page_tables {"))
        #expect(result.stdout.hasSuffix("}\n"))
        #expect(result.stdout.contains("subgraph cluster_guest") && result.stdout.contains("subgraph cluster_hypervisor"))
        #expect(result.stdout.contains("examples/shadow-pae.scenario at the end — mmu shadow host=64bit"))
        #expect(result.stderr.isEmpty)
    }

    @Test func drawAtALineWritesAFile() throws {
        try withFolder { folder in
            let path = folder.appendingPathComponent("pae.dot").path
            let result = try shadowmmu(["draw", "examples/shadow-pae.scenario", "--at", "48", "-o", path, "--max-entries", "1"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.isEmpty)
            let dot = try String(contentsOfFile: path, encoding: .utf8)
            #expect(dot.contains("after line 48"))
            #expect(dot.contains("<I>unsync</I>"), "the PT's shadow is unsync after the store on line 48")
            #expect(dot.contains("… 1 more present entry (not shown)"))
        }
    }

    @Test func drawRejectsBadInputWithStatus2() throws {
        let past = try shadowmmu(["draw", "examples/shadow-pae.scenario", "--at", "54"])
        #expect(past.status == 2)
        #expect(past.stderr == "examples/shadow-pae.scenario:54:1: expected --at to name a line of the scenario (1…53), found 54\n")
        #expect(past.stdout.isEmpty)
        let zero = try shadowmmu(["draw", "examples/shadow-pae.scenario", "--at", "0"])
        #expect(zero.status == 2)
        #expect(zero.stderr.contains("expected --at to name a line of the scenario (1…53), found 0"))
        let missing = try shadowmmu(["draw", "examples/no-such.scenario"])
        #expect(missing.status == 2)
        #expect(missing.stderr.hasPrefix("examples/no-such.scenario:1:1: expected a readable scenario file, found no such file"))
        try withScenarioFile("bad.scenario", "machine memory=64M\nread 0xzz\n") { path in
            let bad = try shadowmmu(["draw", path])
            #expect(bad.status == 2)
            #expect(bad.stderr.contains("bad.scenario:2:"), "\(bad.stderr)")
        }
        let format = try shadowmmu(["draw", "examples/shadow-pae.scenario", "--format", "png"])
        #expect(format.status == 2, "an unknown format is unusable input")
        #expect(format.stderr.contains("png"))
    }

    @Test func svgWithoutGraphvizSaysHowToInstallIt() throws {
        let binary = try shadowmmuBinary.get()
        let result = try runProcess(binary, ["draw", "examples/shadow-pae.scenario", "--format", "svg"], environment: ["PATH": "/nonexistent"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("apt-get install graphviz"), "\(result.stderr)")
        #expect(result.stderr.contains("--format dot"))
        #expect(result.stdout.isEmpty)
    }

    @Test(.enabled(if: graphviz != nil, "draw --format svg check did not run: no Graphviz 'dot' on PATH (apt-get install graphviz)"))
    func svgThroughGraphviz() throws {
        for example in ["shadow-pae.scenario", "shadow-32-bit.scenario", "tdp-ept.scenario", "4-level.scenario", "multi-vcpu.scenario"] {
            let result = try shadowmmu(["draw", "examples/" + example, "--format", "svg"])
            #expect(result.status == 0, "\(example): \(result.stderr)")
            #expect(result.stdout.contains("<svg") && result.stdout.contains("</svg>"), "\(example)")
            #expect(result.stderr.isEmpty, "\(example): Graphviz warned: \(result.stderr)")
        }
    }

    @Test func reportWritesOneSelfContainedPage() throws {
        try withFolder { folder in
            let path = folder.appendingPathComponent("report.html").path
            let result = try shadowmmu(["report", "examples/shadow-pae.scenario", "--at", "30", "--at", "48", "-o", path])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout == "\(path): 32 commands (5 ok, 2 faults, 0 #GP), 2 table pictures\n")
            let html = try String(contentsOfFile: path, encoding: .utf8)
            for hook in ["id=\"summary\"", "id=\"listing\"", "id=\"timeline-chart\"", "id=\"counters-chart\"", "id=\"tables-at-30\"", "id=\"tables-at-48\""] {
                #expect(html.contains(hook), "\(hook)")
            }
            #expect(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"))
        }
    }

    @Test func reportRejectsBadInputWithStatus2() throws {
        try withFolder { folder in
            let path = folder.appendingPathComponent("report.html").path
            let bad = try shadowmmu(["report", "examples/shadow-pae.scenario", "--at", "30", "--at", "99", "-o", path])
            #expect(bad.status == 2)
            #expect(bad.stderr == "examples/shadow-pae.scenario:99:1: expected --at to name a line of the scenario (1…53), found 99\n")
            #expect(!FileManager.default.fileExists(atPath: path), "nothing is written")
            let missing = try shadowmmu(["report", "nope.scenario", "-o", path])
            #expect(missing.status == 2)
            #expect(missing.stderr.contains("nope.scenario:1:1: expected a readable scenario file"))
            let unwritable = try shadowmmu(["report", "examples/shadow-pae.scenario", "-o", folder.appendingPathComponent("no/such/dir/r.html").path])
            #expect(unwritable.status == 2)
            #expect(unwritable.stderr.contains("cannot write the file (-o): the folder \(folder.appendingPathComponent("no/such/dir").path) does not exist"), "\(unwritable.stderr)")
        }
        let noOutput = try shadowmmu(["report", "examples/shadow-pae.scenario"])
        #expect(noOutput.status != 0)
        #expect(noOutput.stderr.contains("--output"), "the missing option is named: \(noOutput.stderr)")
    }

    /// scripts/check-report.sh with `arguments`, as the tests run it.
    private func checkReport(_ arguments: [String]) throws -> ToolResult {
        let binary = try shadowmmuBinary.get()
        return try runProcess(
            URL(fileURLWithPath: "/bin/bash"), [packageRoot.appendingPathComponent("scripts/check-report.sh").path] + arguments,
            environment: ["SHADOWMMU_BINARY": binary.path] + (chromium.map { ["CHROMIUM": $0] } ?? [:]))
    }

    /// The pages in a real browser: scripts/check-report.sh writes a report
    /// for each scenario of its built-in list (PAE and 32-bit guests under
    /// shadow paging, EPT, nested EPT, nested NPT, a long run), loads each in
    /// headless Chromium, checks the rendered DOM's key elements, measures
    /// the layout (no picture past its box, no overlapping titles or labels)
    /// and that a screenshot is not blank.
    @Test(.enabled(if: chromium != nil, "browser check did not run: no chromium (apt-get install -y chromium)"))
    func reportRendersInHeadlessChromium() throws {
        let result = try checkReport([])
        print(result.stdout, terminator: "")
        #expect(result.status != 77, "browser check did not run: \(result.stdout)\(result.stderr)")
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        for scenario in ["shadow-pae", "shadow-32-bit", "tdp-ept", "nested-ept", "nested-npt-pae"] {
            #expect(result.stdout.contains("browser check passed: examples/\(scenario).scenario: "), "\(scenario): \(result.stdout)")
        }
        #expect(result.stdout.contains("browser check passed: long-run-fork.scenario: "), "\(result.stdout)")
        #expect(result.stdout.hasSuffix("browser check passed: 6 reports\n"), "\(result.stdout)")
    }

    /// The layout check can fail: on a page whose picture is wider than its
    /// figure, whose two column titles overlap and whose label lies outside
    /// the picture, it exits 1 and names each problem.
    @Test(.enabled(if: chromium != nil, "browser check did not run: no chromium (apt-get install -y chromium)"))
    func brokenPageFailsTheBrowserCheck() throws {
        let result = try checkReport(["--page", "Tests/ShadowMMUCommandsTests/Fixtures/broken-report.html"])
        print(result.stdout, terminator: "")
        #expect(result.status != 77, "browser check did not run: \(result.stdout)\(result.stderr)")
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        let problems = result.stdout.split(separator: "\n").filter { $0.hasPrefix("  - ") }
        #expect(problems.count == 3, "\(result.stdout)")
        #expect(problems.contains { $0.hasPrefix("  - overflow: svg#broken-svg.page-tables: reaches past figure#tables-at-1 on the right by 300 px") },
                "\(result.stdout)")
        #expect(problems.contains {
            $0.hasPrefix("  - overlap: text.side-heading.side-guest in svg#broken-svg \"left column title, far too long for its side\" and "
                + "text.side-heading.side-hypervisor in svg#broken-svg \"right column title\": overlap by ")
        }, "\(result.stdout)")
        #expect(problems.contains { $0.hasPrefix("  - clipped: text.entry in svg#broken-svg \"label past the edge\": outside the picture on the right by ") },
                "\(result.stdout)")
    }
}

private func + (a: [String: String], b: [String: String]) -> [String: String] { a.merging(b) { _, new in new } }
