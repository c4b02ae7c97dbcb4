import KVMCatalogue
import ScenarioLanguage
import ShadowMMU

/// A fuzzing campaign (`shadowmmu fuzz`, and `shadowmmu zoo` for each bug):
/// random guests of some families, each run through the differential checker
/// with the same known bugs switched on and deviations fixed.
///
/// Guests come round robin over the families, seed by seed, so that the first
/// guests already cover every paging mode: guest k (counting from 0) is family
/// `k % families.count` with seed `firstSeed + k / families.count`.
public struct FuzzCampaign: Sendable {
    public var families: [GuestFamily]
    public var firstSeed: UInt64
    /// Seeds per family.
    public var count: UInt64
    /// Random operations per guest.
    public var length: Int
    public var regressions: Set<Regression>
    public var fixes: Set<Deviation>
    /// The configurations every guest is checked under.
    public var configurations: [MMUConfiguration]

    public init(
        families: [GuestFamily] = GuestFamily.all, firstSeed: UInt64 = 0, count: UInt64 = 100, length: Int = 200,
        regressions: Set<Regression> = [], fixes: Set<Deviation> = [],
        configurations: [MMUConfiguration] = DifferentialChecker.configurations
    ) {
        self.configurations = configurations
        self.families = families
        self.firstSeed = firstSeed
        self.count = count
        self.length = length
        self.regressions = regressions
        self.fixes = fixes
    }

    /// One generated guest and what the checker found.
    public struct Guest {
        /// 1 for the campaign's first guest.
        public let ordinal: Int
        public let family: GuestFamily
        /// Index of `family` in the campaign's families.
        public let familyIndex: Int
        public let seed: UInt64
        /// "fuzz-MODE-SEED.scenario".
        public let name: String
        public let text: String
        public let reports: [DifferentialChecker.Report]

        /// The reports that count as failures (a deviation only when `strict`).
        public func failures(strict: Bool) -> [DifferentialChecker.Report] { reports.filter { $0.isFailure(strict: strict) } }
    }

    /// Whether the campaign goes on after a guest.
    public typealias Next = ConcurrentWindow.Next

    /// Guests in the whole campaign: `count` seeds of every family.
    public var totalGuests: UInt64 { count * UInt64(families.count) }

    /// Generates and checks every guest of `shard` in campaign order, handing
    /// each to `visit` (which may stop the campaign), with up to `jobs`
    /// guests generated and checked at once (`ConcurrentWindow`: the visits
    /// are those of one job, only sooner). `before` is called with each
    /// guest's family, seed and name (progress), `generated` with its text
    /// and name (saving), both in campaign order.
    public func run(
        jobs: Int = 1,
        shard: CampaignShard = .whole,
        before: (GuestFamily, UInt64, String) throws -> Void = { _, _, _ in },
        generated: (String, String) throws -> Void = { _, _ in },
        visit: (Guest) throws -> Next
    ) throws {
        let families = families
        let firstSeed = firstSeed
        // Guest k (from 0) is family k % families.count with seed
        // firstSeed + k / families.count, whichever shard runs it.
        let ordinals = shard.ordinals(of: totalGuests).lazy.map { ordinal in
            (ordinal: Int(ordinal) + 1, seed: firstSeed + ordinal / UInt64(families.count), index: Int(ordinal % UInt64(families.count)))
        }
        let campaign = self
        try ConcurrentWindow(jobs: jobs).run(
            ordinals,
            announce: { item in try before(families[item.index], item.seed, Self.name(families[item.index], item.seed)) },
            perform: { item in campaign.generateAndCheck(families[item.index], seed: item.seed) }
        ) { item, result in
            try generated(result.text, result.name)
            let guest = Guest(
                ordinal: item.ordinal, family: families[item.index], familyIndex: item.index, seed: item.seed, name: result.name,
                text: result.text, reports: try result.reports.get())
            return try visit(guest)
        }
    }

    /// "fuzz-MODE-SEED.scenario".
    static func name(_ family: GuestFamily, _ seed: UInt64) -> String { "fuzz-\(family)-\(seed).scenario" }

    /// One guest generated and run through the differential checker.
    private func generateAndCheck(
        _ family: GuestFamily, seed: UInt64
    ) -> (name: String, text: String, reports: Result<[DifferentialChecker.Report], ScenarioError>) {
        let name = Self.name(family, seed)
        let text = family.generate(seed: seed, length: length)
        let reports = Result { () throws(ScenarioError) in
            try DifferentialChecker.check(
                try ScenarioParser.parse(text, fileName: name), under: configurations, regressions: regressions, fixes: fixes)
        }
        return (name, text, reports)
    }

    /// Whether `candidate` (a shrunk guest) still fails under this campaign's
    /// settings: the minimizer's test.
    public func stillFails(_ candidate: String, name: String, strict: Bool) -> Bool {
        guard let scenario = try? ScenarioParser.parse(candidate, fileName: name),
              let reports = try? DifferentialChecker.check(scenario, under: configurations, regressions: regressions, fixes: fixes)
        else { return false }
        return reports.contains { $0.isFailure(strict: strict) }
    }

    /// The first guest with a failure, or nil if none within the campaign.
    public func firstFailure(strict: Bool = false) throws -> Guest? {
        var found: Guest?
        try run { guest in
            guard !guest.failures(strict: strict).isEmpty else { return .proceed }
            found = guest
            return .stop
        }
        return found
    }
}
