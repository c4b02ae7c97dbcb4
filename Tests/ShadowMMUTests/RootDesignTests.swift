import KVMCatalogue
import MMUEncoding
import Foundation
@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

/// The series against the design it replaces (`roots=special|local|local-eager`,
/// DESIGN.md §4): the same guest-visible results except the stale-nPDPTE bug,
/// which the old design has and the series' does not; and what each design
/// builds, where.
@Suite("Root designs: upstream's special roots and the series' local pages")
struct RootDesignTests {
    static let staleNPDPTE = RegressionScenarioTests.directory.appendingPathComponent("stale-npt-pdpte.scenario")

    /// The NPT L0s that shadow a PAE L1 with a root of another shape: rows 8, 9, 10.
    static let paeL1Hosts: [MMUConfiguration] = [
        .tdp(format: .npt, levels: 3, host: .pae32), .tdp(format: .npt, levels: 4, host: .bits64), .tdp(format: .npt, levels: 5, host: .bits64),
    ]

    /// Runs `url`'s scenario under `configuration` with full audits; returns
    /// the failed expectations and the audit/hardware complaints.
    static func run(_ url: URL, under configuration: MMUConfiguration, fixes: Set<Deviation> = []) throws -> (expectations: [String], audits: [String]) {
        let text = try String(contentsOf: url, encoding: .utf8)
        return try run(text: text, under: configuration, fixes: fixes)
    }

    static func run(text: String, under configuration: MMUConfiguration, fixes: Set<Deviation> = []) throws -> (expectations: [String], audits: [String]) {
        let run = try ShadowRun(text, mmu: configuration)
        run.machine.configure(regressions: [], fixes: fixes, emulatedSupervisor: false)
        run.runToEnd()
        return (run.expectationFailures.map(\.description), run.machine.auditFailures)
    }

