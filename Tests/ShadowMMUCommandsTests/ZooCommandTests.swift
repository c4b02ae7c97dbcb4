import KVMCatalogue
@testable import ShadowMMUCommands
import ScenarioLanguage
import ScenarioVerification
import ShadowMMU
import Testing

/// `shadowmmu zoo`: the measurement behind its table, on small limits.
@Suite("Zoo command")
struct ZooCommandTests {
    /// An entry fuzz catches among the first guests of its order: reported
    /// with the guest's number, mode and seed.
    @Test func anEntryCaughtEarlyIsReportedWithItsGuest() throws {
        let limit = 4
        let (caught, guests) = try Zoo.fuzz(.hugePageWhileDirtyLogging, limit: limit, length: 200, progress: ProgressLine(enabled: false))
        let guest = try #require(caught, "huge-page-while-dirty-logging not caught within \(limit) guests")
        #expect(guest.ordinal == guests && guest.ordinal <= limit)
        #expect(!guest.failures(strict: false).isEmpty)
        // The same guest fails nothing with the bug off.
        let fixed = try DifferentialChecker.check(try ScenarioParser.parse(guest.text, fileName: guest.name))
        #expect(fixed.allSatisfy { !$0.isFailure(strict: false) }, "\(guest.name) fails without the bug")
        let result = Zoo.Result(
            regression: .hugePageWhileDirtyLogging, caughtBy: guest, guests: guests, failingScenarios: nil, ownScenarioFails: nil, seconds: 0)
        let table = Zoo.table([result], limit: limit)
        #expect(table.count == 3)
        #expect(table[1].hasPrefix("huge-page-while-dirty-logging") && table[1].contains("guest \(guest.ordinal) (\(guest.family) seed \(guest.seed))"))
        #expect(table[2] == "1/1 entries caught by fuzz within \(limit) guests")
    }

    /// A nested-only bug cannot fail the first guest (a guest with paging
    /// off): "not in 1", and the command's exit status is 1.
    @Test func anEntryNotCaughtWithinTheLimitIsReportedAsSuch() throws {
        let (caught, guests) = try Zoo.fuzz(.eptQualificationRightsSwapped, limit: 1, length: 200, progress: ProgressLine(enabled: false))
        #expect(caught == nil && guests == 1)
        let result = try shadowmmu(["zoo", "ept-qualification-rights-swapped", "--limit", "1", "--no-check"])
        #expect(result.status == 1)
        #expect(result.stdout.contains("ept-qualification-rights-swapped  not in 1"), "\(result.stdout)")
        #expect(result.stdout.contains("0/1 entries caught by fuzz within 1 guests"))
    }

    @Test func anUnknownEntryIsUnusableInput() throws {
        let result = try shadowmmu(["zoo", "no-such-bug"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("no zoo entry matches 'no-such-bug'"))
    }

    @Test func theShippedScenariosAreFoundFromThePackageRoot() {
        let files = Zoo.shippedScenarios(root: packageRoot.path)
        for regression in Regression.allCases {
            #expect(files.contains { $0.hasSuffix("/Regressions/\(regression.rawValue).scenario") }, "\(regression.rawValue)")
        }
        #expect(files.contains { $0.hasSuffix("/examples/pae.scenario") })
    }
}
