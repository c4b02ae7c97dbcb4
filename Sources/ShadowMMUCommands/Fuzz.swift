import KVMCatalogue
import Foundation
import ArgumentParser
import GuestWorkloads
import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ScenarioVisualization

/// `shadowmmu fuzz`: random guests through the differential checker.
struct Fuzz: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate random guests in every paging mode and check each configuration against the reference.",
        discussion: """
            Each guest is a scenario in which every page-table change is followed by the \
            invalidation that makes the outcome unique, so every configuration must match the \
            reference line for line. A guest that differs only where a KVM deviation is known \
            (the difference disappears with --fix) counts as that deviation, not as a failure, \
            unless --strict. A failing guest is written, whole and minimized, to the \
            --save-failures folder (default ./fuzz-failures) so that it can be replayed with \
            'shadowmmu check'.

            Examples:
              shadowmmu fuzz --count 200
              shadowmmu fuzz --mode pae --seed 5000 --count 1000 --length 400 --save-failures /tmp/fuzz
              shadowmmu fuzz --seed 5000 --count 1000 --json --shard 2/8 > shard-2.jsonl
            """
    )

    @Option(help: "Guest paging mode (nonpaging, 32-bit, 32-bit-pse, pae, 4-level, 5-level), or an L1 hypervisor's nested paging for nested guests (npt-32-bit, npt-pae, npt-4-level, npt-5-level, ept-4-level, ept-5-level); every one when omitted.")
    var mode: String?

    @Option(parsing: .unconditional, help: "Guests per mode, 1 to \(Self.maximumCount). (default: 100)", transform: NumericOption.parser(1...Self.maximumCount))
    var count: UInt64 = 100

    @Option(parsing: .unconditional, help: "Seed of the first guest; guest k uses seed+k (seed+count at most 2^64). (default: 0)", transform: NumericOption.parser(0...UInt64.max))
    var seed: UInt64 = 0

    @Option(
        parsing: .unconditional, help: "Random operations per guest, 1 to \(Self.maximumLength) (memory grows about 400 bytes per operation). (default: 200)",
        transform: NumericOption.parser(1...Self.maximumLength))
    var length: Int = 200

    static let maximumCount: UInt64 = 1_000_000_000
    /// A guest of this length holds about 40 MB (measured: 1M operations
    /// reach 370 MB, a debug build): the bound keeps a run far from a few GB.
    static let maximumLength = 100_000

    @OptionGroup var regression: RegressionOption

    @OptionGroup var fix: FixOption

    @OptionGroup var roots: RootsOption

    @OptionGroup var strict: StrictOption

    @Flag(help: "Run the guests the host's KVM can run on /dev/kvm instead, and compare architecture, model and KVM (as 'conform' does).")
    var kvm = false

    @Option(help: "Folder for failing guests: each is written as found and minimized (the folder is created at the first failure, in a parent that must exist).")
    var saveFailures = "fuzz-failures"

    @Option(help: "Folder to write every generated guest to, to study or replay them (created if missing, in a parent that must exist).")
    var saveAll: String?

    @Flag(help: "Print JSON Lines: one object per guest, one summary object per mode, then one for every mode (docs/commands.md#json-output).")
    var json = false

    @Option(
        parsing: .unconditional,
        help: "Guests generated and checked at once, 1 to 256 (default: this machine's cores); the output is the same as with --jobs 1, in the same order.",
        transform: NumericOption.parser(1...256))
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Run only shard K of N of the campaign (1 <= K <= N <= \(CampaignShard.maximumCount)): the campaign's guests, in order, cut into N contiguous ranges; 'shadowmmu merge' adds the shards' --json outputs up.",
            valueName: "K/N"),
        transform: ShardOption.parse)
    var shard: CampaignShard = .whole

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let mode, !GuestFamily.all.contains(where: { $0.description == mode }) {
            throw ValidationError("expected a mode among \(GuestFamily.all.map(\.description).joined(separator: ", ")), found '\(mode)'")
        }
        if kvm, !shard.isWhole {
            throw ValidationError("--shard cuts the model's campaign; --kvm runs its own guests one mode after the other: pass one of them")
        }
        guard seed <= UInt64.max - count else {
            throw ValidationError("--seed \(seed) with --count \(count) runs past the last seed (2^64 - 1): pass a --seed of at most \(UInt64.max - count)")
        }
    }

    /// Checks the output folders before any guest runs, and creates the
    /// --save-all one; a folder that cannot be used is exit status 2.
    func prepareFolders(progress: ProgressLine) throws {
        do {
            try OutputPath(path: saveFailures, option: "--save-failures").checkFolder()
            if let saveAll, try OutputPath(path: saveAll, option: "--save-all").createFolder(), output.verbose {
                progress.message("fuzz: created the folder \(saveAll) for --save-all")
            }
        } catch {
            OutputStream.standardError.writeLine(error.description)
            throw ExitCode(2)
        }
    }

    /// Writes a generated guest to the --save-all folder.
    func saveGenerated(_ text: String, name: String) throws {
        guard let saveAll else { return }
        try writeOrExit { () throws(OutputPath.Problem) in try ScenarioFile.save(text, to: saveAll + "/" + name, option: "--save-all") }
    }

    /// Runs `write`; a file that cannot be written ends the run with exit status 2.
    func writeOrExit(_ write: () throws(OutputPath.Problem) -> Void) throws {
        do { try write() } catch {
            OutputStream.standardOutput.flush()
            OutputStream.standardError.writeLine(error.description)
            throw ExitCode(2)
        }
    }

    /// Writes a failing guest to the --save-failures folder, whole and
    /// minimized to the fewest lines for which `stillFails` holds; returns
    /// both paths.
    func saveFailure(_ text: String, name: String, stillFails: (String) -> Bool) throws -> (whole: String, minimized: String, lines: Int) {
        let minimized = ScenarioMinimizer.minimize(text, stillFails: stillFails)
        let path = saveFailures + "/" + name
        let minimizedPath = saveFailures + "/" + name.replacingOccurrences(of: ".scenario", with: "-min.scenario")
        try writeOrExit { () throws(OutputPath.Problem) in
            try OutputPath(path: saveFailures, option: "--save-failures").createFolder()
            try ScenarioFile.save(text, to: path, option: "--save-failures")
            try ScenarioFile.save(minimized + "\n", to: minimizedPath, option: "--save-failures")
        }
        return (path, minimizedPath, minimized.split(separator: "\n").count)
    }

    func run() throws {
        if kvm { return try runOnKVM() }
        let stdout = OutputStream.standardOutput
        let progress = output.progressLine()
        try prepareFolders(progress: progress)
        let families = GuestFamily.all.filter { mode == nil || $0.description == mode }
        // Round robin over the families, seed by seed, so that the first guests
        // already cover every paging mode (a deviation that needs long mode or
        // PAE is met early); each family's summary follows at the end.
        var tallies = Array(repeating: VerdictTally(), count: families.count)
        let campaign = FuzzCampaign(
            families: families, firstSeed: seed, count: count, length: length, regressions: regression.regressions, fixes: fix.fixes,
            configurations: roots.configurations)
        let ordinals = shard.ordinals(of: campaign.totalGuests)
        var done = 0
        try campaign.run(
            jobs: jobs, shard: shard,
            before: { mode, _, _ in
                progress.update("fuzz \(mode)", done: done, total: ordinals.count)
                done += 1
            },
            generated: { text, name in try saveGenerated(text, name: name) }
        ) { guest in
            let name = guest.name
            tallies[guest.familyIndex].add(guest.reports.map(\.verdict), at: name)
            let failed = guest.failures(strict: strict.strict)
            if json {
                var fields: [(String, JSONValue)] = [("guest", .string(name)), ("mode", .string(guest.family.description)), ("seed", .number(Int(truncatingIfNeeded: guest.seed)))]
                fields += VerdictJSON.fields(VerdictTally.worst(guest.reports.map(\.verdict)))
                if !failed.isEmpty {
                    let saved = try saveFailure(guest.text, name: name) { campaign.stillFails($0, name: name, strict: strict.strict) }
                    fields += [("saved", .string(saved.whole)), ("minimized", .string(saved.minimized))]
                }
                let differing = guest.reports.filter { $0.verdict != .pass }.map {
                    JSONValue.object(VerdictJSON.report(
                        $0, file: failed.isEmpty ? nil : saveFailures + "/" + name, regressions: regression.regressions, fixes: fix.fixes, strict: strict.strict))
                }
                fields.append(("configurations", .array(differing)))
                stdout.writeLine(JSONValue.object(fields).encoded)
                return .proceed
            }
            if failed.isEmpty {
                if output.verbose {
                    let deviations = guest.reports.filter { $0.verdict != .pass }
                    if deviations.isEmpty { progress.message("pass \(name)") }
                    for report in deviations { progress.message("\(report.verdict) \(name) under \(report.configuration)") }
                }
                return .proceed
            }
            progress.clear()
            for report in failed {
                stdout.writeLine("\(report.verdict) \(name) under \(report.configuration)")
                for line in (report.mismatches + report.auditFailures).prefix(5) { stdout.writeLine("      \(line)") }
            }
            // Shrink to the fewest lines that still fail (a deviation does not count, unless --strict).
            let saved = try saveFailure(guest.text, name: name) { campaign.stillFails($0, name: name, strict: strict.strict) }
            stdout.writeLine("      written to \(saved.whole), minimized (\(saved.lines) lines) to \(saved.minimized)")
            if let first = failed.first {
                for line in Reproduction.lines(
                    file: saveFailures + "/" + name, configuration: first.configuration, line: first.firstMismatchLine,
                    regressions: regression.regressions, fixes: fix.fixes) { stdout.writeLine("      \(line)") }
            }
            return .proceed
        }
        progress.clear()
        let summary = FuzzSummary(campaign: identity(of: families), shard: shard, tallies: tallies)
        for line in summary.lines(json: json, quiet: output.quiet) { stdout.writeLine(line) }
        stdout.flush()
        if summary.failed { throw ExitCode(1) }
    }

    /// The campaign these options run, as its summary names it.
    func identity(of families: [GuestFamily]) -> FuzzCampaignIdentity {
        FuzzCampaignIdentity(
            seed: seed, count: count, length: length, modes: families.map(\.description), roots: roots.roots.rawValue,
            regressions: Regression.allCases.filter(regression.regressions.contains).map(\.rawValue),
            fixes: Deviation.allCases.filter(fix.fixes.contains).map(\.rawValue), strict: strict.strict)
    }
}
