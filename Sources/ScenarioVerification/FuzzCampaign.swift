import Dispatch
import Foundation
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
        jobs: Int = 1,
        before: (GuestFamily, UInt64, String) throws -> Void = { _, _, _ in },
        generated: (String, String) throws -> Void = { _, _ in },
        visit: (Guest) throws -> Next
    ) throws {
        // Guests in campaign order: (ordinal, family index, seed).
        let families = families
        let work = (firstSeed..<(firstSeed + count)).lazy.flatMap { seed in families.indices.lazy.map { (seed, $0) } }
        var iterator = work.makeIterator()
        var ordinal = 0
        // With several jobs, a window of guests is generated and checked at
        // once, then visited in order: the visits (and so the output) are
        // those of one job, only sooner.
        let window = jobs <= 1 ? 1 : jobs * 4
        while true {
            var batch: [(ordinal: Int, seed: UInt64, index: Int)] = []
            while batch.count < window, let (seed, index) = iterator.next() {
                ordinal += 1
                batch.append((ordinal, seed, index))
            }
            guard !batch.isEmpty else { return }
            if window == 1, let item = batch.first {
                // One job: told of the guest before it is generated (progress, as before).
                try before(families[item.index], item.seed, Self.name(families[item.index], item.seed))
            }
            let results = check(batch, jobs: jobs)
            for (item, result) in zip(batch, results) {
                let family = families[item.index]
                if window > 1 { try before(family, item.seed, result.name) }
                try generated(result.text, result.name)
                let guest = Guest(
                    ordinal: item.ordinal, family: family, familyIndex: item.index, seed: item.seed, name: result.name, text: result.text,
                    reports: try result.reports.get())
                if try visit(guest) == .stop { return }
            }
        }
    }

    /// "fuzz-MODE-SEED.scenario".
    static func name(_ family: GuestFamily, _ seed: UInt64) -> String { "fuzz-\(family)-\(seed).scenario" }

    /// Generates and checks `batch`, on up to `jobs` threads, results in
    /// the batch's order.
    private func check(
        _ batch: [(ordinal: Int, seed: UInt64, index: Int)], jobs: Int
    ) -> [(name: String, text: String, reports: Result<[DifferentialChecker.Report], ScenarioError>)] {
        let results = ResultSlots<(name: String, text: String, reports: Result<[DifferentialChecker.Report], ScenarioError>)>(count: batch.count)
        let campaign = self
        let one: @Sendable (Int) -> Void = { position in
            let item = batch[position]
            let family = campaign.families[item.index]
            let name = Self.name(family, item.seed)
            let text = family.generate(seed: item.seed, length: campaign.length)
            let reports = Result { () throws(ScenarioError) in
                try DifferentialChecker.check(
                    try ScenarioParser.parse(text, fileName: name), under: campaign.configurations,
                    regressions: campaign.regressions, fixes: campaign.fixes)
            }
            results.set(position, (name, text, reports))
        }
        if batch.count == 1 {
            for position in batch.indices { one(position) }
        } else {
            // `jobs` workers, each taking every jobs-th guest of the batch:
            // at most `jobs` guests are checked at once, whatever the cores.
            let workers = min(jobs, batch.count)
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                for position in stride(from: worker, to: batch.count, by: workers) { one(position) }
            }
        }
        return results.values
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

/// Results filled in by concurrent workers, one slot each, read after they
/// have all finished (`concurrentPerform` returns only then).
private final class ResultSlots<Value>: @unchecked Sendable {
    private var slots: [Value?]
    private let lock = NSLock()

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ position: Int, _ value: Value) {
        lock.lock()
        slots[position] = value
        lock.unlock()
    }

    var values: [Value] { slots.map { $0! } }
}
