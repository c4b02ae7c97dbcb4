import Testing
import X86Paging

// PAE PDPTE registers (SDM Vol. 3A §4.4.1; semantics reference §3.2, §13.4):
// loaded from CR3[31:5] by MOV CR3 in PAE paging and by the MOV CR0/CR4 that
// enter PAE paging or change CD, NW, PG, PAE, PGE, PSE or SMEP; a present
// PDPTE with a reserved bit (63:M, 8:5, 2:1) makes that MOV #GP and nothing
// changes; later stores to the PDPT are invisible until the next load.

/// A PAE guest with two page directories: PD A maps the test gva to page A,
/// PD B maps it to page B, so which PD the PDPTE register points to shows in
/// the physical address.
private struct TwoDirectories {
    static let pdA: UInt64 = 0x0010_2000
    static let pdB: UInt64 = 0x0011_2000
    static let ptA: UInt64 = 0x0010_1000
    static let ptB: UInt64 = 0x0011_1000
    static let pageA: UInt64 = 0x0345_6000
    static let pageB: UInt64 = 0x0789_a000

    let memory = makeMemory()
    let builder: PageTableBuilder
    var gva: UInt64 { builder.gva }
    var pdptIndex: Int { Int(builder.index(level: 3)) }
    var pdpteAddress: UInt64 { builder.entryAddress(level: 3) }
    var paA: UInt64 { Self.pageA | gva & 0xfff }
    var paB: UInt64 { Self.pageB | gva & 0xfff }

    init() {
        builder = PageTableBuilder(mode: .pae, memory: memory, tables: [0x0010_3fe0, Self.pdA, Self.ptA])
        builder.map4K(frame: Self.pageA, leafFlags: Entry.p | Entry.rw | Entry.us)
        let other = PageTableBuilder(mode: .pae, memory: memory, tables: [0x0010_3fe0, Self.pdB, Self.ptB])
        other.setEntry(level: 2, other.pointer(level: 2, flags: Entry.p | Entry.rw | Entry.us))
        other.setEntry(level: 1, Self.pageB | Entry.p | Entry.rw | Entry.us)
        pointPDPTE(to: Self.pdA)
    }

    func pointPDPTE(to pd: UInt64, extra: UInt64 = 0) {
        memory.store(pdpteAddress, width: 8, pd | Entry.p | extra)
    }

    func setPDPTE(_ value: UInt64) { memory.store(pdpteAddress, width: 8, value) }

    /// Where a user read of `gva` goes (a user access: SMAP does not apply).
    func pa(_ registers: ControlRegisters) -> UInt64? {
        Walker.walk(gva, MemoryAccess(.read, .user), registers: registers, memory: memory, setAccessedDirty: false).physicalAddress
    }
}

/// A MOV that loads the PDPTE registers, applied to registers already in a
/// state from which it is legal.
struct PDPTELoadTrigger: Sendable, CustomTestStringConvertible {
    var name: String
    /// Setup before the trigger (paging state the trigger starts from).
    var start: RegisterSetupKind
    var register: ControlRegister
    var value: UInt64

    enum RegisterSetupKind: Sendable {
        /// PAE paging already on (CR0 = PE|ET|PG, CR4 = PAE).
        case paePaging
        /// CR4.PAE=1, CR0.PG=0.
        case paeNotPaging
        /// 32-bit paging (CR4.PAE=0, CR0.PG=1).
        case bits32Paging
    }

    var testDescription: String { name }

    static let pagingCR0 = Bit.cr0PE | Bit.cr0ET | Bit.cr0PG

