@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

/// A PAE guest under shadow paging: the PDPTE registers, latched by MOV CR3
/// and by paging-related CR0/CR4 writes, decide translation (DESIGN.md §4
/// "PDPTE semantics"; the series' §7 items 5 and 6).
@Suite("PAE guests: PDPTE latching")
struct PDPTELatchingTests {
    static let scenario = """
        machine memory=16M
        poke 0x1000 0x2001                  # PDPTE[0] -> PD 0x2000; PDPTE[1] not present
        poke 0x2000 0x3007
        poke 0x3008 0x100007
        poke 0x4000 0x600083                # PD 0x4000: PDE[0] = 2 MiB page at 0x600000
        poke 0x100000 0x1111
        poke 0x600010 0x6666
        cr4 0x20
        cr3 0x1000
        cr0 0x80010001
        read 0x1000
        expect ok gpa=0x100000 value=0x1111
        read 0x40000010
        expect fault ec=0x0
        # @before-store
        store 0x1008 0x4001                 # PDPTE[1] -> PD 0x4000, in memory only
        read 0x40000010
        expect fault ec=0x0
        invlpg 0x40000010
        read 0x40000010
        expect fault ec=0x0
        # @after-store
        cr3 0x1000                          # different PDPTE values: the root goes
        # @reloaded
        read 0x40000010
        expect ok gpa=0x600010 value=0x6666
        # @rebuilt
        cr3 0x1000                          # identical PDPTE values
        # @same-values
        read 0x40000010
        expect ok gpa=0x600010 value=0x6666
        cr4 0xa0                            # PGE: reloads the PDPTEs, still identical
        # @pge-same
        read 0x1000
        expect ok gpa=0x100000 value=0x1111
        store 0x1008 0x0                    # PDPTE[1] not present in memory ...
        read 0x1000
        # @pge-before
        cr4 0x20                            # ... and a CR4.PGE write latches it: different values
        # @pge-different
        read 0x40000010
        expect fault ec=0x0
        """

    @Test("A store to the PDPT changes no translation and keeps the root until the next reload", arguments: bothHosts)
    func storeToPDPTChangesNothing(host: HostKind) throws {
        let run = try ShadowRun(Self.scenario, host: host)
        run.run(upTo: "before-store")
        let root = try #require(run.root())
        let created = run.mmu.statistics.localRootsCreated
        #expect(run.presentEntries(root) == [0])
        run.run(upTo: "after-store")
        #expect(run.root() === root, "a store to the PDPT replaced the root")
        #expect(run.presentEntries(root) == [0], "a store to the PDPT filled PAE root entry 1")
        #expect(run.mmu.statistics.localRootsCreated == created)
        #expect(run.vm.vcpus[0].registers.pdptes[1] == 0 && run.mmu.contexts[0].registers.pdptes[1] == 0)
        // Local pages are never write-protected: the PDPT's frame is not tracked and the store did not trap.
        #expect(run.mmu.writeTrack[1] == nil && run.mmu.statistics.trappedStores == 0)
        run.runToEnd()
        run.expectClean()
        try expectMatchesReference(Self.scenario, name: "pdpte-latching.scenario")
    }

    @Test("A reload with different PDPTE values drops the current root; a new local root maps the new PD", arguments: bothHosts)
    func reloadWithDifferentValuesDropsRoot(host: HostKind) throws {
        let run = try ShadowRun(Self.scenario, host: host)
        run.run(upTo: "after-store")
        let root = try #require(run.root())
        let created = run.mmu.statistics.localRootsCreated
        run.run(upTo: "reloaded")
        #expect(run.root() == nil, "MOV CR3 with new PDPTE values kept the root")
        run.run(upTo: "rebuilt")
        let rebuilt = try #require(run.root())
        #expect(rebuilt !== root && run.mmu.statistics.localRootsCreated == created + 1)
        #expect(run.child(rebuilt, 1)?.gfn == 4, "PAE root entry 1 does not link the shadow of PD 0x4000")

        // A CR4 write that latches different values drops the root too.
        run.run(upTo: "pge-before")
        let beforePGE = try #require(run.root())
        run.run(upTo: "pge-different")
        #expect(run.root() == nil, "a CR4.PGE write latching new PDPTE values kept the root")
        #expect(!run.isLive(beforePGE))
        run.runToEnd()
        let last = try #require(run.root())
        #expect(!run.presentEntries(last).contains(1))
        run.expectClean()
    }

    @Test("A CR4 write that reloads identical PDPTE values keeps the root", arguments: bothHosts)
    func cr4ReloadWithIdenticalValuesKeepsRoot(host: HostKind) throws {
        let run = try ShadowRun(Self.scenario, host: host)
        run.run(upTo: "same-values")
        run.step()  // the read after it: a root is loaded
        run.step()
        let root = try #require(run.root())
        let created = run.mmu.statistics.localRootsCreated
        run.run(upTo: "pge-same")
        #expect(run.root() === root, "a CR4.PGE write with identical PDPTE values dropped the root")
        #expect(run.mmu.statistics.localRootsCreated == created)
        run.runToEnd()
        run.expectClean()
    }

    /// KVM's `kvm_set_cr3` calls `kvm_mmu_new_pgd` only when the CR3 value
    /// changes; for PAE paging it always reloads the PDPTEs, and `load_pdptrs`
    /// frees the current root only when they differ ([LP21]). So MOV CR3 of
    /// the current value with the same PDPTEs keeps the local root (§7 item 6).
    @Test("MOV CR3 of the same value with identical PDPTE values keeps the local root", arguments: bothHosts)
    func cr3ReloadWithIdenticalValuesKeepsRoot(host: HostKind) throws {
        let run = try ShadowRun(Self.scenario, host: host)
        run.run(upTo: "rebuilt")
        let root = try #require(run.root())
        let created = run.mmu.statistics.localRootsCreated
        run.run(upTo: "same-values")
        #expect(run.root() === root, "MOV CR3 with identical PDPTE values dropped the local root")
        run.step()
        #expect(run.mmu.statistics.localRootsCreated == created, "a new local root was built")
        run.runToEnd()
        run.expectClean()
    }
}
