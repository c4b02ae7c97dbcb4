import Foundation
import ScenarioVerification

/// Where a `fuzz --json` output file cannot be used, as `FILE:LINE:COLUMN:
/// expected …, found …`: the file is not fuzz's output, or not a shard of
/// the campaign being merged.
struct ShardFileProblem: Error, CustomStringConvertible {
    var file: String
    /// 1-based.
    var line: Int
    /// 1-based, counting characters.
    var column: Int
    var message: String

    var description: String { "\(file):\(line):\(column): \(message)" }
}

/// One shard's `fuzz --json` output, read back: its summary, and where that
/// summary stands in the file (for the messages of `merge`).
struct ShardFile {
    var path: String
    var summary: FuzzSummary
    /// The summary's line and the column of its `"campaign"` and `"shard"` fields.
    var summaryLine: Int
    var campaignColumn: Int
    var shardColumn: Int

    /// Reads `path`, which must be the whole of one `fuzz --json` output: a
    /// line per guest, a `{"mode","summary"}` line per mode of the campaign,
    /// and the `{"summary","campaign"[,"shard"]}` line last, adding up.
    static func read(_ path: String) throws(ShardFileProblem) -> ShardFile {
        func problem(_ line: Int, _ column: Int, _ message: String) -> ShardFileProblem {
            ShardFileProblem(file: path, line: line, column: column, message: message)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw problem(1, 1, "expected a readable fuzz --json output file, found \(exists ? "a folder or a file that cannot be read" : "no such file")")
        }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var guests = 0
        var modes: [(name: String, tally: VerdictTally, line: Int)] = []
        var last: (object: [String: Any], line: Int, text: String)?
        for (offset, text) in lines.enumerated() where !text.trimmingCharacters(in: .whitespaces).isEmpty {
            let number = offset + 1
            if let last {
                throw problem(number, 1, "expected the campaign's summary line (line \(last.line)) to be the last, found more: \(Self.excerpt(text))")
            }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
                throw problem(number, 1, "expected a JSON object per line (fuzz --json output), found \(Self.excerpt(text))")
            }
            if object["guest"] != nil {
                guard modes.isEmpty else { throw problem(number, 1, "expected the guests before the modes' summaries, found a guest after them") }
                guests += 1
            } else if let mode = object["mode"] as? String, let summary = object["summary"] {
                guard let tally = VerdictTally(json: summary) else {
                    throw problem(number, column(of: "summary", in: text), "expected {\"pass\":N,\"deviation\":N,\"fail\":N,\"deviations\":{…}}, found \(Self.excerpt(text))")
                }
                modes.append((mode, tally, number))
            } else if object["summary"] != nil {
                last = (object, number, text)
            } else {
                throw problem(number, 1, "expected a line of fuzz --json output (a guest, a mode's summary, the campaign's summary), found \(Self.excerpt(text))")
            }
        }
        guard let last else {
            throw problem(max(1, lines.count), 1, "expected fuzz --json output ending in the campaign's summary {\"summary\":…,\"campaign\":…}, found \(data.isEmpty ? "an empty file" : "none (was the run cut short?)")")
        }
        let campaignColumn = column(of: "campaign", in: last.text)
        guard let fields = last.object["campaign"] else {
            throw problem(last.line, 1, "expected a summary with \"campaign\" (fuzz --json prints it; check, matrix and fuzz --kvm do not, nor fuzz before shards), found none")
        }
        guard let campaign = FuzzCampaignIdentity(json: fields) else {
            throw problem(last.line, campaignColumn, "expected \"campaign\":{\"seed\",\"count\",\"length\",\"modes\",\"roots\",\"regress\",\"fix\",\"strict\"}, found something else")
        }
        var shard = CampaignShard.whole
        let shardColumn = column(of: "shard", in: last.text)
        if let fields = last.object["shard"] {
            guard let object = fields as? [String: Any], let index = object["index"] as? Int, let count = object["of"] as? Int,
                  let read = CampaignShard(index: index, count: count)
            else { throw problem(last.line, shardColumn, "expected \"shard\":{\"index\":K,\"of\":N} with 1 <= K <= N, found something else") }
            shard = read
        }
        guard modes.map(\.name) == campaign.modes else {
            let line = modes.first?.line ?? last.line
            throw problem(line, 1, "expected a summary line for each of the campaign's modes (\(campaign.modes.joined(separator: ", "))), found \(modes.isEmpty ? "none" : modes.map(\.name).joined(separator: ", "))")
        }
        let summary = FuzzSummary(campaign: campaign, shard: shard, tallies: modes.map(\.tally))
        guard let total = last.object["summary"].flatMap(VerdictTally.init(json:)), total.json == summary.total.json else {
            throw problem(last.line, column(of: "summary", in: last.text), "expected the campaign's summary to add up its modes' (\(summary.total.json.encoded)), found otherwise")
        }
        let ordinals = summary.ordinals
        guard guests == ordinals.count, summary.total.total == ordinals.count else {
            throw problem(
                last.line, 1,
                "expected \(ordinals.count) guests for shard \(shard) of \(campaign.totalGuests), found \(guests) guest lines and \(summary.total.total) guests counted (was the file cut or edited?)")
        }
        return ShardFile(path: path, summary: summary, summaryLine: last.line, campaignColumn: campaignColumn, shardColumn: shardColumn)
    }

    /// The column (1-based) where `"key":` starts in `line`, or 1.
    private static func column(of key: String, in line: String) -> Int {
        guard let range = line.range(of: "\"\(key)\":") else { return 1 }
        return line.distance(from: line.startIndex, to: range.lowerBound) + 1
    }

    /// The start of `line`, quoted, for a message.
    private static func excerpt(_ line: String) -> String {
        "'" + (line.count > 60 ? line.prefix(60) + "…" : line) + "'"
    }
}

extension FuzzCampaignIdentity {
    /// Reads the `"campaign"` object that `json` writes; nil unless every field is there with its type.
    init?(json: Any) {
        guard let object = json as? [String: Any],
              let seed = object["seed"] as? Int, let count = object["count"] as? Int, count >= 1,
              let length = object["length"] as? Int, let modes = object["modes"] as? [String], !modes.isEmpty,
              let roots = object["roots"] as? String, let regressions = object["regress"] as? [String],
              let fixes = object["fix"] as? [String], let strict = object["strict"] as? Bool
        else { return nil }
        self.init(
            seed: UInt64(bitPattern: Int64(seed)), count: UInt64(count), length: length, modes: modes, roots: roots,
            regressions: regressions, fixes: fixes, strict: strict)
    }
}

extension VerdictTally {
    /// Reads the tally that `json` writes; nil unless it is one.
    init?(json: Any) {
        guard let object = json as? [String: Any],
              let passes = object["pass"] as? Int, let deviationCount = object["deviation"] as? Int, let failures = object["fail"] as? Int,
              let deviations = object["deviations"] as? [String: Int], passes >= 0, deviationCount >= 0, failures >= 0
        else { return nil }
        self.init()
        self.passes = passes
        self.deviationCount = deviationCount
        self.failures = failures
        self.deviations = deviations
    }
}
