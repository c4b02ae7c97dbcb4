/// One of `count` slices of a fuzzing campaign (`shadowmmu fuzz --shard
/// K/N`), so that a campaign can be spread over machines and its results
/// merged (`shadowmmu merge`).
///
/// The campaign's guests, in campaign order (round robin over the families,
/// seed by seed; `FuzzCampaign`), are cut into `count` contiguous ranges of
/// equal size, give or take one guest: shard K of N runs the guests of
/// ordinals `⌊(K-1)·T/N⌋ ..< ⌊K·T/N⌋` of the T in the campaign. Contiguous
/// ranges of a round robin give every shard each family in the same
/// proportion (nested guests cost more than plain ones), and a guest's
/// family, seed and name depend only on its ordinal, never on the shard, so
/// a failure found in a shard is the unsharded campaign's failure.
public struct CampaignShard: Sendable, Hashable, CustomStringConvertible {
    /// 1 for the first shard.
    public let index: Int
    /// Shards the campaign is cut into.
    public let count: Int

    /// The most shards a campaign can be cut into.
    public static let maximumCount = 1_000_000

    /// The whole campaign: one shard of one.
    public static let whole = CampaignShard(uncheckedIndex: 1, count: 1)

    /// Shard `index` of `count`; nil unless 1 ≤ index ≤ count ≤ `maximumCount`.
    public init?(index: Int, count: Int) {
        guard 1 <= index, index <= count, count <= Self.maximumCount else { return nil }
        self.init(uncheckedIndex: index, count: count)
    }

    private init(uncheckedIndex index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    public var isWhole: Bool { count == 1 }

    /// The ordinals (from 0, in campaign order) of this shard's guests among
    /// a campaign of `total` guests.
    public func ordinals(of total: UInt64) -> Range<UInt64> {
        func boundary(_ shard: Int) -> UInt64 {
            // total × shard can exceed 64 bits only in theory (10⁹ seeds × 12
            // families × 10⁶ shards does not), but full width costs nothing.
            let product = total.multipliedFullWidth(by: UInt64(shard))
            return UInt64(count).dividingFullWidth(product).quotient
        }
        return boundary(index - 1)..<boundary(index)
    }

    /// "K/N".
    public var description: String { "\(index)/\(count)" }
}
