@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

/// A 32-bit guest's 1024-entry tables shadowed by 512-entry pages (DESIGN.md
/// §4 row 2; the series' §7 item 13).
@Suite("32-bit guests: quadrants")
struct QuadrantTests {
    static let scenario = """
        machine memory=16M
        poke 0x1000 0x2007 width=4          # PDE[0]   GiB 0 -> PT 0x2000
        poke 0x1004 0x400087 width=4        # PDE[1]   4 MiB page at 0x400000
        poke 0x1400 0x2007 width=4          # PDE[256] GiB 1 -> PT 0x2000
        poke 0x1800 0x2007 width=4          # PDE[512] GiB 2 -> PT 0x2000
        poke 0x1c00 0x2007 width=4          # PDE[768] GiB 3 -> PT 0x2000
        poke 0x2004 0x100007 width=4        # PTE[1]     linear 0x001000 (bit 21 = 0) -> 0x100000
        poke 0x2804 0x101007 width=4        # PTE[0x201] linear 0x201000 (bit 21 = 1) -> 0x101000
        poke 0x100000 0x1010
        poke 0x101000 0x1111
        poke 0x400010 0x4444
        poke 0x600010 0x6666
        cr4 0x10                            # PSE
        cr3 0x1000
        cr0 0x80010001
        read 0x1000
        expect ok gpa=0x100000 value=0x1010
        read 0x40001000
        expect ok gpa=0x100000 value=0x1010
        read 0x80001000
        expect ok gpa=0x100000 value=0x1010
        read 0xc0001000
        expect ok gpa=0x100000 value=0x1010
        read 0x201000
        expect ok gpa=0x101000 value=0x1111
        read 0x400010                       # the 4 MiB page, first 2 MiB half
        expect ok gpa=0x400010 value=0x4444
        read 0x600010                       # second 2 MiB half
        expect ok gpa=0x600010 value=0x6666
        """

    @Test("The guest PD is shadowed by four quadrant L2 pages, one per GiB", arguments: bothHosts)
    func pageDirectoryHasFourQuadrants(host: HostKind) throws {
        let run = try ShadowRun(Self.scenario, host: host)
        run.runToEnd()
        let directories = run.hashedPages(gfn: 1, level: 2)
        #expect(directories.map(\.role.quadrant).sorted() == [0, 1, 2, 3], "PD shadows: \(directories.map(\.role))")
        #expect(directories.allSatisfy { !$0.role.direct && $0.role.hasFourByteGPTE })
        let root = try #require(run.root())
        for quadrant in 0..<4 {
            #expect(run.child(root, quadrant) === directories.first { $0.role.quadrant == quadrant })
        }
        // The guest PD is write-tracked once per quadrant page shadowing it (series §7 item 14);
        // the local root, gfn 0, tracks nothing.
        #expect(run.mmu.writeTrack[1] == 4, "write-track count of the PD: \(run.mmu.writeTrack[1] ?? 0)")
        #expect(run.mmu.writeTrack[0] == nil)
        run.expectClean()
    }

    @Test("A guest PT is shadowed by two L1 pages, quadrant = address bit 21", arguments: bothHosts)
    func pageTableHasTwoQuadrants(host: HostKind) throws {
        let run = try ShadowRun(Self.scenario, host: host)
        run.runToEnd()
        let tables = run.hashedPages(gfn: 2, level: 1)
        #expect(tables.map(\.role.quadrant).sorted() == [0, 1], "PT shadows: \(tables.map(\.role))")
        #expect(tables.allSatisfy { !$0.role.direct && $0.role.hasFourByteGPTE })
        // Quadrant 0 covers linear 0x000000–0x1fffff (shadow PDE 0), quadrant 1 0x200000–0x3fffff (PDE 1).
        let root = try #require(run.root())
        let directory = try #require(run.child(root, 0))
        #expect(run.child(directory, 0)?.role.quadrant == 0 && run.child(directory, 0)?.gfn == 2)
        #expect(run.child(directory, 1)?.role.quadrant == 1 && run.child(directory, 1)?.gfn == 2)
        // Each maps its half of the guest PT: PTE[1] in quadrant 0, PTE[0x201] in quadrant 1 at index 1.
        let low = try #require(tables.first { $0.role.quadrant == 0 })
        let high = try #require(tables.first { $0.role.quadrant == 1 })
        #expect(run.presentEntries(low) == [1] && run.mmu.mappedGFN(low, 1) == 0x100)
        #expect(run.presentEntries(high) == [1] && run.mmu.mappedGFN(high, 1) == 0x101)
        run.expectClean()
    }

    @Test("A guest 4 MiB page is mapped through direct level-1 pages, one per 2 MiB half", arguments: bothHosts)
    func largePageMapsThroughDirectPages(host: HostKind) throws {
        let run = try ShadowRun(Self.scenario, host: host)
        run.runToEnd()
        let root = try #require(run.root())
        let directory = try #require(run.child(root, 0))
        for (index, gfn) in [(2, UInt64(0x400)), (3, 0x600)] {
            let page = try #require(run.child(directory, index), "shadow PDE \(index) of the 4 MiB page is empty")
            #expect(page.role.direct && page.role.level == 1 && !page.isLocal, "PDE \(index): \(page.role)")
            #expect(page.gfn == gfn, "PDE \(index) maps gfn \(page.gfn.hex)")
            #expect(run.presentEntries(page) == [0] && run.mmu.mappedGFN(page, 0) == gfn)
        }
        // Direct pages shadow no guest table: nothing at 0x400/0x600 is write-tracked.
        #expect(run.mmu.writeTrack[0x400] == nil && run.mmu.writeTrack[0x600] == nil)
        run.expectClean()
        try expectMatchesReference(Self.scenario, name: "quadrants.scenario")
    }
}
