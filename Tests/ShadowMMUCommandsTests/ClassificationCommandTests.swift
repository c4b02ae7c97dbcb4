import Foundation
import Testing

/// `check`, `fuzz` and `matrix` report a difference that the deviations'
/// fixes remove as `deviation NAME`, apart from the failures.
@Suite("Deviations on the command line")
struct ClassificationCommandTests {
    static let eferNX = "Tests/ShadowMMUTests/Deviations/efer-nx-forced.scenario"

    @Test func checkReportsADeviationAndExitsZero() throws {
        let result = try shadowmmu(["check", Self.eferNX])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdoutLines.first == "deviation efer-nx-forced  \(Self.eferNX)  mmu shadow host=64bit")
        #expect(result.stdoutLines.contains { $0.hasPrefix("      line 30: read 0x1000:") })
        // Under upstream's special roots too (a 4-level guest's root is an ordinary page in both designs).
        #expect(result.stdoutLines.contains("deviation efer-nx-forced  \(Self.eferNX)  mmu shadow host=64bit roots=special"))
        #expect(result.stdoutLines.last == "4 pass, 2 deviation (efer-nx-forced×2), 0 FAIL")
        #expect(!result.stdout.contains("FAIL  "))
    }

    @Test func strictMakesADeviationFail() throws {
        let result = try shadowmmu(["check", "--strict", Self.eferNX])
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("deviation efer-nx-forced  \(Self.eferNX)  mmu shadow host=64bit"))
    }

    @Test func withEveryFixItPasses() throws {
        let result = try shadowmmu(["check", "--fix", "all", Self.eferNX])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdoutLines.dropLast().allSatisfy { $0.hasPrefix("pass  ") })
        #expect(result.stdoutLines.last == "6 pass, 0 deviation, 0 FAIL")
    }

    @Test func aModelBugStaysAFailure() throws {
        let file = "Tests/ShadowMMUTests/Regressions/stale-npt-pdpte.scenario"
        let result = try shadowmmu(["check", "--regress", "stale-npt-pdpte", file])
        #expect(result.status == 1)
        #expect(result.stdout.contains("FAIL  \(file)  mmu tdp format=npt levels=4 host=64bit\n"))
        // Upstream's special roots never had the series' check: there the difference is that design's own bug.
        #expect(result.stdout.contains("deviation npt-pdptes-read-at-root-load  \(file)  mmu tdp format=npt levels=4 host=64bit roots=special"))
        #expect(result.stdoutLines.last == "0 pass, 3 deviation (npt-pdptes-read-at-root-load×3), 3 FAIL")
        let local = try shadowmmu(["check", "--roots", "local", "--regress", "stale-npt-pdpte", file])
        #expect(local.stdoutLines.last == "0 pass, 0 deviation, 3 FAIL")
    }

    @Test func fuzzCountsDeviationsAndSavesNoFailure() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let result = try shadowmmu(["fuzz", "--mode", "pae", "--count", "2", "--length", "30", "--seed", "8", "--save-failures", folder])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdoutLines == ["pae: 1/2 guests match the reference, 1 deviation (efer-nx-forced×1), 0 FAIL"])
        #expect(!FileManager.default.fileExists(atPath: folder))
        let strict = try shadowmmu(["fuzz", "--mode", "pae", "--count", "2", "--length", "30", "--seed", "8", "--save-failures", folder, "--strict"])
        #expect(strict.status == 1)
        #expect(strict.stdout.contains("deviation efer-nx-forced fuzz-pae-9.scenario under mmu shadow host=64bit"))
        #expect(FileManager.default.fileExists(atPath: folder + "/fuzz-pae-9-min.scenario"))
    }
}

extension ClassificationCommandTests {
    @Test func matrixRowsShowDeviationsAndStrictFailsThem() throws {
        let result = try shadowmmu(["matrix", "--length", "20"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdoutLines.contains { $0.hasSuffix("  deviation pse36-limited-to-36-bits") })
        #expect(result.stdoutLines.contains { $0.hasPrefix("Root designs side by side") })
        #expect(result.stdoutLines.last == "63/70 configurations × guest modes match the architecture, 7 deviation (pse36-limited-to-36-bits×4, npt-pdptes-read-at-root-load×3), 0 FAIL")
        let strict = try shadowmmu(["matrix", "--length", "20", "--strict"])
        #expect(strict.status == 1)
    }
}