    @Test("The stale-nPDPTE scenario fails under roots=special on rows 8-10 and passes under the series' designs", arguments: paeL1Hosts)
    func staleNPDPTEArisesFromTheOldDesign(host: MMUConfiguration) throws {
        let special = try Self.run(Self.staleNPDPTE, under: host.with(roots: .special))
        #expect(special.expectations.count == 1 && special.expectations.first?.contains("expected npf gpa=0x200000") == true,
                "under \(host.with(roots: .special)): \(special.expectations)")
        #expect(special.audits.isEmpty, "\(special.audits.prefix(3))")
        for design in [RootsDesign.local, .localEager] {
            let result = try Self.run(Self.staleNPDPTE, under: host.with(roots: design))
            #expect(result.expectations.isEmpty && result.audits.isEmpty, "under \(host.with(roots: design)): \(result)")
        }
        let fixed = try Self.run(Self.staleNPDPTE, under: host.with(roots: .special), fixes: [.nptPDPTEsReadAtRootLoad])
        #expect(fixed.expectations.isEmpty && fixed.audits.isEmpty, "with the fix: \(fixed)")
    }

    @Test("The checker names the old design's difference: deviation npt-pdptes-read-at-root-load, nothing else")
    func checkerAttributesTheBug() throws {
        let scenario = try ScenarioParser.parse(try String(contentsOf: Self.staleNPDPTE, encoding: .utf8), fileName: "stale-npt-pdpte.scenario")
        let reports = try DifferentialChecker.check(scenario, under: DifferentialChecker.configurations(roots: [.local, .localEager, .special]))
        #expect(reports.count == 9, "\(reports.map(\.configuration))")
        for report in reports {
            if report.configuration.roots == .special {
                #expect(report.verdict == .deviation([.nptPDPTEsReadAtRootLoad]), "\(report.configuration): \(report.verdict)")
            } else {
                #expect(report.verdict == .pass, "\(report.configuration): \(report.verdict) \(report.mismatches.prefix(2))")
            }
        }
    }

    /// L1 (PAE paging, AMD nested paging) has no nPDPTE for L2-physical GiB 1
    /// when L2 starts, then makes one present without re-entering L2.
    static let nPDPTEMadePresent = """
        machine memory=64M
        mmu tdp format=npt levels=4
        poke 0x10000 0x11001        # nPDPTE[0] -> PD_A; nPDPTE[1] not present
        poke 0x11000 0x12007        # PD_A[0] -> nPT: L2-physical [0, 2 MiB)
        poke 0x12008 0x101007       # L2-physical 0x1000 -> L1 0x101000
        poke 0x12010 0x102007
        poke 0x12018 0x103007
        poke 0x13000 0x14007        # PD_B[0] -> nPT2: L2-physical [1 GiB, 1 GiB + 2 MiB)
        poke 0x14000 0x300007       # L2-physical 0x40000000 -> L1 0x300000
        poke 0x300000 0x3333
        poke 0x101000 0x2001        # L2's PDPTE[0] -> PD at L2-physical 0x2000
        poke 0x102000 0x3007        # PDE[0] -> PT at 0x3000
        poke 0x103000 0x40000007    # linear 0 -> L2-physical 1 GiB
        nested npt ncr3=0x10000 mode=pae
        cr4 0x20
        cr3 0x1000
        cr0 0x80000001
        read 0x0                    # L1 has no nPDPTE for GiB 1 yet
        expect npf gpa=0x40000000 info=0x100000004
        store 0x10008 0x13001       # L1 makes nPDPTE[1] present while L2 runs
        read 0x0
        expect ok gpa=0x40000000 value=0x3333
        """

    @Test("An nPDPTE made present after root load: KVM_RUN fails with EFAULT under roots=special, the series maps it", arguments: paeL1Hosts)
    func nPDPTEMadePresent(host: MMUConfiguration) throws {
        let special = try Self.run(text: Self.nPDPTEMadePresent, under: host.with(roots: .special))
        #expect(special.audits.contains { $0.contains("KVM_RUN fails with EFAULT") }, "\(special.audits)")
        #expect(special.expectations.count == 1, "\(special.expectations)")
        for design in [RootsDesign.local, .localEager] {
            let result = try Self.run(text: Self.nPDPTEMadePresent, under: host.with(roots: design))
            #expect(result.expectations.isEmpty && result.audits.isEmpty, "under \(host.with(roots: design)): \(result)")
        }
        let fixed = try Self.run(text: Self.nPDPTEMadePresent, under: host.with(roots: .special), fixes: [.nptPDPTEsReadAtRootLoad])
        #expect(fixed.expectations.isEmpty && fixed.audits.isEmpty, "with the fix: \(fixed)")
    }

    @Test("Special roots of a 32-bit guest: pae_root filled at load with the page directory's four quadrants, each a root of its own")
    func specialRootOfA32BitGuest() throws {
        let run = try ShadowRun("""
            machine memory=16M
            poke 0x1000 0x2007          # PDE[0] -> PT at 0x2000
            poke 0x2000 0x5007          # linear 0 -> 0x5000
            cr3 0x1000
            cr0 0x80000011
            read 0x0
            # @loaded
            read 0x0
            """, mmu: .shadow(host: .bits64, roots: .special))
        run.run(upTo: "loaded")
        let root = try #require(run.root())
        #expect(root.isSpecialRoot && !root.isLocal && root.role.level == 3 && root.owner == 0)
        #expect(!run.isHashed(root))
        #expect(root.frame == run.mmu.contexts[0].paeRootFrame)
        #expect(run.presentEntries(root) == [0, 1, 2, 3])
        let children = (0..<4).compactMap { run.child(root, $0) }
        #expect(children.map(\.gfn) == [1, 1, 1, 1])
        #expect(children.map(\.role.quadrant) == [0, 1, 2, 3])
        #expect(children.allSatisfy { $0.rootCount == 1 && $0.parentSPTEs.isEmpty && run.isHashed($0) })
        for index in 0..<4 {
            #expect(run.spte(root, index) & ~SPTE.addressMask == RootShapeTests.pdpteFlags, "entry \(index) not in PDPTE format")
        }
        run.runToEnd()
        run.expectClean()
        #expect(run.mmu.statistics.specialRootsCreated == 1 && run.mmu.statistics.localRootsCreated == 0)
    }

    @Test("A special root is freed on MOV CR3 and its children keep no root reference; the raw tables stay with the vCPU")
    func specialRootFreedOnCR3Switch() throws {
        let run = try ShadowRun("""
            machine memory=16M
            poke 0x1000 0x2007
            poke 0x2000 0x5007
            poke 0x8000 0x2007          # a second page directory, same page table
            cr3 0x1000
            cr0 0x80000011
            read 0x0
            # @first
            cr3 0x8000
            read 0x0
            # @second
            """, mmu: .shadow(host: .bits64, roots: .special))
        run.run(upTo: "first")
        let first = try #require(run.root())
        let firstChildren = (0..<4).compactMap { run.child(first, $0) }
        run.run(upTo: "second")
        let second = try #require(run.root())
        #expect(second !== first && second.frame == first.frame, "the PAE root frame is reused")
        #expect(firstChildren.allSatisfy { $0.rootCount == 0 && run.isHashed($0) }, "children of the freed root stay hashed, unreferenced")
        #expect((0..<4).compactMap { run.child(second, $0) }.allSatisfy { $0.gfn == 8 && $0.rootCount == 1 })
        run.expectClean()
    }

    @Test("Rows 9 and 10 under roots=special: pml5_root/pml4_root stack above pae_root, entry 0 each, ordinary table entries below",
          arguments: [4, 5])
    func paddingTablesOfSpecialRoots(levels: Int) throws {
        let text = try String(contentsOf: Self.staleNPDPTE, encoding: .utf8)
        let run = try ShadowRun(text, mmu: .tdp(format: .npt, levels: levels, host: .bits64, roots: .special))
        run.runToEnd()
        let root = try #require(run.mmu.nestedContexts[0]?.root)
        var table = root
        for level in stride(from: levels, to: 3, by: -1) {
            #expect(table.isSpecialRoot && table.role.level == level && run.presentEntries(table) == [0])
            table = try #require(run.child(table, 0))
        }
        #expect(table.isSpecialRoot && table.role.level == 3)
        let entry = SPTE(rawValue: run.spte(table, 0))
        #expect(entry.rawValue == SPTE.nonLeaf(child: entry.frame).rawValue, "pae_root entry under pml4_root is \(entry)")
        #expect(run.machine.auditFailures.isEmpty, "\(run.machine.auditFailures.prefix(3))")
    }

    @Test("local-eager fills a local root's entries at load and links them like any child")
    func localEagerFillsAtLoad() throws {
        let run = try ShadowRun("""
            machine memory=16M
            poke 0x1000 0x2007
            poke 0x2000 0x5007
            cr3 0x1000
            cr0 0x80000011
            read 0x0
            """, mmu: .shadow(host: .bits64, roots: .localEager))
        run.runToEnd()
        let root = try #require(run.root())
        #expect(root.isLocal && run.presentEntries(root) == [0, 1, 2, 3])
        for index in 0..<4 {
            let child = try #require(run.child(root, index))
            #expect(child.parentSPTEs == [root.spteAddress(index)] && child.rootCount == 0 && child.role.quadrant == index)
        }
        run.expectClean()
    }

    @Test("Every example and regression scenario gets the same verdict under every root design (but the documented bug)")
    func designsAgreeOnTheShippedScenarios() throws {
        let folders = [repositoryFile("examples"), RegressionScenarioTests.directory]
        var compared = 0
        for folder in folders {
            for name in try FileManager.default.contentsOfDirectory(atPath: folder.path).filter({ $0.hasSuffix(".scenario") }).sorted() {
                let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
                let scenario = try ScenarioParser.parse(text, fileName: name)
                let fixes = RegressionScenarioTests.fixes[name] ?? []
                let reports = try DifferentialChecker.check(
                    scenario, under: DifferentialChecker.configurations(roots: [.local, .localEager, .special]), fixes: fixes)
                let local = Dictionary(
                    reports.filter { $0.configuration.roots == .local }.map { ($0.configuration.description, $0.verdict) }, uniquingKeysWith: { a, _ in a })
                for report in reports where report.configuration.roots != .local {
                    compared += 1
                    let expected = local[report.configuration.with(roots: .local).description]
                    let documented = report.configuration.roots == .special && report.verdict == .deviation([.nptPDPTEsReadAtRootLoad])
                    #expect(report.verdict == expected || documented,
                            "\(name) under \(report.configuration): \(report.verdict), under local roots \(expected.map { "\($0)" } ?? "not run") \(report.mismatches.prefix(3)) \(report.auditFailures.prefix(3))")
                }
            }
        }
        #expect(compared > 100, "only \(compared) comparisons")
    }
}
