@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

/// Local roots are one-off: freed on every root change, while the ordinary
/// pages below them are only unlinked and found again (DESIGN.md §4; the
/// series' §7 items 10, 11 and 20).
@Suite("Local roots: freeing and reuse of their children")
struct LocalRootLifecycleTests {
    @Test("PAE guest: MOV CR3 away and back frees the local root; the same L2 pages are linked again", arguments: bothHosts)
    func paeChildrenSurviveCR3Switch(host: HostKind) throws {
        let run = try ShadowRun("""
            machine memory=16M
            poke 0x1000 0x2001              # PDPT A: PDPTE[0] -> PD 0x2000
            poke 0x1008 0x3001              #         PDPTE[1] -> PD 0x3000
            poke 0x1020 0x6001              # PDPT B: PDPTE[0] -> PD 0x6000
            poke 0x2000 0x4007
            poke 0x3000 0x4007
            poke 0x6000 0x4007
            poke 0x4008 0x100007
            poke 0x100000 0x77
            cr4 0x20
            cr3 0x1000
            cr0 0x80010001
            read 0x1000
            expect ok gpa=0x100000 value=0x77
            read 0x40001000
            expect ok gpa=0x100000 value=0x77
            # @touched
            cr3 0x1020
            # @switched
            read 0x1000
            expect ok gpa=0x100000 value=0x77
            cr3 0x1000
            read 0x1000
            expect ok gpa=0x100000 value=0x77
            read 0x40001000
            expect ok gpa=0x100000 value=0x77
            # @back
            """, host: host)
        run.run(upTo: "touched")
        let firstRoot = try #require(run.root())
        let directory0 = try #require(run.child(firstRoot, 0))
        let directory1 = try #require(run.child(firstRoot, 1))
        let frames = (directory0.frame, directory1.frame)
        let rootsCreated = run.mmu.statistics.localRootsCreated
        let localFreed = run.mmu.statistics.localPagesFreed

        run.run(upTo: "switched")
        #expect(run.root() == nil, "MOV CR3 kept a local root")
        #expect(!run.isLive(firstRoot), "the freed local root is still a live page")
        #expect(run.mmu.pageByFrame[firstRoot.frame] !== firstRoot)
        #expect(run.mmu.statistics.localPagesFreed == localFreed + 1)
        for directory in [directory0, directory1] {
            #expect(run.isHashed(directory), "L2 page of gfn \(directory.gfn.hex) was zapped with the root")
            #expect(directory.parentSPTEs.isEmpty, "L2 page of gfn \(directory.gfn.hex) still lists parents \(directory.parentSPTEs)")
        }
        #expect(run.mmu.contexts[0].cachedRoots.isEmpty, "a local root went into prev_roots")

        run.run(upTo: "back")
        let root = try #require(run.root())
        #expect(root !== firstRoot)
        #expect(run.mmu.statistics.localRootsCreated == rootsCreated + 2)
        #expect(run.child(root, 0) === directory0 && run.child(root, 1) === directory1, "the L2 pages were not found again")
        #expect((directory0.frame, directory1.frame) == frames)
        #expect(directory0.parentSPTEs == [root.spteAddress(0)] && directory1.parentSPTEs == [root.spteAddress(1)])
        // The PAE root frame is the same backing page for every local root of the vCPU.
        #expect(root.frame == firstRoot.frame && root.frame == run.mmu.contexts[0].paeRootFrame)
        #expect(run.mmu.livePages.filter(\.isLocal).count == 1, "freed local pages are still live")
        run.expectClean()
    }

    @Test("32-bit guest: a CR4 write that resets the MMU context (SMEP) and CR3 switches reuse the quadrant L2 pages",
          arguments: bothHosts)
    func thirtyTwoBitChildrenSurviveContextReset(host: HostKind) throws {
        let run = try ShadowRun("""
            machine memory=16M
            poke 0x1000 0x2007 width=4      # PD A: PDE[0] -> PT 0x2000
            poke 0x1400 0x2007 width=4      #       PDE[256]
            poke 0x5000 0x2007 width=4      # PD B: PDE[0] -> PT 0x2000
            poke 0x2004 0x100007 width=4
            poke 0x100000 0x99
            cr3 0x1000
            cr0 0x80010001
            read 0x1000
            read 0x40001000
            # @touched
            cr4 0x100000                    # SMEP: not in the page role while CR0.WP=1
            # @reset
            read 0x1000
            expect ok gpa=0x100000 value=0x99
            read 0x40001000
            # @again
            cr3 0x5000
            read 0x1000
            expect ok gpa=0x100000 value=0x99
            cr3 0x1000
            read 0x40001000
            read 0x1000
            expect ok gpa=0x100000 value=0x99
            # @back
            """, host: host)
        run.run(upTo: "touched")
        let firstRoot = try #require(run.root())
        let quadrant0 = try #require(run.child(firstRoot, 0))
        let quadrant1 = try #require(run.child(firstRoot, 1))
        let table = try #require(run.child(quadrant0, 0))
        let rootsCreated = run.mmu.statistics.localRootsCreated

        run.run(upTo: "reset")
        #expect(run.root() == nil, "a CR4.SMEP write kept the old local root")
        #expect(!run.isLive(firstRoot))
        #expect(quadrant0.parentSPTEs.isEmpty && quadrant1.parentSPTEs.isEmpty && run.isHashed(quadrant0) && run.isHashed(quadrant1))

        run.run(upTo: "again")
        let secondRoot = try #require(run.root())
        #expect(secondRoot !== firstRoot && run.child(secondRoot, 0) === quadrant0 && run.child(secondRoot, 1) === quadrant1)
        #expect(run.child(quadrant0, 0) === table, "the L1 page below survived too")

        run.run(upTo: "back")
        let root = try #require(run.root())
        #expect(root !== secondRoot)
        #expect(run.child(root, 0) === quadrant0 && run.child(root, 1) === quadrant1)
        #expect(run.mmu.statistics.localRootsCreated == rootsCreated + 3)
        #expect(run.mmu.livePages.filter(\.isLocal).map(ObjectIdentifier.init) == [ObjectIdentifier(root)])
        run.expectClean()
    }
}
