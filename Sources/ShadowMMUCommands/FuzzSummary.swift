import ScenarioRuntime
import ScenarioVerification
import ShadowMMU

/// What a fuzzing campaign is, as far as its results go: the guests it runs
/// (seed, count, length, modes) and how they are checked and counted (root
/// designs, bugs switched on, deviations fixed, `--strict`). `fuzz --json`
/// prints it in its last line, so that `merge` combines only shards of one
/// campaign.
struct FuzzCampaignIdentity: Equatable {
    var seed: UInt64
    /// Seeds per mode.
    var count: UInt64
    var length: Int
    /// The modes' names (`GuestFamily.description`), in campaign order.
    var modes: [String]
    /// The `--roots` choice.
    var roots: String
    /// `--regress` names, in `Regression.allCases` order.
    var regressions: [String]
    /// `--fix` names, in `Deviation.allCases` order.
    var fixes: [String]
    var strict: Bool

    /// Guests in the whole campaign.
    var totalGuests: UInt64 { count * UInt64(modes.count) }

    /// The options that make this campaign, as `fuzz` takes them.
    var options: String {
        var words = ["--seed \(seed)", "--count \(count)", "--length \(length)"]
        if modes.count == 1 { words.append("--mode \(modes[0])") }
        if roots != RootsOption.Choice.both.rawValue { words.append("--roots \(roots)") }
        words += regressions.map { "--regress \($0)" } + fixes.map { "--fix \($0)" }
        if strict { words.append("--strict") }
        return words.joined(separator: " ")
    }

    /// `{"seed":S,"count":C,"length":L,"modes":[…],"roots":…,"regress":[…],"fix":[…],"strict":B}`.
    /// A seed above 2⁶³ - 1 is printed as the per-guest `"seed"` is, as a
    /// signed 64-bit number.
    var json: JSONValue {
        .object([
            ("seed", .number(Int(truncatingIfNeeded: seed))), ("count", .number(Int(count))), ("length", .number(length)),
            ("modes", .array(modes.map { .string($0) })), ("roots", .string(roots)),
            ("regress", .array(regressions.map { .string($0) })), ("fix", .array(fixes.map { .string($0) })),
            ("strict", .bool(strict)),
        ])
    }

    /// The field of `json` where `self` and `other` first differ, with both values.
    func firstDifference(from other: Self) -> (field: String, mine: String, theirs: String)? {
        guard case .object(let mine) = json, case .object(let theirs) = other.json else { return nil }
        for ((field, value), (_, otherValue)) in zip(mine, theirs) where value != otherValue {
            return (field, value.encoded, otherValue.encoded)
        }
        return nil
    }
}

/// The summaries a fuzzing campaign, or one shard of it, ends with: one
/// tally per mode and their sum, in text (`MODE: P/N guests match the
/// reference`, `every mode: …`) or as the last JSON Lines of `--json`.
/// `fuzz` prints them after its guests; `merge` adds up the shards' and
/// prints what the whole campaign would have.
struct FuzzSummary {
    var campaign: FuzzCampaignIdentity
    var shard: CampaignShard
    /// One tally per mode of `campaign.modes`, in that order.
    var tallies: [VerdictTally]

    var total: VerdictTally {
        var total = VerdictTally()
        for tally in tallies { total.merge(tally) }
        return total
    }

    /// The ordinals (from 0) of the shard's guests in the campaign.
    var ordinals: Range<UInt64> { shard.ordinals(of: campaign.totalGuests) }

    /// Whether the run fails: exit status 1.
    var failed: Bool {
        let total = total
        return total.failures > 0 || (campaign.strict && total.deviationCount > 0)
    }

    /// The summary lines: JSON Lines (`{"mode","summary"}` per mode, then
    /// `{"summary","campaign"}` and, for a shard, `"shard"`), or text —
    /// with `quiet`, only the lines of modes where not every guest passed.
    func lines(json: Bool, quiet: Bool) -> [String] {
        let total = total
        if json {
            var last: [(String, JSONValue)] = [("summary", total.json), ("campaign", campaign.json)]
            if !shard.isWhole { last.append(("shard", .object([("index", .number(shard.index)), ("of", .number(shard.count))]))) }
            return zip(campaign.modes, tallies).map { mode, tally in JSONValue.object([("mode", .string(mode)), ("summary", tally.json)]).encoded }
                + [JSONValue.object(last).encoded]
        }
        var lines: [String] = []
        // A shard may hold no guest of a mode: its line would say 0/0.
        for (mode, tally) in zip(campaign.modes, tallies) where tally.total > 0 && (!quiet || tally.passes < tally.total) {
            lines.append("\(mode): \(Self.summary(tally))")
        }
        let showsTotal = !quiet || total.passes < total.total
        if campaign.modes.count > 1, showsTotal { lines.append("every mode: \(Self.summary(total))") }
        if !shard.isWhole, showsTotal {
            lines.append("shard \(shard) of the campaign: \(Self.guests(ordinals)) of \(campaign.totalGuests)")
        }
        return lines
    }

    /// "guests 5 to 8", "guest 5" or "no guest": `ordinals` (from 0) counted from 1.
    static func guests(_ ordinals: Range<UInt64>) -> String {
        switch ordinals.count {
        case 0: "no guest"
        case 1: "guest \(ordinals.upperBound)"
        default: "guests \(ordinals.lowerBound + 1) to \(ordinals.upperBound)"
        }
    }

    /// "P/N guests match the reference", and when not all do,
    /// ", D deviation (NAME×k, …), F FAIL".
    static func summary(_ tally: VerdictTally) -> String {
        var text = "\(tally.passes)/\(tally.total) guests match the reference"
        if tally.passes < tally.total { text += ", \(tally.deviationPart), \(tally.failures) FAIL" }
        return text
    }
}
