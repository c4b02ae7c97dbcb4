import ScenarioLanguage
import ScenarioVerification
import Testing

/// `fuzz --shard K/N`: the shards of a campaign run its guests, each once,
/// and a guest is the same guest whichever shard runs it.
@Suite("Campaign shards")
struct CampaignShardTests {
    @Test(arguments: [0, 1, 2, 11, 12, 13, 24, 1000, 999_983])
    func theShardsCutTheCampaignIntoContiguousRangesCoveringItOnce(_ total: Int) {
        for count in [1, 2, 3, 7, 12, 13, 25, 1000] {
            var next: UInt64 = 0
            for index in 1...count {
                let ordinals = CampaignShard(index: index, count: count)!.ordinals(of: UInt64(total))
                #expect(ordinals.lowerBound == next, "\(total) guests, shard \(index)/\(count) starts at \(ordinals.lowerBound), not \(next)")
                // Equal sizes, give or take one guest.
                #expect(ordinals.count == total / count || ordinals.count == total / count + 1, "\(total) guests, shard \(index)/\(count): \(ordinals.count) guests")
                next = ordinals.upperBound
            }
            #expect(next == UInt64(total), "\(total) guests in \(count) shards end at \(next)")
        }
    }

    @Test func badShardsAreRefused() {
        #expect(CampaignShard(index: 0, count: 3) == nil)
        #expect(CampaignShard(index: 4, count: 3) == nil)
        #expect(CampaignShard(index: 1, count: CampaignShard.maximumCount + 1) == nil)
        #expect(CampaignShard(index: CampaignShard.maximumCount, count: CampaignShard.maximumCount) != nil)
        // The largest campaign cut the most ways stays within 64 bits.
        let last = CampaignShard(index: CampaignShard.maximumCount, count: CampaignShard.maximumCount)!
        #expect(last.ordinals(of: 12_000_000_000).upperBound == 12_000_000_000)
    }

    @Test func aShardRunsTheUnshardedCampaignsGuestsInItsOrder() throws {
        let campaign = FuzzCampaign(families: [.plain(.pae), .plain(.level4), .plain(.bits32)], firstSeed: 40, count: 3, length: 12)
        func guests(_ shard: CampaignShard, jobs: Int) throws -> [String] {
            var names: [String] = []
            try campaign.run(jobs: jobs, shard: shard) { guest in
                names.append("\(guest.ordinal) \(guest.name) \(guest.text.hashValue) \(guest.reports.map(\.verdict))")
                return .proceed
            }
            return names
        }
        let whole = try guests(.whole, jobs: 1)
        #expect(whole.count == 9)
        var sharded: [String] = []
        for index in 1...4 { sharded += try guests(CampaignShard(index: index, count: 4)!, jobs: index) }
        #expect(sharded == whole)
    }
}
