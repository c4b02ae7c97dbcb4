import Testing
import X86Paging

/// The two-dimensional walk: reference counts of cold walks (the textbook
/// 24 / 35 / 29 / 29), EPT permissions and misconfigurations, NPT as user
/// accesses, and second-stage faults on guest paging structures.
@Suite("Two-dimensional walks")
struct TwoDimensionalWalkTests {
    /// Host memory with an EPT (or NPT) mapping guest-physical frames 1:1 at
    /// `guestBase` in 4 KiB pages, and a guest with 4- or 5-level tables.
    final class Machine {
        let host = SparseMemory(size: 1 << 36)
        let guestBase: UInt64 = 0x1000_0000
        var nextTable: UInt64 = 0x10_0000
        let tdpRoot: UInt64
        let tdpLevels: Int
        let ept: Bool

        init(tdpLevels: Int, ept: Bool) {
            self.tdpLevels = tdpLevels
            self.ept = ept
            tdpRoot = 0x10_0000
            nextTable = 0x10_1000
        }

        func allocate() -> UInt64 {
            defer { nextTable += 0x1000 }
            return nextTable
        }

        /// Maps guest frame `gfn` with `rights` (EPT: R W X bits; NPT: P RW US).
        func map(gfn: UInt64, rights: UInt64? = nil) {
            var table = tdpRoot
            for level in stride(from: tdpLevels, to: 1, by: -1) {
                let entryAddress = table + ((gfn << 12) >> UInt64(12 + 9 * (level - 1)) & 511) * 8
                var entry = host.load(entryAddress, width: 8)
                if entry & (ept ? 7 : 1) == 0 {
                    entry = allocate() | (ept ? 7 : 0x7)
                    host.store(entryAddress, width: 8, entry)
                }
                table = entry & 0xf_ffff_f000
            }
            let leaf = table + (gfn & 511) * 8
            host.store(leaf, width: 8, (guestBase + gfn << 12) | (rights ?? (ept ? 7 | 6 << 3 : 0x7)))
        }

        var nested: NestedPaging {
            if ept { return .ept(EPTPointer(root: tdpRoot, levels: tdpLevels, accessedDirty: false), maxPhysicalAddressBits: 36) }
            let host = ControlRegisters(
                model: CPUModel(maxPhysicalAddressBits: 36), cr0: CR0(rawValue: 0x8001_0001), cr3: tdpRoot,
                cr4: CR4(rawValue: tdpLevels == 5 ? 0x1020 : 0x20), efer: EFER(rawValue: 0xd00))
            return .npt(host: host)
        }

        /// Guest tables for linear 0x1000 → guest-physical 0x5000, every entry A/D set.
        func guestRegisters(levels: Int) -> ControlRegisters {
            let tables: [UInt64] = [0x1000, 0x2000, 0x3000, 0x4000, 0x6000].prefix(levels).map { $0 }
            for (index, table) in tables.enumerated() {
                map(gfn: table >> 12)
                let next = index + 1 < tables.count ? tables[index + 1] : 0
                let value = index == tables.count - 1 ? 0x5000 | 0x67 : next | 0x67
                let entryIndex: UInt64 = index == tables.count - 1 ? 1 : 0
                host.store(guestBase + table + entryIndex * 8, width: 8, UInt64(value))
            }
            map(gfn: 5)
            return ControlRegisters(
                model: CPUModel(), cr0: CR0(rawValue: 0x8001_0001), cr3: tables[0],
                cr4: CR4(rawValue: levels == 5 ? 0x1020 : 0x20), efer: EFER(rawValue: 0xd00))
        }
    }

    @Test(arguments: [(4, 4, 24), (5, 5, 35), (4, 5, 29), (5, 4, 29)])
    func coldWalkMakesTheTextbookNumberOfReferences(_ guestLevels: Int, _ tdpLevels: Int, _ expected: Int) {
        for ept in [true, false] {
            let machine = Machine(tdpLevels: tdpLevels, ept: ept)
            let guest = machine.guestRegisters(levels: guestLevels)
            var references = 0
            let result = TwoDimensionalWalker.walk(
                0x1000, .read, guest: guest, nested: machine.nested, memory: machine.host, guestMemorySize: 1 << 30,
                references: &references)
            guard case .translated(let translation, let hpa, _, _) = result else {
                Issue.record("\(guestLevels)-level guest on \(tdpLevels)-level \(ept ? "EPT" : "NPT"): \(result)")
                continue
            }
            #expect(translation.physicalAddress == 0x5000)
            #expect(hpa == machine.guestBase + 0x5000)
            #expect(references == expected, "\(guestLevels)-level guest on \(tdpLevels)-level \(ept ? "EPT" : "NPT")")
        }
    }

