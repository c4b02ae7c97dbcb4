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
    public enum Next: Sendable { case proceed, stop }

    /// Generates and checks every guest in order, handing each to `visit`
    /// (which may stop the campaign). `before` is called with each guest's
    /// family, seed and name before it is generated (progress, saving).
    public func run(
        before: (GuestFamily, UInt64, String) throws -> Void = { _, _, _ in },
        generated: (String, String) throws -> Void = { _, _ in },
        visit: (Guest) throws -> Next
    ) throws {
        var ordinal = 0
        for seed in firstSeed..<(firstSeed + count) {
            for (index, family) in families.enumerated() {
                ordinal += 1
                let name = "fuzz-\(family)-\(seed).scenario"
                try before(family, seed, name)
                let text = family.generate(seed: seed, length: length)
                try generated(text, name)
                let reports = try DifferentialChecker.check(
                    try ScenarioParser.parse(text, fileName: name), under: configurations, regressions: regressions, fixes: fixes)
                let guest = Guest(ordinal: ordinal, family: family, familyIndex: index, seed: seed, name: name, text: text, reports: reports)
                if try visit(guest) == .stop { return }
            }
        }
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
