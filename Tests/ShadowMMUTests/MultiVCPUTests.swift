@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

/// Several vCPUs on one MMU: local roots are per vCPU, everything below them
/// is shared through the hash; zapping by one vCPU never leaves another
/// walking a freed frame (DESIGN.md §4 and §5.3).
@Suite("Several vCPUs")
struct MultiVCPUTests {
    static func sameCR3(_ guest: String) -> String {
        let setup = guest == "pae" ? """
            poke 0x1000 0x2001
            poke 0x1008 0x5001
            poke 0x2000 0x3007
            poke 0x5000 0x3007
            poke 0x3008 0x100007
            """ : """
            poke 0x1000 0x3007 width=4
            poke 0x1400 0x3007 width=4
            poke 0x3004 0x100007 width=4
            """
        let cr4 = guest == "pae" ? "cr4 0x20" : "cr4 0x0"
        return """
            machine memory=16M vcpus=2
            \(setup)
            poke 0x100000 0x5a
            vcpu 0
            \(cr4)
            cr3 0x1000
            cr0 0x80010001
            read 0x1000
            expect ok gpa=0x100000 value=0x5a
            read 0x40001000
            expect ok gpa=0x100000 value=0x5a
            vcpu 1
            \(cr4)
            cr3 0x1000
            cr0 0x80010001
            read 0x1000
            expect ok gpa=0x100000 value=0x5a
            read 0x40001000
            expect ok gpa=0x100000 value=0x5a
            # @shared
            cr0 0x80000001                  # vCPU 1: CR0.WP=0, another page role
            read 0x1000
            expect ok gpa=0x100000 value=0x5a
            # @other-role
            """
    }

    @Test("Same CR3 on two vCPUs: hashed L2/L1 pages shared, one local root per vCPU",
          arguments: bothHosts, ["pae", "32-bit"])
    func vcpusShareHashedPagesNotLocalRoots(host: HostKind, guest: String) throws {
        let run = try ShadowRun(Self.sameCR3(guest), host: host)
        run.run(upTo: "shared")
        let root0 = try #require(run.root(vcpu: 0))
        let root1 = try #require(run.root(vcpu: 1))
        #expect(root0 !== root1 && root0.frame != root1.frame, "the vCPUs share a local root")
        #expect(root0.isLocal && root0.owner == 0 && root1.isLocal && root1.owner == 1)
        #expect(run.mmu.contexts[0].paeRootFrame != run.mmu.contexts[1].paeRootFrame)
        for index in 0..<2 {
            let directory = try #require(run.child(root0, index))
            #expect(run.child(root1, index) === directory, "\(guest) PAE root entry \(index): L2 pages not shared")
            #expect(Set(directory.parentSPTEs) == [root0.spteAddress(index), root1.spteAddress(index)])
            let table0 = try #require(run.child(directory, 0))
            #expect(!table0.isLocal && run.isHashed(table0))
        }
        let low0 = try #require(run.child(root0, 0)), high1 = try #require(run.child(root1, 1))
        #expect(run.child(low0, 0) === run.child(high1, 0), "the PT shadow is not the same page under both vCPUs and both GiBs")
        #expect(run.mmu.livePages.filter(\.isLocal).count == 2)

        // Sharing is by (gfn, role): a vCPU with another CR0.WP gets its own L2 page.
        run.run(upTo: "other-role")
        let wpOff = try #require(run.root(vcpu: 1))
        let directory0 = try #require(run.child(root0, 0))
        let directory1 = try #require(run.child(wpOff, 0))
        #expect(directory1 !== directory0 && directory1.gfn == directory0.gfn && !directory1.role.cr0WP)
        run.runToEnd()
        run.expectClean()
    }

