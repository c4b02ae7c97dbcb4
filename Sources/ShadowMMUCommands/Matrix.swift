import ArgumentParser
import Foundation
import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ScenarioVisualization

/// `shadowmmu matrix`: every MMU configuration on every guest mode, checked.
struct Matrix: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a built-in workload under every MMU configuration and guest paging mode, check each against the architecture, and print a table.",
        discussion: """
            The workload is a generated guest per paging mode (demand faults, page-table edits with \
            and without invalidation, CR3 switches between address spaces, huge pages, control-register \
            changes, host events). Columns: the configuration, the guest mode, the root's shape \
            (levels, of which local), exits to the hypervisor, shadow or TDP pages at the end, faults \
            the hypervisor fixed, page faults delivered to the guest, memory references per hardware \
            walk (two-dimensional walks), and the checker's verdict: pass, 'deviation NAME' (the \
            difference disappears with --fix NAME: known KVM behaviour), or FAIL. Exit status 1 if \
            any row fails (or, with --strict, shows a deviation).

            Examples:
              shadowmmu matrix
              shadowmmu matrix --seed 7 --length 100
            """
    )

    @Option(parsing: .unconditional, help: "Seed of the workload. (default: 1)", transform: NumericOption.parser(0...UInt64.max))
    var seed: UInt64 = 1

    @Option(
        parsing: .unconditional, help: "Operations in each guest's workload, 1 to \(Fuzz.maximumLength) (memory grows about 400 bytes per operation). (default: 300)",
        transform: NumericOption.parser(1...Fuzz.maximumLength))
    var length: Int = 300

    @OptionGroup var fix: FixOption

    @OptionGroup var roots: RootsOption

    @OptionGroup var strict: StrictOption

    @Flag(help: "Print JSON Lines: one object per row (configuration and guest), then a summary object (docs/commands.md#json-output).")
    var json = false

    @OptionGroup var output: OutputOptions

    func run() throws {
        let stdout = OutputStream.standardOutput
        let rows: [MatrixRow]
        do {
            let progress = output.progressLine()
            defer { progress.clear() }
            rows = try ConfigurationMatrix.run(seed: seed, length: length, fixes: fix.fixes, configurations: roots.configurations) { done, total, mode in
                progress.update("matrix \(mode)", done: done, total: total)
                if output.verbose { progress.message("matrix: checking \(mode) guests under every configuration") }
            }
        } catch {
            OutputStream.standardError.writeLine(error.description)
            throw ExitCode(2)
        }
        if json { return try printJSON(rows, to: stdout) }
        let header = ["configuration", "guest", "root", "exits", "pages", "fixed", "guest #PF", "refs/walk", "verdict"]
        let table = rows.map { row -> [String] in
            [
                "\(row.configuration)".replacingOccurrences(of: "mmu ", with: ""), row.guest,
                row.rootShape, "\(row.exits)", "\(row.pages)", "\(row.faultsFixed)",
                "\(row.guestFaults)", row.referencesPerWalk.map { String(format: "%.1f", $0) } ?? "-", row.verdict.description,
            ]
        }
        Self.print(header: header, table, to: stdout)
        if roots.designs.count > 1 { printDesignsSideBySide(rows, to: stdout) }
        let tally = Self.tally(rows)
        var summary = "\(tally.passes)/\(rows.count) configurations × guest modes match the architecture"
        if tally.passes < rows.count { summary += ", \(tally.deviationPart), \(tally.failures) FAIL" }
        stdout.writeLine(summary)
        stdout.flush()
        if rows.contains(where: { $0.verdict.isFailure(strict: strict.strict) }) { throw ExitCode(1) }
    }

    static func tally(_ rows: [MatrixRow]) -> VerdictTally {
        var tally = VerdictTally()
        for row in rows { tally.add([row.checkerVerdict]) }
        return tally
    }

    /// `--json`: one object per row, then the summary.
    func printJSON(_ rows: [MatrixRow], to stdout: OutputStream) throws {
        for row in rows {
            var fields: [(String, JSONValue)] = [
                ("mmu", .string(row.configuration.scenarioText)), ("guest", .string(row.guest)),
                ("root_levels", .number(row.rootLevels)), ("local_levels", .number(row.localLevels)),
                ("special_root", .bool(row.specialRoot)), ("passthrough", .bool(row.passthrough)),
                ("exits", .number(row.exits)), ("pages", .number(row.pages)), ("faults_fixed", .number(row.faultsFixed)),
                ("guest_faults", .number(row.guestFaults)), ("roots_built", .number(row.rootsBuilt)), ("roots_freed", .number(row.rootsFreed)),
                ("table_kib", .number(row.tableKiB)),
                ("references_per_walk_x100", row.referencesPerWalk.map { .number(Int(($0 * 100).rounded())) } ?? .null),
            ]
            fields += VerdictJSON.fields(row.checkerVerdict)
            switch row.verdict {
            case .pass: fields.append(("first_difference", .null))
            case .deviation(_, let first), .fail(let first): fields.append(("first_difference", .string(first)))
            }
            stdout.writeLine(JSONValue.object(fields).encoded)
        }
        stdout.writeLine(JSONValue.object([("summary", Self.tally(rows).json)]).encoded)
        stdout.flush()
        if rows.contains(where: { $0.verdict.isFailure(strict: strict.strict) }) { throw ExitCode(1) }
    }

    /// Prints `table` under `header`, columns padded to their widest cell.
    static func print(header: [String], _ table: [[String]], to stdout: OutputStream) {
        let widths = header.indices.map { column in ([header] + table).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        stdout.writeLine(line(header))
        table.forEach { stdout.writeLine(line($0)) }
    }

    /// The costs of each root design, side by side, for every configuration
    /// and guest that ran under more than one (the designs differ only where
    /// a root has no guest table of its shape; elsewhere the run is skipped).
    func printDesignsSideBySide(_ rows: [MatrixRow], to stdout: OutputStream) {
        struct Key: Hashable { var configuration: String, guest: String }
        var byKey: [Key: [RootsDesign: MatrixRow]] = [:]
        var order: [Key] = []
        for row in rows {
            let key = Key(configuration: row.configuration.with(roots: .local).description.replacingOccurrences(of: "mmu ", with: ""), guest: row.guest)
            if byKey[key] == nil { order.append(key) }
            byKey[key, default: [:]][row.configuration.roots] = row
        }
        let designs = roots.designs
        var header = ["configuration", "guest"]
        for design in designs { header += ["\(design): root", "exits", "fixed", "pages", "KiB", "roots +/-"] }
        var table: [[String]] = []
        for key in order {
            guard let cells = byKey[key], cells.count > 1 else { continue }
            var line = [key.configuration, key.guest]
            for design in designs {
                guard let row = cells[design] else {
                    line += ["-", "-", "-", "-", "-", "-"]
                    continue
                }
                line += [row.rootShape, "\(row.exits)", "\(row.faultsFixed)", "\(row.pages)", "\(row.tableKiB)", "\(row.rootsBuilt)/\(row.rootsFreed)"]
            }
            table.append(line)
        }
        guard !table.isEmpty else { return }
        stdout.writeLine("")
        stdout.writeLine("Root designs side by side (exits to the hypervisor, faults fixed, hashed pages and host table memory at the end, roots built/freed):")
        Self.print(header: header, table, to: stdout)
    }
}

extension MatrixRow {
    /// The row's verdict in the checker's terms (without its first difference).
    var checkerVerdict: DifferentialChecker.Verdict {
        switch verdict {
        case .pass: .pass
        case .deviation(let deviations, _): .deviation(deviations)
        case .fail: .fail
        }
    }
}