    static let all: [PDPTELoadTrigger] = [
        PDPTELoadTrigger(name: "MOV CR3 in PAE paging", start: .paePaging, register: .cr3, value: 0x0010_3fe0),
        PDPTELoadTrigger(name: "MOV CR0 setting PG (enters PAE paging)", start: .paeNotPaging, register: .cr0, value: pagingCR0),
        PDPTELoadTrigger(name: "MOV CR4 setting PAE (32-bit → PAE paging)", start: .bits32Paging, register: .cr4, value: Bit.cr4PAE),
        PDPTELoadTrigger(name: "MOV CR0 setting CD", start: .paePaging, register: .cr0, value: pagingCR0 | Bit.cr0CD),
        PDPTELoadTrigger(name: "MOV CR0 setting CD and NW", start: .paePaging, register: .cr0, value: pagingCR0 | Bit.cr0CD | Bit.cr0NW),
        PDPTELoadTrigger(name: "MOV CR4 setting PGE", start: .paePaging, register: .cr4, value: Bit.cr4PAE | Bit.cr4PGE),
        PDPTELoadTrigger(name: "MOV CR4 setting PSE", start: .paePaging, register: .cr4, value: Bit.cr4PAE | Bit.cr4PSE),
        PDPTELoadTrigger(name: "MOV CR4 setting SMEP", start: .paePaging, register: .cr4, value: Bit.cr4PAE | Bit.cr4SMEP),
    ]

    /// Registers in the trigger's start state, with the PDPT at 0x103fe0.
    func startRegisters(model: CPUModel, memory: SparseMemory) throws -> ControlRegisters {
        var registers = ControlRegisters(model: model)
        var writes: [(ControlRegister, UInt64)] = []
        switch start {
        case .paePaging: writes = [(.cr4, Bit.cr4PAE), (.cr3, 0x0010_3fe0), (.cr0, Self.pagingCR0)]
        case .paeNotPaging: writes = [(.cr4, Bit.cr4PAE), (.cr3, 0x0010_3fe0), (.cr0, Bit.cr0PE | Bit.cr0ET)]
        case .bits32Paging: writes = [(.cr3, 0x0010_3fe0), (.cr0, Self.pagingCR0)]
        }
        for (register, value) in writes {
            guard registers.write(register, value, memory: memory).isAccepted else {
                throw SetupRejected(register: register, value: value)
            }
        }
        return registers
    }
}

@Suite("PAE PDPTE registers")
struct PDPTETests {
    @Test("the trigger loads the PDPTE registers from memory", arguments: PDPTELoadTrigger.all)
    func triggerLoads(_ trigger: PDPTELoadTrigger) throws {
        let guest = TwoDirectories()
        var registers = try trigger.startRegisters(model: CPUModel(), memory: guest.memory)
        guest.pointPDPTE(to: TwoDirectories.pdB)
        let result = registers.write(trigger.register, trigger.value, memory: guest.memory)
        guard case .accepted(let effects) = result else {
            Issue.record("\(trigger.name): rejected with #GP")
            return
        }
        #expect(effects.contains(.pdptesLoaded), "\(trigger.name): effects \(effects.rawValue) lack pdptesLoaded")
        #expect(registers.mode == .pae)
        #expect(registers.pdptes[guest.pdptIndex] == TwoDirectories.pdB | Entry.p, "\(trigger.name): PDPTE register \(registers.pdptes)")
        #expect(guest.pa(registers) == guest.paB, "\(trigger.name): walk used \(guest.pa(registers).map(hex) ?? "a fault")")
    }

    @Test("a present PDPTE with a reserved bit makes the trigger #GP and changes nothing",
          arguments: PDPTELoadTrigger.all, [bits(63, 63), bits(51, 51), bits(46, 46), bits(8, 8), bits(7, 7), bits(6, 6), bits(5, 5), bits(2, 2), bits(1, 1)])
    func reservedBitRejects(_ trigger: PDPTELoadTrigger, reservedBit: UInt64) throws {
        let guest = TwoDirectories()
        let model = CPUModel(maxPhysicalAddressBits: 46)
        var registers = try trigger.startRegisters(model: model, memory: guest.memory)
        let before = registers
        let pdpteBefore = registers.pdptes
        guest.pointPDPTE(to: TwoDirectories.pdB, extra: reservedBit)
        let result = registers.write(trigger.register, trigger.value, memory: guest.memory)
        #expect(result == .generalProtection, "\(trigger.name) with PDPTE bit \(reservedBit.trailingZeroBitCount) set (M=46): \(result)")
        #expect(registers == before, "\(trigger.name): a #GP write changed the registers")
        #expect(registers.pdptes == pdpteBefore)
    }

