import MMUEncoding
@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

/// The root shapes of DESIGN.md §4, rows 1–4: which tables on a root path are
/// local shadow pages, and what the lowest local page's entries link.
@Suite("Root shapes (DESIGN.md §4 rows 1–4)")
struct RootShapeTests {
    /// The bits a local PAE-root entry may carry besides the address: P and the
    /// software shadow-present marker in ignored bit 11.
    static let pdpteFlags = SPTE.present | SPTE.shadowPresent

    /// A level-3 local root that is the hardware's PAE PDPT: gfn 0, owned by
    /// vCPU 0, outside the hash and the page count, on the context's PAE root
    /// frame below 4 GiB, and with entries only in PDPTE format.
    func expectLocalPAERoot(_ run: ShadowRun, _ root: ShadowPage, direct: Bool, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(root.isLocal && root.owner == 0, sourceLocation: sourceLocation)
        #expect(root.role.level == 3 && root.role.direct == direct && root.gfn == 0, "root \(root.role)", sourceLocation: sourceLocation)
        #expect(!run.isHashed(root), "a local root is in the hash", sourceLocation: sourceLocation)
        #expect(run.mmu.usedPages == run.mmu.hash.count, sourceLocation: sourceLocation)
        #expect(root.frame < 0x10_0000, "PAE root frame \(root.frame) is not below 4 GiB", sourceLocation: sourceLocation)
        #expect(root.frame == run.mmu.contexts[0].paeRootFrame, sourceLocation: sourceLocation)
        #expect(run.presentEntries(root).allSatisfy { $0 < 4 }, "entries beyond 3 in a PAE root", sourceLocation: sourceLocation)
        for index in run.presentEntries(root) {
            let raw = run.spte(root, index)
            #expect(raw & ~SPTE.addressMask == Self.pdpteFlags, "PAE root entry \(index) is \(raw.hex): not PDPTE format", sourceLocation: sourceLocation)
            #expect(raw & SPTE.addressMask == (run.child(root, index)?.frame ?? 0) << 12, sourceLocation: sourceLocation)
        }
    }

    @Test("Row 1: nonpaging guest — local direct L3 root, entry i → direct L2 page with gfn i<<18, created on demand",
          arguments: bothHosts)
    func nonpagingGuestRoot(host: HostKind) throws {
        let run = try ShadowRun("""
            machine memory=16M
            poke 0x5000 0x1122334455667788
            # @loaded
            read 0x5000
            expect ok gpa=0x5000 value=0x1122334455667788
            read 0x40005000
            read 0x80005000
            read 0xc0005000
            """, host: host)
        run.run(upTo: "loaded")
        let root = run.mmu.loadRoot(vcpu: 0)
        expectLocalPAERoot(run, root, direct: true)
        #expect(run.presentEntries(root).isEmpty, "entries present right after the root was loaded")
        #expect(run.mmu.statistics.localRootsCreated == 1)

        run.runToEnd()
        #expect(run.root() === root, "the root changed without any reason")
        expectLocalPAERoot(run, root, direct: true)
        #expect(run.presentEntries(root) == [0, 1, 2, 3])
        for index in 0..<4 {
            let child = try #require(run.child(root, index))
            #expect(child.role.level == 2 && child.role.direct && !child.isLocal, "entry \(index): \(child.role)")
            #expect(child.gfn == UInt64(index) << 18, "entry \(index) links gfn \(child.gfn.hex)")
            #expect(run.isHashed(child))
        }
        run.expectClean()
    }

    @Test("Row 2: 32-bit guest — local L3 root, entry i → hashed L2 page with gfn = CR3 gfn and quadrant i",
          arguments: bothHosts)
    func thirtyTwoBitGuestRoot(host: HostKind) throws {
        let run = try ShadowRun("""
            machine memory=16M
            poke 0x1000 0x2007 width=4      # PDE[0]   GiB 0 -> PT 0x2000
            poke 0x1400 0x2007 width=4      # PDE[256] GiB 1
            poke 0x1800 0x2007 width=4      # PDE[512] GiB 2
            poke 0x1c00 0x2007 width=4      # PDE[768] GiB 3
            poke 0x2004 0x100007 width=4    # PTE[1] -> 0x100000
            poke 0x100000 0xabcd
            cr3 0x1000
            cr0 0x80010001
            # @loaded
            read 0x1000
            expect ok gpa=0x100000 value=0xabcd
            read 0x40001000
            expect ok gpa=0x100000
            read 0x80001000
            expect ok gpa=0x100000
            read 0xc0001000
            expect ok gpa=0x100000
            """, host: host)
        run.run(upTo: "loaded")
        let root = run.mmu.loadRoot(vcpu: 0)
        expectLocalPAERoot(run, root, direct: false)
        #expect(root.role.hasFourByteGPTE)
        #expect(run.presentEntries(root).isEmpty, "entries present right after the root was loaded")

        run.runToEnd()
        #expect(run.root() === root)
        expectLocalPAERoot(run, root, direct: false)
        #expect(run.presentEntries(root) == [0, 1, 2, 3])
        for index in 0..<4 {
            let child = try #require(run.child(root, index))
            #expect(child.role.level == 2 && !child.role.direct && !child.isLocal && child.role.hasFourByteGPTE)
            #expect(child.gfn == 1 && child.role.quadrant == index, "entry \(index) links gfn \(child.gfn.hex) quadrant \(child.role.quadrant)")
            #expect(run.isHashed(child))
        }
        run.expectClean()
    }

