import ScenarioVerification

/// Reading `fuzz --shard K/N`.
///
/// ArgumentParser names the option around the refusal: "The value '4/3' is
/// invalid for '--shard <K/N>': expected K/N with 1 <= K <= N, found shard 4
/// of 3".
enum ShardOption {
    static let expected = "expected K/N with 1 <= K <= N <= \(CampaignShard.maximumCount) (shard K of N, e.g. 2/3)"

    static func parse(_ text: String) throws(NumericOption.Refusal) -> CampaignShard {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw NumericOption.Refusal(description: "\(expected), found \(parts.count == 1 ? "no '/'" : "more than one '/'")")
        }
        func number(_ part: Substring, _ name: String) throws(NumericOption.Refusal) -> Int {
            guard !part.isEmpty, part.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw NumericOption.Refusal(description: "\(expected), found '\(part)' for \(name) (decimal digits)")
            }
            // More digits than any shard count has: out of range without overflowing.
            return part.count > 7 ? Int.max : Int(part)!
        }
        let index = try number(parts[0], "K"), count = try number(parts[1], "N")
        guard count <= CampaignShard.maximumCount else {
            throw NumericOption.Refusal(description: "\(expected), found N larger than \(CampaignShard.maximumCount)")
        }
        guard let shard = CampaignShard(index: index, count: count) else {
            throw NumericOption.Refusal(description: "\(expected), found shard \(parts[0]) of \(parts[1])")
        }
        return shard
    }
}