    @Test("a reserved bit in a not-present PDPTE is ignored", arguments: PDPTELoadTrigger.all)
    func notPresentGarbage(_ trigger: PDPTELoadTrigger) throws {
        let guest = TwoDirectories()
        var registers = try trigger.startRegisters(model: CPUModel(maxPhysicalAddressBits: 36), memory: guest.memory)
        let garbage: UInt64 = 0xffff_ffff_ffff_fffe
        guest.setPDPTE(garbage)
        let result = registers.write(trigger.register, trigger.value, memory: guest.memory)
        #expect(result.isAccepted, "\(trigger.name) with a not-present garbage PDPTE: \(result)")
        #expect(registers.pdptes[guest.pdptIndex] == garbage)
        let walk = Walker.walk(guest.gva, .write, registers: registers, memory: guest.memory)
        #expect(walk.errorCode == PFEC.w, "not-present PDPTE register: walker \(walk.summary), expected #PF 0x2")
    }

    @Test("writes that change none of CD/NW/PG/PAE/PGE/PSE/SMEP do not reload")
    func otherWritesDoNotReload() throws {
        let guest = TwoDirectories()
        let trigger = PDPTELoadTrigger.all[0]
        var registers = try trigger.startRegisters(model: CPUModel(), memory: guest.memory)
        #expect(guest.pa(registers) == guest.paA)
        guest.pointPDPTE(to: TwoDirectories.pdB)
        let writes: [(String, ControlRegister, UInt64)] = [
            ("CR0.WP set", .cr0, PDPTELoadTrigger.pagingCR0 | Bit.cr0WP),
            ("CR0 unchanged", .cr0, PDPTELoadTrigger.pagingCR0 | Bit.cr0WP),
            ("CR4.SMAP set", .cr4, Bit.cr4PAE | Bit.cr4SMAP),
            ("CR4.PKE set", .cr4, Bit.cr4PAE | Bit.cr4SMAP | Bit.cr4PKE),
            ("EFER.NXE set", .efer, Bit.eferNXE),
        ]
        for (name, register, value) in writes {
            let result = registers.write(register, value, memory: guest.memory)
            guard case .accepted(let effects) = result else {
                Issue.record("\(name): #GP")
                continue
            }
            #expect(!effects.contains(.pdptesLoaded), "\(name) reloaded the PDPTEs")
            #expect(guest.pa(registers) == guest.paA, "\(name): the walk sees the new PDPTE without a reload")
        }
        // An invalid PDPT does not matter to those writes either.
        guest.pointPDPTE(to: TwoDirectories.pdB, extra: 1 << 63)
        #expect(registers.write(.cr0, PDPTELoadTrigger.pagingCR0, memory: guest.memory).isAccepted, "CR0.WP clear must not check the PDPTEs")
    }

    @Test("a store to the PDPT is invisible until the next load")
    func storeInvisibleUntilReload() throws {
        let guest = TwoDirectories()
        var registers = try PDPTELoadTrigger.all[0].startRegisters(model: CPUModel(), memory: guest.memory)
        #expect(guest.pa(registers) == guest.paA)
        guest.pointPDPTE(to: TwoDirectories.pdB)
        #expect(guest.pa(registers) == guest.paA, "new PDPTE value seen before reload")
        guest.setPDPTE(0)
        #expect(guest.pa(registers) == guest.paA, "cleared PDPTE seen before reload")
        // The walk neither reads nor writes the PDPT.
        #expect(guest.memory.load(guest.pdpteAddress, width: 8) == 0)
        #expect(registers.write(.cr3, 0x0010_3fe0, memory: guest.memory).isAccepted)
        let walk = Walker.walk(guest.gva, .read, registers: registers, memory: guest.memory)
        #expect(walk.errorCode == 0, "after MOV CR3 the not-present PDPTE must fault: \(walk.summary)")
        guest.pointPDPTE(to: TwoDirectories.pdB)
        #expect(registers.write(.cr3, 0x0010_3fe0, memory: guest.memory).isAccepted)
        #expect(guest.pa(registers) == guest.paB)
    }