    @Test("Row 3: PAE guest — local L3 root, entry i → L2 page of the PD in PDPTE register i (quadrant 0); not-present PDPTE → empty",
          arguments: bothHosts)
    func paeGuestRoot(host: HostKind) throws {
        let run = try ShadowRun("""
            machine memory=16M
            poke 0x1000 0x2001              # PDPTE[0] -> PD 0x2000
            poke 0x1008 0x3001              # PDPTE[1] -> PD 0x3000
            #                                 PDPTE[2] not present
            poke 0x1018 0x4001              # PDPTE[3] -> PD 0x4000
            poke 0x2000 0x5007
            poke 0x3000 0x5007
            poke 0x4000 0x5007
            poke 0x5008 0x100007
            cr4 0x20
            cr3 0x1000
            cr0 0x80010001
            # @loaded
            read 0x1000
            expect ok gpa=0x100000
            read 0x40001000
            expect ok gpa=0x100000
            read 0x80001000
            expect fault ec=0x0
            read 0xc0001000
            expect ok gpa=0x100000
            """, host: host)
        run.run(upTo: "loaded")
        let root = run.mmu.loadRoot(vcpu: 0)
        expectLocalPAERoot(run, root, direct: false)
        #expect(!root.role.hasFourByteGPTE)
        #expect(run.presentEntries(root).isEmpty, "entries present right after the root was loaded")

        run.runToEnd()
        #expect(run.root() === root)
        expectLocalPAERoot(run, root, direct: false)
        #expect(run.presentEntries(root) == [0, 1, 3], "a not-present PDPTE must leave its entry empty")
        for (index, gfn) in [(0, UInt64(2)), (1, 3), (3, 4)] {
            let child = try #require(run.child(root, index))
            #expect(child.role.level == 2 && !child.role.direct && !child.isLocal)
            #expect(child.gfn == gfn && child.role.quadrant == 0, "entry \(index) links gfn \(child.gfn.hex) quadrant \(child.role.quadrant)")
        }
        run.expectClean()
    }

    @Test("Row 4: 4- and 5-level guests — no local page; the root is a hashed page of the guest's level with gfn = CR3 gfn",
          arguments: [4, 5])
    func longModeGuestRoot(levels: Int) throws {
        let text = """
            machine memory=16M
            poke 0x1000 0x2007
            poke 0x2000 0x3007
            poke 0x3000 0x4007
            poke 0x4000 0x5007
            poke 0x5008 0x100007
            poke 0x100000 0x4545
            cr4 \(levels == 5 ? "0x1020" : "0x20")
            cr3 \(levels == 5 ? "0x1000" : "0x2000")
            efer 0x100
            cr0 0x80010001
            read 0x1000 user
            expect ok gpa=0x100000 value=0x4545
            """
        let run = try ShadowRun(text)
        run.runToEnd()
        let root = try #require(run.root())
        #expect(!root.isLocal && run.isHashed(root))
        #expect(root.role.level == levels && !root.role.direct)
        #expect(root.gfn == (levels == 5 ? 1 : 2), "root gfn \(root.gfn.hex)")
        #expect(root.rootCount == 1)
        #expect(!run.mmu.contexts[0].usingLocalRootPage)
        #expect(run.mmu.statistics.localRootsCreated == 0 && run.mmu.statistics.localPagesCreated == 0)
        #expect(run.mmu.contexts[0].paeRootFrame == nil, "a PAE root frame was allocated for a \(levels)-level guest")
        #expect(run.mmu.livePages.allSatisfy { !$0.isLocal })
        run.expectClean()

        // A 32-bit PAE host cannot run it at all.
        var scenario = try ScenarioParser.parse(text, fileName: "long.scenario")
        scenario.mmu = .shadow(host: .pae32)
        #expect(throws: ScenarioError.self) { try ScenarioRunner(scenario) }
    }
}
