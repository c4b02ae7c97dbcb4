import ArgumentParser
import ScenarioVerification

/// `shadowmmu merge FILE…`: the shards of a fuzzing campaign added up.
///
/// A command of its own rather than a `fuzz --merge`: merging runs no guest,
/// so none of fuzz's options would apply, and here ArgumentParser refuses
/// them instead of fuzz having to tell a default from a value given.
struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add up the --json outputs of 'fuzz --shard K/N' runs into the summary of the whole campaign.",
        discussion: """
            Each file is one shard's standard output, from 'shadowmmu fuzz --shard K/N --json', \
            whole. The files must be shards of one campaign (the same --seed, --count, --length, \
            --mode, --roots, --regress, --fix and --strict), each shard once and none missing, in \
            any order. The summary printed, and the exit status, are those of the campaign run \
            unsharded: 0, or 1 when a guest failed (or, under --strict, showed a deviation); 2 \
            when the files cannot be merged, with the file, line and column of each problem.

            Examples:
              shadowmmu merge shard-1.jsonl shard-2.jsonl shard-3.jsonl
              shadowmmu merge --json shard-*.jsonl
            """
    )

    @Argument(help: "Standard outputs of 'fuzz --shard K/N --json', one per shard.")
    var files: [String]

    @Flag(help: "Print the campaign's summary as fuzz --json does: one object per mode, then the summary object (docs/commands.md#json-output).")
    var json = false

    @Flag(name: .shortAndLong, help: "Print only the summary lines of modes where not every guest passed, as fuzz --quiet does.")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Also name each file's shard and its guests on standard error.")
    var verbose = false

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("expected the output of every shard, e.g. shadowmmu merge shard-*.jsonl") }
        if quiet && verbose { throw ValidationError("--quiet and --verbose exclude each other: pass at most one of them") }
    }

    func run() throws {
        var shards: [ShardFile] = []
        var problems: [ShardFileProblem] = []
        for file in files {
            do throws(ShardFileProblem) { shards.append(try ShardFile.read(file)) } catch { problems.append(error) }
        }
        var merged: FuzzSummary?
        if problems.isEmpty {
            do throws(Refusal) { merged = try Self.merge(shards, verbose: verbose) } catch { problems = error.problems }
        }
        guard let merged else {
            for problem in problems { OutputStream.standardError.writeLine(problem.description) }
            throw ExitCode(2)
        }
        let stdout = OutputStream.standardOutput
        for line in merged.lines(json: json, quiet: quiet) { stdout.writeLine(line) }
        stdout.flush()
        if merged.failed { throw ExitCode(1) }
    }

    /// Every reason the shards cannot be merged.
    struct Refusal: Error {
        var problems: [ShardFileProblem]
    }

    /// The whole campaign's summary from its shards; refused unless they
    /// are of one campaign, cut the same number of ways, each once, none
    /// missing.
    static func merge(_ shards: [ShardFile], verbose: Bool = false) throws(Refusal) -> FuzzSummary {
        guard let first = shards.first else { throw Refusal(problems: []) }
        let campaign = first.summary.campaign
        let count = first.summary.shard.count
        var problems: [ShardFileProblem] = []
        var holder: [Int: ShardFile] = [:]
        var tallies = Array(repeating: VerdictTally(), count: campaign.modes.count)
        for shard in shards {
            func problem(_ column: Int, _ message: String) {
                problems.append(ShardFileProblem(file: shard.path, line: shard.summaryLine, column: column, message: message))
            }
            let summary = shard.summary
            if let difference = summary.campaign.firstDifference(from: campaign) {
                problem(
                    shard.campaignColumn,
                    "expected a shard of the campaign of \(first.path) (\(campaign.options)), found another: \"\(difference.field)\" is \(difference.mine) here, \(difference.theirs) there")
                continue
            }
            if summary.shard.count != count {
                let expected = count == 1 ? "no other file, \(first.path) being the whole campaign" : "a shard of \(count) like \(first.path)'s"
                let found = summary.shard.isWhole ? "the whole campaign" : "shard \(summary.shard)"
                problem(shard.shardColumn, "expected \(expected), found \(found) (shards must cut the campaign the same number of ways)")
                continue
            }
            if let earlier = holder[summary.shard.index] {
                problem(shard.shardColumn, "expected each shard once, found shard \(summary.shard) again (overlapping: \(earlier.path) holds it)")
                continue
            }
            holder[summary.shard.index] = shard
            for index in tallies.indices { tallies[index].merge(summary.tallies[index]) }
            if verbose {
                OutputStream.standardError.writeLine(
                    "merge: \(shard.path): shard \(summary.shard), \(FuzzSummary.guests(summary.ordinals)) of \(campaign.totalGuests)")
            }
        }
        if problems.isEmpty {
            let missing = (1...count).lazy.filter { holder[$0] == nil }
            let shown = missing.prefix(10).map { index -> String in
                let ordinals = CampaignShard(index: index, count: count)!.ordinals(of: campaign.totalGuests)
                return "\(index)/\(count) (\(FuzzSummary.guests(ordinals)))"
            }
            if !shown.isEmpty {
                let more = missing.count - shown.count
                problems.append(ShardFileProblem(
                    file: first.path, line: first.summaryLine, column: first.shardColumn,
                    message: "expected every shard of \(count) of this campaign, found \(shown.count + more) missing: \(shown.joined(separator: ", "))\(more > 0 ? " and \(more) more" : ""); pass each shard's output"))
            }
        }
        guard problems.isEmpty else { throw Refusal(problems: problems) }
        return FuzzSummary(campaign: campaign, shard: .whole, tallies: tallies)
    }
}
