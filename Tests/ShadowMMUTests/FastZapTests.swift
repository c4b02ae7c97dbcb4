@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

/// A fast zap (generation flip) with a local root loaded (DESIGN.md §4, last
/// rule; the series' §7 item 23).
@Suite("Fast zap with a loaded local root")
struct FastZapTests {
    static let scenarios: [(name: String, text: String)] = [
        ("pae", """
            machine memory=16M
            poke 0x1000 0x2001
            poke 0x1008 0x3001
            poke 0x2000 0x4007
            poke 0x3000 0x4007
            poke 0x4008 0x100007
            poke 0x4010 0x101003
            poke 0x100000 0xaa
            poke 0x101000 0xbb
            cr4 0x20
            cr3 0x1000
            cr0 0x80010001
            read 0x1000 user
            expect ok gpa=0x100000 value=0xaa
            read 0x40002000
            expect ok gpa=0x101000 value=0xbb
            # @before-zap
            host zap-all
            # @zapped
            read 0x1000 user
            expect ok gpa=0x100000 value=0xaa
            # @rebuilt
            write 0x40002000 value=0xcc width=1
            read 0x40002000
            expect ok gpa=0x101000 value=0xcc
            read 0x2000 user
            expect fault ec=0x5
            peek 0x4010
            expect value=0x101063
            """),
        ("32-bit", """
            machine memory=16M
            poke 0x1000 0x2007 width=4
            poke 0x1400 0x2007 width=4
            poke 0x2004 0x100007 width=4
            poke 0x2008 0x101003 width=4
            poke 0x100000 0xaa
            poke 0x101000 0xbb
            cr3 0x1000
            cr0 0x80010001
            read 0x1000 user
            expect ok gpa=0x100000 value=0xaa
            read 0x40002000
            expect ok gpa=0x101000 value=0xbb
            # @before-zap
            host zap-all
            # @zapped
            read 0x1000 user
            expect ok gpa=0x100000 value=0xaa
            # @rebuilt
            write 0x40002000 value=0xcc width=1
            read 0x40002000
            expect ok gpa=0x101000 value=0xcc
            read 0x2000 user
            expect fault ec=0x5
            peek 0x2008 width=4
            expect value=0x101063
            """),
        ("nonpaging", """
            machine memory=16M
            poke 0x1000 0xaa
            read 0x1000
            expect ok gpa=0x1000 value=0xaa
            # @before-zap
            host zap-all
            # @zapped
            read 0x1000
            expect ok gpa=0x1000 value=0xaa
            # @rebuilt
            write 0x1000 value=0xcc width=1
            read 0x1000
            expect ok gpa=0x1000 value=0xcc
            """),
    ]

    @Test("host zap-all makes the loaded local root obsolete; the next access builds a new current one",
          arguments: bothHosts, [0, 1, 2])
    func zapAllRebuildsLocalRoot(host: HostKind, which: Int) throws {
        let (name, text) = Self.scenarios[which]
        let run = try ShadowRun(text, host: host, name: "\(name).scenario")
        run.run(upTo: "before-zap")
        let root = try #require(run.root())
        #expect(root.isLocal && !run.mmu.isObsolete(root), "\(name)")
        let created = run.mmu.statistics.localRootsCreated

        run.run(upTo: "zapped")
        #expect(run.mmu.isObsolete(root), "\(name): the local root survived the generation flip as current")
        #expect(run.presentEntries(root).isEmpty, "\(name): zapped children are still linked from the local root")
        #expect(run.mmu.hashedPages.isEmpty, "\(name): obsolete pages left in the hash")

        run.run(upTo: "rebuilt")
        let rebuilt = try #require(run.root())
        #expect(rebuilt !== root, "\(name): the obsolete local root was reused")
        #expect(rebuilt.isLocal && rebuilt.generation == run.mmu.generation && !run.mmu.isObsolete(rebuilt))
        #expect(run.mmu.statistics.localRootsCreated == created + 1)
        #expect(!run.isLive(root))
        run.runToEnd()
        run.expectClean()
        let reference = try referenceRun(text)
        #expect(run.printed == reference.printed, "\(name) under \(host) differs from mmu native")
    }

    @Test("The guest-visible results around a zap-all match mmu native", arguments: [0, 1, 2])
    func zapAllMatchesReference(which: Int) throws {
        let (name, text) = Self.scenarios[which]
        let reference = try referenceRun(text)
        #expect(reference.failures.isEmpty, "\(name): the scenario's own expectations fail natively: \(reference.failures)")
        try expectMatchesReference(text, name: "\(name)-zap.scenario")
    }
}
