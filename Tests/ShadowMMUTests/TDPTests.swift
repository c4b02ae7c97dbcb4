@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import VirtualMachine
import X86Paging

/// Two-dimensional paging (DESIGN.md §4 rows 5 and 6): the root shapes, huge
/// mappings, and the textbook memory-reference counts of cold walks, seen
/// through the whole machine.
@Suite("TDP")
struct TDPTests {
    /// A guest with 4- or 5-level tables mapping linear 0x1000 → 0x5000.
    static func guest(levels: Int, mmu: String, fourKiB: Bool = false) -> String {
        """
        machine memory=64M
        \(mmu)
        \(fourKiB ? "host dirty-log start  # the direct map uses 4 KiB pages while logging" : "")
        poke 0x10000 0x11027
        poke 0x11000 0x12027
        poke 0x12000 0x13027
        poke 0x13000 0x14027
        poke 0x14008 0x5067
        cr4 \(levels == 5 ? "0x1020" : "0x20")
        cr3 \(levels == 5 ? "0x10000" : "0x11000")
        efer 0x100
        cr0 0x80010001
        read 0x1000
        """
    }

    static func machine(_ text: String) throws -> (ScenarioRunner, HypervisorMachine) {
        let runner = try ScenarioRunner(try ScenarioParser.parse(text, fileName: "tdp.scenario"))
        let machine = try #require(runner.machine as? HypervisorMachine)
        machine.auditLevel = .full
        return (runner, machine)
    }

    @Test(arguments: [(4, 4, 24), (5, 5, 35), (4, 5, 29), (5, 4, 29)])
    func aColdWalkMakesTheTextbookNumberOfReferences(_ guestLevels: Int, _ tdpLevels: Int, _ expected: Int) throws {
        for format in ["ept", "npt"] {
            // The textbook counts assume 4 KiB pages in both dimensions.
            let text = Self.guest(levels: guestLevels, mmu: "mmu tdp format=\(format) levels=\(tdpLevels)", fourKiB: true) + "\nflush\nread 0x1000\n"
            let (runner, machine) = try Self.machine(text)
            // Everything up to the first read (which maps all of it), then the flush.
            while machine.vm.counters.accesses == 0 {
                runner.step(observe: { _ in }, expectationFailed: { _ in })
            }
            runner.step(observe: { _ in }, expectationFailed: { _ in })  // flush
            let walks = machine.vm.counters.hardwareWalks, references = machine.vm.counters.walkReferences
            runner.step(observe: { _ in }, expectationFailed: { _ in })  // the cold read
            #expect(machine.vm.counters.hardwareWalks == walks + 1, "\(format): the second read should walk once, without exits")
            #expect(machine.vm.counters.walkReferences - references == expected, "\(guestLevels)-level guest on \(tdpLevels)-level \(format)")
            #expect(machine.auditFailures.isEmpty, "\(machine.auditFailures)")
        }
    }

    @Test func hugeSecondStagePagesShortenEveryNestedWalk() throws {
        // With 2 MiB EPT leaves each nested walk takes 3 references instead of 4:
        // a 4-level guest's cold walk makes 5 × 3 + 4 = 19.
        let (runner, machine) = try Self.machine(Self.guest(levels: 4, mmu: "mmu tdp format=ept levels=4") + "\nflush\nread 0x1000\n")
        while machine.vm.counters.accesses == 0 { runner.step(observe: { _ in }, expectationFailed: { _ in }) }
        runner.step(observe: { _ in }, expectationFailed: { _ in })
        let references = machine.vm.counters.walkReferences
        runner.step(observe: { _ in }, expectationFailed: { _ in })
        #expect(machine.vm.counters.walkReferences - references == 19)
    }

    @Test func guestMemoryIsMappedWithHugePagesWhereAligned() throws {
        let (runner, machine) = try Self.machine(Self.guest(levels: 4, mmu: "mmu tdp format=ept levels=4"))
        runner.run()
        let root = try #require(machine.vm.mmu.dumpRoot(vcpu: 0))
        #expect(root.level == 4 && !root.local && root.direct)
        // 64 MiB: no 1 GiB page fits, so 2 MiB leaves in the level-2 page.
        guard case .table(let l3)? = root.entries.first?.entry, case .table(let l2)? = l3.entries.first?.entry else {
            Issue.record("no level-2 page under the root")
            return
        }
        #expect(l2.level == 2)
        #expect(l2.entries.allSatisfy { if case .leaf = $0.entry { true } else { false } }, "expected 2 MiB leaves only")
        #expect(machine.auditFailures.isEmpty, "\(machine.auditFailures)")
    }

    @Test func nptOnAPAEHostUsesALocalThreeLevelRoot() throws {
        let text = """
        machine memory=64M
        mmu tdp format=npt host=pae32
        poke 0x1000 0x2001
        poke 0x1008 0x2001
        poke 0x2000 0x3007
        poke 0x3008 0x5007
        cr4 0x20
        cr3 0x1000
        cr0 0x80010001
        read 0x1000
        read 0x40001000
        """
        let (runner, machine) = try Self.machine(text)
        runner.run()
        let root = try #require(machine.vm.mmu.dumpRoot(vcpu: 0))
        #expect(root.level == 3 && root.local && root.direct, "row 6: a local direct level-3 root")
        let indices = root.entries.map(\.index)
        #expect(indices == [0], "only GiB 0 of guest-physical memory was touched, found entries \(indices)")
        if case .table(let child)? = root.entries.first?.entry {
            #expect(child.level == 2 && child.direct && !child.local && child.gfn == 0)
        } else {
            Issue.record("entry 0 of the local root links no page")
        }
        #expect(machine.vm.mmu.contexts[0].paeRootFrame.map { $0 < 0x10_0000 } == true, "the PAE root frame lies below 4 GiB")
        #expect(machine.auditFailures.isEmpty, "\(machine.auditFailures)")
    }
}