    @Test("CR3[31:5] locates the PDPT; the four registers come from four consecutive entries")
    func fourRegistersFromCR3() throws {
        let memory = makeMemory()
        let pdpt: UInt64 = 0x0020_0a60
        let values: [UInt64] = [0x0010_1001, 0x0010_2000, 0x0010_3001, 0xdead_b000]
        for (index, value) in values.enumerated() { memory.store(pdpt + UInt64(8 * index), width: 8, value) }
        memory.store(pdpt - 8, width: 8, 1 << 63 | 1) // neighbours must not be read
        memory.store(pdpt + 32, width: 8, 1 << 63 | 1)
        var registers = ControlRegisters()
        for (register, value) in [(ControlRegister.cr4, Bit.cr4PAE), (.cr3, pdpt | 0x1f), (.cr0, PDPTELoadTrigger.pagingCR0)] {
            #expect(registers.write(register, value, memory: memory).isAccepted)
        }
        #expect(registers.pdptes == PDPTERegisters(values[0], values[1], values[2], values[3]), "\(registers.pdptes)")
    }

    // MARK: AMD nested paging: PDPTEs are not latched

    @Test("without latching (AMD NPT), MOV CR3 accepts a reserved PDPTE and the walk faults with RSVD")
    func unlatchedReservedFaultsOnUse() throws {
        let guest = TwoDirectories()
        let model = CPUModel(maxPhysicalAddressBits: 46, vendor: .amd, latchesPDPTEs: false)
        var registers = try PDPTELoadTrigger.all[0].startRegisters(model: model, memory: guest.memory)
        #expect(guest.pa(registers) == guest.paA)
        for reservedBit in [UInt64(1) << 63, 1 << 50, 1 << 8, 1 << 5, 1 << 2, 1 << 1] {
            guest.pointPDPTE(to: TwoDirectories.pdA, extra: reservedBit)
            #expect(registers.write(.cr3, 0x0010_3fe0, memory: guest.memory).isAccepted, "bit \(reservedBit.trailingZeroBitCount): MOV CR3 #GP without latching")
            for access in allAccesses {
                let walk = Walker.walk(guest.gva, access, registers: registers, memory: guest.memory)
                var code = PFEC.p | PFEC.rsvd
                if access.kind == .write { code |= PFEC.w }
                if access.mode == .user { code |= PFEC.u }
                #expect(walk.errorCode == code, "unlatched PDPTE bit \(reservedBit.trailingZeroBitCount), \(access): walker \(walk.summary), expected #PF \(hex(code))")
            }
        }
        // Not present: no reserved check.
        guest.setPDPTE(0xffff_ffff_ffff_fffe)
        #expect(Walker.walk(guest.gva, .read, registers: registers, memory: guest.memory).errorCode == 0)
    }

    @Test("without latching, a store to the PDPT is seen by the next walk")
    func unlatchedStoreVisible() throws {
        let guest = TwoDirectories()
        let model = CPUModel(vendor: .amd, latchesPDPTEs: false)
        let registers = try PDPTELoadTrigger.all[0].startRegisters(model: model, memory: guest.memory)
        #expect(guest.pa(registers) == guest.paA)
        guest.pointPDPTE(to: TwoDirectories.pdB)
        #expect(guest.pa(registers) == guest.paB)
        var trace = WalkTrace()
        _ = Walker.walk(guest.gva, .read, registers: registers, memory: guest.memory, tracer: &trace)
        #expect(trace.memoryReferences.count == 3, "unlatched PAE walk reads PDPTE, PDE, PTE: \(trace.memoryReferences.map(hex))")
        #expect(trace.memoryReferences.first == guest.pdpteAddress)
    }
}
