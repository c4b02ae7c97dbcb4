@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

/// Unsync leaf pages under a local root: the unsync-child bits reach the
/// local L3 page through ordinary parent pointers, and INVLPG and CR3 loads
/// resynchronize (DESIGN.md §4 "Children record the local entry…"; the
/// series' §7 item 25).
@Suite("Unsync pages under a local root")
struct UnsyncTests {
    /// PDPT A at 0x1000 and PDPT B at 0x1020 both name PD 0x2000; PT 0x3000
    /// maps linear 0x000000–0x1fffff, PT 0x5000 0x200000–0x3fffff.
    static func scenario(reload: String) -> String {
        """
        machine memory=16M
        poke 0x1000 0x2001
        poke 0x1020 0x2001
        poke 0x2000 0x3007
        poke 0x2008 0x5007
        poke 0x3008 0x100007                # linear 0x001000 -> 0x100000
        poke 0x5008 0x102007                # linear 0x201000 -> 0x102000
        poke 0x100000 0x10
        poke 0x101000 0x11
        poke 0x102000 0x12
        poke 0x103000 0x13
        cr4 0x20
        cr3 0x1000
        cr0 0x80010001
        read 0x1000
        expect ok gpa=0x100000 value=0x10
        read 0x201000
        expect ok gpa=0x102000 value=0x12
        # @synced
        store 0x3008 0x101007               # remap linear 0x1000 -> 0x101000
        # @unsync
        invlpg 0x1000
        read 0x1000
        expect ok gpa=0x101000 value=0x11
        # @resynced
        store 0x5008 0x103007               # remap linear 0x201000 -> 0x103000
        store 0x3008 0x100067               # and linear 0x1000 back to 0x100000
        # @two-unsync
        \(reload)
        # @reloaded
        read 0x201000
        expect ok gpa=0x103000 value=0x13
        # @after
        read 0x1000
        expect ok gpa=0x100000 value=0x10
        """
    }

    @Test("A store to a shadowed leaf PT makes its L1 page unsync and marks unsync-child bits up to the local L3 root",
          arguments: bothHosts)
    func unsyncPropagatesToLocalRoot(host: HostKind) throws {
        let run = try ShadowRun(Self.scenario(reload: "cr3 0x1000"), host: host)
        run.run(upTo: "synced")
        let root = try #require(run.root())
        let directory = try #require(run.child(root, 0))
        let table = try #require(run.child(directory, 0))
        #expect(table.gfn == 3 && !table.unsync && root.unsyncChildren == 0)

        run.run(upTo: "unsync")
        #expect(table.unsync, "the guest's store to its PT did not make the L1 page unsync")
        #expect(run.mmu.statistics.trappedStores == 0, "the store to an unsync-able leaf PT trapped")
        #expect(directory.hasUnsyncChild(0) && directory.unsyncChildren == 1, "the L2 page does not record its unsync child")
        #expect(root.hasUnsyncChild(0) && root.unsyncChildren == 1, "the unsync-child bit did not reach the local root")

        run.run(upTo: "resynced")
        #expect(run.printed.last?.contains("\"gpa\":\"0x101000\"") == true, "after INVLPG the read still used the old mapping: \(run.printed.last ?? "")")
        run.runToEnd()
        run.expectClean()
    }

    @Test("INVLPG resynchronizes the address: the next read sees the guest's new mapping", arguments: bothHosts)
    func invlpgResyncs(host: HostKind) throws {
        let text = Self.scenario(reload: "cr3 0x1000")
        let run = try ShadowRun(text, host: host)
        run.run(upTo: "unsync")
        let stale = try #require(run.leafSPTE(0x1000))
        #expect(stale.isShadowPresent && stale.frame == run.vm.memory.hostAddress(of: 0x100000)! >> 12)
        run.run(upTo: "resynced")
        let fresh = try #require(run.leafSPTE(0x1000))
        #expect(fresh.frame == run.vm.memory.hostAddress(of: 0x101000)! >> 12, "spte after INVLPG: \(fresh)")
        #expect(run.expectationFailures.isEmpty, "\(run.expectationFailures.map(\.description))")
        run.runToEnd()
        run.expectClean()
        try expectMatchesReference(text, name: "unsync-invlpg.scenario")
    }

    @Test("A CR3 load leaves no page unsync once the vCPU runs again (same CR3, and a switch to another PDPT)",
          arguments: bothHosts, ["cr3 0x1000", "cr3 0x1020"])
    func cr3ReloadSyncsEverything(host: HostKind, reload: String) throws {
        let text = Self.scenario(reload: reload)
        let run = try ShadowRun(text, host: host)
        run.run(upTo: "two-unsync")
        #expect(run.mmu.hashedPages.filter(\.unsync).map(\.gfn).sorted() == [3, 5], "expected PTs 0x3000 and 0x5000 unsync")
        run.run(upTo: "after")
        let unsync = run.mmu.livePages.filter(\.unsync)
        #expect(unsync.isEmpty, "\(reload): still unsync after the reload: \(unsync.map { "\($0.gfn.hex) \($0.role)" })")
        let marked = run.mmu.livePages.filter { $0.unsyncChildren > 0 }
        #expect(marked.isEmpty, "\(reload): unsync-child bits left on \(marked.map { "\($0.gfn.hex) \($0.role)" })")
        run.runToEnd()
        run.expectClean()
        try expectMatchesReference(text, name: "unsync-\(reload.replacingOccurrences(of: " ", with: "-")).scenario")
    }

    /// KVM with the series keeps the local root on a same-value MOV CR3 with
    /// identical PDPTEs and syncs it from the root down before the next entry
    /// (`KVM_REQ_MMU_SYNC` → `kvm_mmu_sync_roots`); here the root is freed
    /// instead and the pages are synced only when a fault links them again.
    @Test("Same-value MOV CR3: at the next VM entry the kept local root has been synced", arguments: bothHosts)
    func sameValueCR3SyncsAtEntry(host: HostKind) throws {
        let run = try ShadowRun(Self.scenario(reload: "cr3 0x1000"), host: host)
        run.run(upTo: "two-unsync")
        let root = try #require(run.root())
        run.run(upTo: "reloaded")
        let entered = run.mmu.loadRoot(vcpu: 0)  // what the next VM entry does
        #expect(entered === root, "the local root was not kept")
        #expect(run.mmu.livePages.filter(\.unsync).isEmpty, "pages still unsync at the entry after MOV CR3")
        run.runToEnd()
        run.expectClean()
    }
}