    /// vCPU 0 keeps reading through its local root while vCPU 1 writes vCPU
    /// 0's page directory (emulated writes, then write flooding), writes its
    /// page table (unsync), and the host zaps everything and caps the pages.
    static let zapping = """
        machine memory=16M vcpus=2
        poke 0x1000 0x2001                  # vCPU 0: PDPT 0x1000 -> PD 0x2000 -> PT 0x3000
        poke 0x1008 0x2001                  #         GiB 1 shares the PD
        poke 0x2000 0x3007
        poke 0x3008 0x100007
        poke 0x3010 0x101007
        poke 0x3018 0x102007
        poke 0x3020 0x103007
        poke 0x1020 0x4001                  # vCPU 1: PDPT 0x1020 -> PD 0x4000 -> PT 0x5000
        poke 0x4000 0x5007
        poke 0x5008 0x2003                  # vCPU 1 linear 0x1000 -> vCPU 0's PD
        poke 0x5010 0x3003                  # vCPU 1 linear 0x2000 -> vCPU 0's PT
        poke 0x100000 0x10
        poke 0x101000 0x11
        poke 0x102000 0x12
        poke 0x103000 0x13
        vcpu 0
        cr4 0x20
        cr3 0x1000
        cr0 0x80010001
        read 0x1000
        read 0x2000
        read 0x40003000
        vcpu 1
        cr4 0x20
        cr3 0x1020
        cr0 0x80010001
        write 0x1000                        # rewrite PDE[0] of vCPU 0's PD (same value): emulated
        vcpu 0
        read 0x1000
        vcpu 1
        write 0x1000
        write 0x1000
        write 0x1000                        # three in a row: flooding zaps the PD's shadow
        # @flooded
        vcpu 0
        read 0x2000
        expect ok gpa=0x101000 value=0x11
        read 0x40004000
        expect ok gpa=0x103000 value=0x13
        vcpu 1
        write 0x2008                        # vCPU 0's PT, PTE[1] (same value): the PT goes unsync
        write 0x2010 value=0x102007         # PTE[2] now -> 0x102000
        vcpu 0
        invlpg 0x2000
        read 0x2000
        expect ok gpa=0x102000 value=0x12
        host zap-all
        read 0x1000
        expect ok gpa=0x100000 value=0x10
        vcpu 1
        read 0x1000
        vcpu 0
        read 0x40003000
        host max-shadow-pages 8
        read 0x1000
        read 0x2000
        read 0x3000
        read 0x40004000
        vcpu 1
        write 0x1000
        read 0x2000
        write 0x1000
        write 0x1000
        vcpu 0
        read 0x1000
        expect ok gpa=0x100000 value=0x10
        read 0x40002000
        expect ok gpa=0x102000 value=0x12
        host zap-all
        vcpu 1
        write 0x1000
        vcpu 0
        read 0x3000
        expect ok gpa=0x102000 value=0x12
        # @end
        """

    @Test("Zapping driven by another vCPU never leaves a freed frame reachable or read", arguments: bothHosts)
    func noUseOfFreedFramesUnderZapping(host: HostKind) throws {
        let run = try ShadowRun(Self.zapping, host: host)
        run.run(upTo: "flooded")
        #expect(run.mmu.statistics.pagesFlooded >= 1, "vCPU 1's writes did not flood vCPU 0's PD shadow")
        let root = try #require(run.root(vcpu: 0))
        #expect(run.presentEntries(root).isEmpty, "vCPU 0's local root still links the flooded PD shadow")
        run.runToEnd()
        #expect(run.mmu.statistics.fastZaps == 2 && run.mmu.statistics.pagesRecycled > 0)
        #expect(run.mmu.statistics.unsyncs >= 1)
        run.expectClean()
        #expect(run.vm.host.poisonedReads == 0)
        let reference = try referenceRun(Self.zapping)
        #expect(reference.failures.isEmpty)
        #expect(run.printed == reference.printed)
    }

    @Test("Negative control: a frame freed while a loaded root still reaches it is reported by the audit")
    func auditCatchesReachableFreedFrame() throws {
        let run = try ShadowRun(Self.zapping)
        run.run(upTo: "flooded")
        run.step()  // vcpu 0
        run.step()  // read 0x2000: vCPU 0's root links the PD and PT shadows again
        run.expectClean()
        let root = try #require(run.root(vcpu: 0))
        let directory = try #require(run.child(root, 0))
        let table = try #require(run.child(directory, 0))
        run.vm.host.freeTableFrame(table.frame)  // a use-after-free the MMU did not notice
        let problems = run.mmu.audit(level: .structure, at: "negative control")
        #expect(problems.contains { $0.contains("freed frame \(table.frame.hex)") }, "audit missed it: \(problems)")
        #expect(problems.contains { $0.contains("vCPU 0's root reaches freed frame") }, "\(problems)")
        // And the hardware walking it is counted as a poisoned read.
        _ = run.vm.host.load(table.spteAddress(1), width: 8)
        #expect(run.vm.host.poisonedReads == 1)
        #expect(run.mmu.audit(level: .structure, at: "negative control").contains { $0.contains("reads of freed host frames") })
    }
}