    @Test("The traced walk (for explain) agrees with the walk and records each second-stage translation",
          arguments: [(4, 4, 24), (5, 5, 35), (4, 5, 29), (5, 4, 29)])
    func tracedWalkAgrees(_ guestLevels: Int, _ tdpLevels: Int, _ expected: Int) {
        for ept in [true, false] {
            let machine = Machine(tdpLevels: tdpLevels, ept: ept)
            let guest = machine.guestRegisters(levels: guestLevels)
            let traced = TwoDimensionalWalker.tracedWalk(
                0x1000, .read, guest: guest, nested: machine.nested, memory: machine.host, guestMemorySize: 1 << 30)
            guard case .translated(let translation, let hpa, _, _) = traced.result else {
                Issue.record("\(guestLevels)-level guest on \(tdpLevels)-level \(ept ? "EPT" : "NPT"): \(traced.result)")
                continue
            }
            #expect(translation.physicalAddress == 0x5000 && hpa == machine.guestBase + 0x5000)
            #expect(traced.references == expected)
            // One translation per guest entry, then the final address; each walks every second-stage level.
            #expect(traced.secondStage.count == guestLevels + 1)
            #expect(traced.secondStage.map(\.pagingStructure) == Array(repeating: true, count: guestLevels) + [false])
            #expect(traced.secondStage.allSatisfy { $0.references == tdpLevels })
            #expect(traced.guest.steps.count == guestLevels)
            #expect(traced.secondStage.last?.guestPhysicalAddress == 0x5000)
        }
    }

    @Test func eptViolationOnTheFinalAddressReportsAccessAndRights() {
        let machine = Machine(tdpLevels: 4, ept: true)
        let guest = machine.guestRegisters(levels: 4)
        machine.map(gfn: 5, rights: 1 | 6 << 3)  // read-only
        var references = 0
        let result = TwoDimensionalWalker.walk(
            0x1000, .write, guest: guest, nested: machine.nested, memory: machine.host, guestMemorySize: 1 << 30, references: &references)
        // Write access (bit 1), rights R (bit 3), linear address valid (7), final translation (8).
        #expect(result == .nestedFault(NestedFault(guestPhysicalAddress: 0x5000, kind: .eptViolation(qualification: 0x2 | 0x8 | 0x180))))
    }

    @Test func eptWriteWithoutReadIsAMisconfiguration() {
        let machine = Machine(tdpLevels: 4, ept: true)
        let guest = machine.guestRegisters(levels: 4)
        machine.map(gfn: 5, rights: 2 | 6 << 3)
        var references = 0
        let result = TwoDimensionalWalker.walk(
            0x1000, .read, guest: guest, nested: machine.nested, memory: machine.host, guestMemorySize: 1 << 30, references: &references)
        #expect(result == .nestedFault(NestedFault(guestPhysicalAddress: 0x5000, kind: .eptMisconfiguration)))
    }

    @Test func nptFaultOnAGuestPageTableIsAUserWriteWithBit33() {
        let machine = Machine(tdpLevels: 4, ept: false)
        let guest = machine.guestRegisters(levels: 4)
        machine.map(gfn: 3, rights: 0x5)  // the guest's PD frame: present, user, read-only
        var references = 0
        let result = TwoDimensionalWalker.walk(
            0x1000, .read, guest: guest, nested: machine.nested, memory: machine.host, guestMemorySize: 1 << 30, references: &references)
        // P W U (a user write to a read-only page) and bit 33: 0x2_0000_0007.
        #expect(result == .nestedFault(NestedFault(guestPhysicalAddress: 0x3000, kind: .nestedPageFault(exitInfo1: 0x2_0000_0007))))
    }

    @Test func guestFaultsComeBeforeAFinalAddressFault() {
        let machine = Machine(tdpLevels: 4, ept: false)
        let guest = machine.guestRegisters(levels: 4)
        var references = 0
        // Linear 0x2000: the guest's PTE[2] is not present; the guest faults, no NPF.
        let result = TwoDimensionalWalker.walk(
            0x2000, .read, guest: guest, nested: machine.nested, memory: machine.host, guestMemorySize: 1 << 30, references: &references)
        #expect(result == .guestPageFault(PageFaultErrorCode(rawValue: 0)))
    }
}
