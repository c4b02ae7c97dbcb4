import KVMCatalogue
import ArgumentParser
import Foundation
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ShadowMMU

/// `shadowmmu zoo`: the bug zoo as the checker's exam. For each historical
/// bug (`--regress NAME`), how many fuzzed guests it takes to catch it, and
/// which shipped scenarios catch it.
struct Zoo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Switch each historical KVM MMU bug back on and measure how soon fuzz and check catch it.",
        discussion: """
            For every entry of the bug zoo (the names --regress takes), run the guests of 'fuzz' \
            at default settings (every mode, round robin from seed 0, 200 operations) with that \
            bug switched on, and report the first guest that fails (its number counts from 1 in \
            fuzz's order); then run 'check' with the bug on over the shipped scenarios \
            (examples/, Tests/ShadowMMUTests/Regressions/ and Deviations/, under --root) and \
            count the files that fail, the entry's own scenario apart. Exit status 0 when fuzz \
            catches every entry within --limit guests, 1 when one escapes.

            Examples:
              shadowmmu zoo
              shadowmmu zoo cr0-wp-not-in-role --limit 50
              shadowmmu zoo --json --no-check
            """
    )

    @Argument(help: "Entries to measure: names, or parts of names (every entry when omitted).")
    var names: [String] = []

    @Option(parsing: .unconditional, help: "Guests fuzz may take, in all modes together, 1 to 1000000. (default: 200)", transform: NumericOption.parser(1...1_000_000))
    var limit = 200

    @Option(
        parsing: .unconditional, help: "Random operations per guest, 1 to \(Fuzz.maximumLength). (default: 200)",
        transform: NumericOption.parser(1...Fuzz.maximumLength))
    var length = 200

    @Flag(help: "Skip the check of the shipped scenarios.")
    var noCheck = false

    @Option(help: "The package root holding examples/ and Tests/ShadowMMUTests/.")
    var root = "."

    @Flag(help: "Print one JSON object per entry instead of the table.")
    var json = false

    @OptionGroup var output: OutputOptions

    func validate() throws {
        for name in names where Self.entries(matching: [name]).isEmpty {
            throw ValidationError("no zoo entry matches '\(name)'; the entries: \(Regression.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// The entries whose names contain one of `filters` (every entry for none).
    static func entries(matching filters: [String]) -> [Regression] {
        Regression.allCases.filter { entry in filters.isEmpty || filters.contains { entry.rawValue.contains($0) } }
    }

    /// What was measured for one entry.
    struct Result {
        let regression: Regression
        /// The first failing guest, if fuzz caught the bug within the limit.
        let caughtBy: FuzzCampaign.Guest?
        /// Guests run (up to the catch).
        let guests: Int
        /// Shipped scenario files that fail with the bug on, the entry's own
        /// scenario apart; nil when not checked.
        let failingScenarios: [String]?
        /// Whether the entry's own scenario fails with the bug on; nil when not checked.
        let ownScenarioFails: Bool?
        let seconds: Double
    }

    /// Runs fuzz's guests with `regression` on until one fails or `limit`
    /// guests have run.
    static func fuzz(_ regression: Regression, limit: Int, length: Int, progress: ProgressLine) throws -> (FuzzCampaign.Guest?, Int) {
        let families = GuestFamily.all
        let seeds = UInt64((limit + families.count - 1) / families.count)
        let campaign = FuzzCampaign(families: families, count: seeds, length: length, regressions: [regression])
        var caught: FuzzCampaign.Guest?
        var guests = 0
        try campaign.run(before: { _, _, _ in progress.update("zoo \(regression.rawValue)", done: guests, total: limit) }) { guest in
            guests = guest.ordinal
            if !guest.failures(strict: false).isEmpty {
                caught = guest
                return .stop
            }
            return guest.ordinal >= limit ? .stop : .proceed
        }
        return (caught, guests)
    }

    /// The shipped scenario files under `root`, sorted by path.
    static func shippedScenarios(root: String) -> [String] {
        let folders = ["examples", "Tests/ShadowMMUTests/Regressions", "Tests/ShadowMMUTests/Deviations"]
        return folders.flatMap { folder -> [String] in
            let path = root + "/" + folder
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            return names.filter { $0.hasSuffix(".scenario") }.sorted().map { path + "/" + $0 }
        }
    }

    /// The files of `scenarios` that fail `check` with `regression` on.
    static func failingScenarios(_ regression: Regression, among scenarios: [(path: String, scenario: Scenario)]) -> [String] {
        scenarios.filter { file in
            let reports = (try? DifferentialChecker.check(file.scenario, regressions: [regression])) ?? []
            return reports.contains { $0.verdict == .fail }
        }.map(\.path)
    }

    func run() throws {
        let stdout = OutputStream.standardOutput
        let progress = output.progressLine()
        var scenarios: [(path: String, scenario: Scenario)] = []
        if !noCheck {
            let paths = Self.shippedScenarios(root: root)
            guard !paths.isEmpty else {
                OutputStream.standardError.writeLine("zoo: no scenarios under \(root)/examples or \(root)/Tests/ShadowMMUTests; pass the package root with --root, or --no-check")
                throw ExitCode(2)
            }
            for path in paths {
                do {
                    scenarios.append((path, try ScenarioFile.load(path)))
                } catch {
                    OutputStream.standardError.writeLine(error.description)
                    throw ExitCode(2)
                }
            }
        }
        var results: [Result] = []
        for regression in Self.entries(matching: names) {
            let started = Date()
            let (caught, guests) = try Self.fuzz(regression, limit: limit, length: length, progress: progress)
            var failing: [String]?
            var own: Bool?
            if !noCheck {
                progress.update("zoo \(regression.rawValue): check", done: 0, total: 1)
                let all = Self.failingScenarios(regression, among: scenarios)
                let ownName = "/" + regression.rawValue + ".scenario"
                own = all.contains { $0.hasSuffix("/Regressions" + ownName) }
                failing = all.filter { !$0.hasSuffix("/Regressions" + ownName) }
            }
            let result = Result(
                regression: regression, caughtBy: caught, guests: guests, failingScenarios: failing, ownScenarioFails: own,
                seconds: Date().timeIntervalSince(started))
            results.append(result)
            progress.clear()
            if json { stdout.writeLine(Self.json(result, limit: limit).encoded) }
        }
        progress.clear()
        if !json { Self.table(results, limit: limit).forEach(stdout.writeLine) }
        stdout.flush()
        if results.contains(where: { $0.caughtBy == nil }) { throw ExitCode(1) }
    }

    /// The fuzz column: "guest 3 (pae seed 0)" or "not in 200".
    static func fuzzCell(_ result: Result, limit: Int) -> String {
        guard let guest = result.caughtBy else { return "not in \(result.guests)" }
        return "guest \(guest.ordinal) (\(guest.family) seed \(guest.seed))"
    }

    /// The check column: "own + 2 more (first: examples/pae.scenario)".
    static func checkCell(_ result: Result) -> String {
        guard let failing = result.failingScenarios, let own = result.ownScenarioFails else { return "not checked" }
        var text = own ? "own scenario" : "own scenario MISSES"
        if let first = failing.first {
            text += " + \(failing.count) more (\(URL(fileURLWithPath: first).lastPathComponent)\(failing.count > 1 ? ", …" : ""))"
        } else {
            text += " only"
        }
        return text
    }

    /// The printed table: a header, one row per entry, a summary line.
    static func table(_ results: [Result], limit: Int) -> [String] {
        let rows = results.map { [$0.regression.rawValue, fuzzCell($0, limit: limit), checkCell($0), $0.regression.metadata.commit ?? "—"] }
        let header = ["entry", "fuzz (first failing guest)", "check (shipped scenarios that fail)", "fix"]
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        let caught = results.filter { $0.caughtBy != nil }.count
        return [line(header)] + rows.map(line) + ["\(caught)/\(results.count) entries caught by fuzz within \(limit) guests"]
    }

    static func json(_ result: Result, limit: Int) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("entry", .string(result.regression.rawValue)),
            ("fix", .string(result.regression.metadata.fixTitle)),
            ("commit", result.regression.metadata.commit.map(JSONValue.string) ?? .null),
            ("summary", .string(result.regression.metadata.summary)),
            ("limit", .number(limit)),
            ("guests", .number(result.guests)),
        ]
        if let guest = result.caughtBy {
            fields.append(("caught", .object([("guest", .number(guest.ordinal)), ("mode", .string(guest.family.description)), ("seed", .number(Int(guest.seed)))])))
        } else {
            fields.append(("caught", .null))
        }
        if let failing = result.failingScenarios, let own = result.ownScenarioFails {
            fields.append(("check", .object([("own_scenario_fails", .bool(own)), ("other_failing_scenarios", .array(failing.map(JSONValue.string)))])))
        }
        fields.append(("seconds", .string(String(format: "%.1f", result.seconds))))
        return .object(fields)
    }
}
