import Testing
import X86Paging

// Validity rules of MOV to CR0/CR3/CR4, WRMSR to EFER and WRPKRU
// (ControlRegisters+Writes.swift) against the semantics reference §1 and the
// SDM's MOV-to-CR #GP list, mode transitions, and canonical-address checks.

/// Registers after a sequence of writes that must all be accepted.
private func registers(_ writes: [(ControlRegister, UInt64)], model: CPUModel = CPUModel(), memory: SparseMemory = makeMemory()) throws -> ControlRegisters {
    var registers = ControlRegisters(model: model)
    for (register, value) in writes {
        guard registers.write(register, value, memory: memory).isAccepted else {
            throw SetupRejected(register: register, value: value)
        }
    }
    return registers
}

private let protectedCR0 = Bit.cr0PE | Bit.cr0ET
private let pagingCR0 = Bit.cr0PE | Bit.cr0ET | Bit.cr0PG

/// Named starting states for the rejection table.
enum StartState: String, Sendable, CaseIterable {
    case reset = "RESET"
    case protectedMode = "protected, no paging"
    case paePrepared = "CR4.PAE=1, EFER.LME=1, no paging"
    case lmeWithoutPAE = "EFER.LME=1, CR4.PAE=0, no paging"
    case bits32 = "32-bit paging"
    case pae = "PAE paging"
    case level4 = "4-level paging"
    case level5 = "5-level paging"
    case level4PCID = "4-level paging, PCIDE=1"
    case level4LowCR3 = "4-level paging, CR3[11:0]=0x008"

    var writes: [(ControlRegister, UInt64)] {
        switch self {
        case .reset: []
        case .protectedMode: [(.cr0, protectedCR0)]
        case .paePrepared: [(.cr0, protectedCR0), (.cr4, Bit.cr4PAE), (.efer, Bit.eferLME)]
        case .lmeWithoutPAE: [(.cr0, protectedCR0), (.efer, Bit.eferLME)]
        case .bits32: [(.cr3, 0x0010_2000), (.cr0, pagingCR0)]
        case .pae: [(.cr4, Bit.cr4PAE), (.cr3, 0x0010_3fe0), (.cr0, pagingCR0)]
        case .level4: [(.efer, Bit.eferLME | Bit.eferNXE), (.cr4, Bit.cr4PAE), (.cr3, 0x0010_4000), (.cr0, pagingCR0)]
        case .level5: [(.efer, Bit.eferLME), (.cr4, Bit.cr4PAE | Bit.cr4LA57), (.cr3, 0x0010_5000), (.cr0, pagingCR0)]
        case .level4LowCR3: StartState.level4.writes + [(.cr3, 0x0010_4008)]
        case .level4PCID: [(.efer, Bit.eferLME), (.cr4, Bit.cr4PAE), (.cr3, 0x0010_4000), (.cr0, pagingCR0), (.cr4, Bit.cr4PAE | Bit.cr4PCIDE), (.cr3, 0x0010_4005)]
        }
    }

    /// A memory whose PAE PDPT (at 0x103fe0) is valid.
    static func memory() -> SparseMemory {
        let memory = makeMemory()
        memory.store(0x0010_3fe0, width: 8, 0x0010_2001)
        return memory
    }
}

/// A write the architecture rejects with #GP from a given state.
struct RejectedWrite: Sendable, CustomTestStringConvertible {
    var rule: String
    var start: StartState
    var register: ControlRegister
    var value: UInt64
    var testDescription: String { "\(rule) [\(start.rawValue): \(register) = \(hex(value))]" }
}

@Suite("Control registers")
struct ControlRegisterTests {
    static let rejected: [RejectedWrite] = {
        var list: [RejectedWrite] = [
            RejectedWrite(rule: "NW without CD", start: .protectedMode, register: .cr0, value: protectedCR0 | Bit.cr0NW),
            RejectedWrite(rule: "NW without CD (paging)", start: .level4, register: .cr0, value: pagingCR0 | Bit.cr0NW),
            RejectedWrite(rule: "PG without PE", start: .reset, register: .cr0, value: Bit.cr0PG | Bit.cr0ET),
            RejectedWrite(rule: "PG without PE (from protected mode)", start: .protectedMode, register: .cr0, value: Bit.cr0PG | Bit.cr0ET),
            RejectedWrite(rule: "PG with EFER.LME but CR4.PAE=0", start: .lmeWithoutPAE, register: .cr0, value: pagingCR0),
            RejectedWrite(rule: "clearing CR4.PAE in long mode", start: .level4, register: .cr4, value: 0),
            RejectedWrite(rule: "clearing CR4.PAE in 5-level long mode", start: .level5, register: .cr4, value: Bit.cr4LA57),
            RejectedWrite(rule: "setting CR4.LA57 in long mode", start: .level4, register: .cr4, value: Bit.cr4PAE | Bit.cr4LA57),
            RejectedWrite(rule: "clearing CR4.LA57 in long mode", start: .level5, register: .cr4, value: Bit.cr4PAE),
            RejectedWrite(rule: "setting PCIDE with CR3[11:0] != 0", start: .level4LowCR3, register: .cr4, value: Bit.cr4PAE | Bit.cr4PCIDE),
            RejectedWrite(rule: "setting PCIDE outside long mode", start: .pae, register: .cr4, value: Bit.cr4PAE | Bit.cr4PCIDE),
            RejectedWrite(rule: "setting PCIDE without paging", start: .paePrepared, register: .cr4, value: Bit.cr4PAE | Bit.cr4PCIDE),
            RejectedWrite(rule: "clearing PG while PCIDE=1", start: .level4PCID, register: .cr0, value: protectedCR0),
            RejectedWrite(rule: "clearing PG in 64-bit mode", start: .level4, register: .cr0, value: protectedCR0),
            RejectedWrite(rule: "changing EFER.LME while paging (set)", start: .bits32, register: .efer, value: Bit.eferLME),
            RejectedWrite(rule: "changing EFER.LME while paging (set, PAE)", start: .pae, register: .efer, value: Bit.eferLME),
            RejectedWrite(rule: "changing EFER.LME while paging (clear)", start: .level4, register: .efer, value: Bit.eferNXE),
            RejectedWrite(rule: "CR3 bit 63 without PCIDE (reserved, 63:M)", start: .level4, register: .cr3, value: 1 << 63 | 0x0010_4000),
            RejectedWrite(rule: "CR3 bit M in long mode", start: .level4, register: .cr3, value: 1 << 52 | 0x0010_4000),
            RejectedWrite(rule: "WRPKRU with bits 63:32", start: .level4, register: .pkru, value: 1 << 32),
        ]
        // Every bit of CR0 63:32.
        for b in 32..<64 {
            list.append(RejectedWrite(rule: "CR0 bit \(b) set", start: .level4, register: .cr0, value: pagingCR0 | 1 << UInt64(b)))
        }
        // Undefined CR4 bits: 15, 19, 23, 25…63 on the modelled CPU.
        for b in [15, 19, 23] + Array(25..<64) {
            list.append(RejectedWrite(rule: "CR4 reserved bit \(b)", start: .level4, register: .cr4, value: Bit.cr4PAE | 1 << UInt64(b)))
        }
        // EFER: only SCE(0), LME(8), LMA(10), NXE(11), SVME(12), FFXSR(14) exist.
        for b in 0..<64 where ![0, 8, 10, 11, 12, 14].contains(b) {
            list.append(RejectedWrite(rule: "EFER reserved bit \(b)", start: .protectedMode, register: .efer, value: 1 << UInt64(b)))
        }
        return list
    }()

    @Test("rejected writes #GP and keep every register", arguments: ControlRegisterTests.rejected)
    func rejectedWrite(_ w: RejectedWrite) throws {
        let memory = StartState.memory()
        var registers = try registers(w.start.writes, memory: memory)
        registers.pkru = PKRU(rawValue: 0x1234_5678)
        registers.alignmentCheck = true
        let before = registers
        let result = registers.write(w.register, w.value, memory: memory)
        #expect(result == .generalProtection, "\(w.testDescription): accepted with \(result)")
        #expect(registers == before, "\(w.testDescription): registers changed by a rejected write: cr0 \(registers.cr0) cr4 \(registers.cr4) efer \(registers.efer) cr3 \(hex(registers.cr3))")
    }

    @Test("the matching legal writes are accepted")
    func legalCounterparts() throws {
        let memory = StartState.memory()
        // NW together with CD.
        var r = try registers(StartState.protectedMode.writes, memory: memory)
        #expect(r.write(.cr0, protectedCR0 | Bit.cr0NW | Bit.cr0CD, memory: memory).isAccepted)
        // LA57 may change outside long mode.
        r = try registers(StartState.paePrepared.writes, memory: memory)
        #expect(r.write(.cr4, Bit.cr4PAE | Bit.cr4LA57, memory: memory).isAccepted)
        #expect(r.write(.cr4, Bit.cr4PAE, memory: memory).isAccepted)
        // LME may change without paging.
        #expect(r.write(.efer, 0, memory: memory).isAccepted)
        #expect(r.write(.efer, Bit.eferLME, memory: memory).isAccepted)
        // PCIDE in long mode with CR3[11:0] = 0; clearing it is always fine.
        r = try registers(StartState.level4.writes, memory: memory)
        #expect(r.write(.cr4, Bit.cr4PAE | Bit.cr4PCIDE, memory: memory).isAccepted)
        #expect(r.write(.cr4, Bit.cr4PAE, memory: memory).isAccepted)
        // CR3 just below MAXPHYADDR (bit 51 with M=52; bit 45 with M=46).
        #expect(r.write(.cr3, 1 << 51 | 0x0010_4000, memory: memory).isAccepted)
        var r46 = try registers(StartState.level4.writes, model: CPUModel(maxPhysicalAddressBits: 46), memory: memory)
        #expect(r46.write(.cr3, 1 << 45 | 0x0010_4000, memory: memory).isAccepted)
        #expect(r46.write(.cr3, 1 << 46 | 0x0010_4000, memory: memory) == .generalProtection, "CR3 bit 46 with M=46")
        // Writes to undefined CR0 bits of 31:0 are ignored (not #GP); ET reads as 1.
        r = try registers(StartState.protectedMode.writes, memory: memory)
        #expect(r.write(.cr0, Bit.cr0PE | 1 << 6 | 1 << 17 | 1 << 28, memory: memory).isAccepted)
        #expect(r.cr0.rawValue == Bit.cr0PE | Bit.cr0ET, "undefined CR0 bits must be dropped and ET forced: \(r.cr0)")
        // EFER.LMA is read-only: writing it does nothing.
        r = try registers(StartState.protectedMode.writes, memory: memory)
        #expect(r.write(.efer, Bit.eferLMA, memory: memory).isAccepted)
        #expect(!r.efer.contains(.lma), "WRMSR set EFER.LMA")
        r = try registers(StartState.level4.writes, memory: memory)
        #expect(r.write(.efer, Bit.eferLME, memory: memory).isAccepted) // LMA bit 0 in the value
        #expect(r.efer.contains(.lma), "WRMSR cleared EFER.LMA")
        #expect(r.mode == .level4)
    }

    // MARK: Mode transitions

    @Test("none → 32-bit → PAE → none → 4-level; 5-level from RESET")
    func modeTransitions() throws {
        let memory = StartState.memory()
        var r = ControlRegisters()
        func step(_ register: ControlRegister, _ value: UInt64, _ mode: PagingMode, lma: Bool = false, changed: Bool, _ what: String) {
            let result = r.write(register, value, memory: memory)
            guard case .accepted(let effects) = result else {
                Issue.record("\(what): #GP")
                return
            }
            #expect(r.mode == mode, "\(what): mode \(r.mode), expected \(mode)")
            #expect(r.efer.contains(.lma) == lma, "\(what): EFER.LMA = \(r.efer.contains(.lma))")
            #expect(effects.contains(.modeChanged) == changed, "\(what): modeChanged = \(effects.contains(.modeChanged))")
            if changed { #expect(effects.contains(.flushAll), "\(what): a mode change must flush everything") }
        }
        #expect(r.mode == .none)
        step(.cr0, protectedCR0, .none, changed: false, "PE=1")
        step(.cr3, 0x0010_3fe0, .none, changed: false, "CR3 load, paging off")
        step(.cr0, pagingCR0, .bits32, changed: true, "PG=1")
        step(.cr4, Bit.cr4PSE, .bits32, changed: false, "PSE=1")
        step(.cr4, Bit.cr4PAE, .pae, changed: true, "PAE=1 with paging on")
        step(.cr4, Bit.cr4PAE | Bit.cr4LA57, .pae, changed: false, "LA57=1 outside long mode")
        step(.cr4, Bit.cr4PAE, .pae, changed: false, "LA57=0 outside long mode")
        step(.cr0, protectedCR0, .none, changed: true, "PG=0")
        step(.efer, Bit.eferLME, .none, changed: false, "LME=1 (paging off: not active)")
        step(.cr0, pagingCR0, .level4, lma: true, changed: true, "PG=1 with LME and PAE")
        step(.cr0, pagingCR0 | Bit.cr0WP, .level4, lma: true, changed: false, "WP=1 in long mode")

        var five = ControlRegisters()
        for (register, value) in StartState.level5.writes.dropLast() {
            #expect(five.write(register, value, memory: memory).isAccepted)
        }
        #expect(five.mode == .none)
        #expect(five.write(.cr0, pagingCR0, memory: memory).isAccepted)
        #expect(five.mode == .level5)
        #expect(five.efer.contains(.lma))
    }

    @Test("PagingMode from CR0.PG, CR4.PAE, EFER.LMA, CR4.LA57 (§1 table)", arguments: 0..<16)
    func modeTable(bitsIndex: Int) {
        let pg = bitsIndex & 1 != 0, pae = bitsIndex & 2 != 0, lma = bitsIndex & 4 != 0, la57 = bitsIndex & 8 != 0
        let cr0 = CR0(rawValue: protectedCR0 | (pg ? Bit.cr0PG : 0))
        let cr4 = CR4(rawValue: (pae ? Bit.cr4PAE : 0) | (la57 ? Bit.cr4LA57 : 0) | Bit.cr4PSE)
        let efer = EFER(rawValue: lma ? Bit.eferLMA | Bit.eferLME : 0)
        let expected: PagingMode
        if !pg { expected = .none } else if !pae { expected = .bits32 } else if !lma { expected = .pae } else { expected = la57 ? .level5 : .level4 }
        #expect(PagingMode(cr0: cr0, cr4: cr4, efer: efer) == expected, "PG=\(pg) PAE=\(pae) LMA=\(lma) LA57=\(la57)")
    }

    // MARK: CR3 and PCIDs

    @Test("MOV CR3 flushes non-global entries, unless PCIDE=1 and bit 63 is set (bit 63 is not stored)")
    func cr3NoFlush() throws {
        let memory = StartState.memory()
        var r = try registers(StartState.level4PCID.writes, memory: memory)
        #expect(r.pcid == 5)
        guard case .accepted(let flushing) = r.write(.cr3, 0x0010_4007, memory: memory) else {
            Issue.record("MOV CR3 with PCID 7 #GP")
            return
        }
        #expect(flushing.contains(.flushNonGlobal))
        #expect(r.pcid == 7)
        guard case .accepted(let keeping) = r.write(.cr3, 1 << 63 | 0x0010_4009, memory: memory) else {
            Issue.record("MOV CR3 with bit 63 and PCIDE=1 #GP")
            return
        }
        #expect(!keeping.contains(.flushNonGlobal) && !keeping.contains(.flushAll), "bit 63 must suppress the flush: \(keeping.rawValue)")
        #expect(r.cr3 == 0x0010_4009, "CR3 after a no-flush MOV is \(hex(r.cr3))")
        #expect(r.pcid == 9)
        // Without PCIDE the PCID is 0 whatever CR3[11:0] holds.
        var plain = try registers(StartState.level4.writes, memory: memory)
        #expect(plain.write(.cr3, 0x0010_4018, memory: memory).isAccepted)
        #expect(plain.pcid == 0)
    }

    // MARK: Canonical addresses

    struct CanonicalCase: Sendable, CustomTestStringConvertible {
        var mode: PagingMode
        var address: UInt64
        var canonical: Bool
        var testDescription: String { "\(mode) \(hex(address)) \(canonical ? "canonical" : "non-canonical")" }
    }

    static let canonicalCases: [CanonicalCase] = [
        CanonicalCase(mode: .level4, address: 0, canonical: true),
        CanonicalCase(mode: .level4, address: 0x0000_7fff_ffff_ffff, canonical: true),
        CanonicalCase(mode: .level4, address: 0x0000_8000_0000_0000, canonical: false),
        CanonicalCase(mode: .level4, address: 0x00ff_ffff_ffff_ffff, canonical: false),
        CanonicalCase(mode: .level4, address: 0x7fff_ffff_ffff_ffff, canonical: false),
        CanonicalCase(mode: .level4, address: 0x8000_0000_0000_0000, canonical: false),
        CanonicalCase(mode: .level4, address: 0xffff_7fff_ffff_ffff, canonical: false),
        CanonicalCase(mode: .level4, address: 0xffff_8000_0000_0000, canonical: true),
        CanonicalCase(mode: .level4, address: 0xffff_ffff_ffff_ffff, canonical: true),
        CanonicalCase(mode: .level4, address: 0xfeff_8000_0000_0000, canonical: false),
        CanonicalCase(mode: .level5, address: 0x0000_7fff_ffff_ffff, canonical: true),
        CanonicalCase(mode: .level5, address: 0x0000_8000_0000_0000, canonical: true),
        CanonicalCase(mode: .level5, address: 0xffff_8000_0000_0000, canonical: true),
        CanonicalCase(mode: .level5, address: 0xffff_7fff_ffff_ffff, canonical: true),
        CanonicalCase(mode: .level5, address: 0x00ff_ffff_ffff_ffff, canonical: true),
        CanonicalCase(mode: .level5, address: 0x0100_0000_0000_0000, canonical: false),
        CanonicalCase(mode: .level5, address: 0x7fff_ffff_ffff_ffff, canonical: false),
        CanonicalCase(mode: .level5, address: 0x8000_0000_0000_0000, canonical: false),
        CanonicalCase(mode: .level5, address: 0xfeff_ffff_ffff_ffff, canonical: false),
        CanonicalCase(mode: .level5, address: 0xff00_0000_0000_0000, canonical: true),
        CanonicalCase(mode: .level5, address: 0xffff_ffff_ffff_ffff, canonical: true),
        CanonicalCase(mode: .level5, address: 0x0180_0000_0000_0000, canonical: false),
    ]

    @Test("non-canonical addresses #GP before any walk; canonical ones are walked", arguments: ControlRegisterTests.canonicalCases)
    func canonical(_ c: CanonicalCase) throws {
        let memory = makeMemory()
        let builder = PageTableBuilder(mode: c.mode, memory: memory, gva: c.address)
        // Map exactly this address, with A clear everywhere, so a walk shows up in memory.
        builder.map4K(leafFlags: Entry.p | Entry.rw | Entry.us)
        builder.linkDown(to: 1, flags: Entry.p | Entry.rw | Entry.us)
        let setup = builder.setup()
        let registers = try setup.registers(memory: memory)
        let root = builder.entry(level: c.mode.levels)
        for access in allAccesses {
            var trace = WalkTrace()
            let result = Walker.walk(c.address, access, registers: registers, memory: memory, tracer: &trace)
            if c.canonical {
                #expect(result.physicalAddress == Layout.page4K | c.address & 0xfff, "\(c.testDescription) \(access): \(result.summary)")
            } else {
                #expect(result == .generalProtection, "\(c.testDescription) \(access): \(result.summary), expected #GP")
                #expect(trace.steps.isEmpty, "\(c.testDescription): a non-canonical address was walked")
                #expect(builder.entry(level: c.mode.levels) == root, "\(c.testDescription): A set on a #GP")
            }
        }
        // The CPU path gives the same verdict.
        let cpu = try setup.cpu(memory: memory)
        let translated = cpu.translate(c.address, .read, memory: memory)
        #expect((translated == .generalProtection) == !c.canonical, "\(c.testDescription): ArchitecturalCPU.translate gave \(translated)")
    }

    @Test("without paging a linear address is its physical address (32 bits), for every access")
    func nonpaging() throws {
        let memory = makeMemory()
        let registers = try registers([(.cr0, protectedCR0), (.cr4, Bit.cr4SMEP | Bit.cr4SMAP), (.efer, Bit.eferNXE)], memory: memory)
        #expect(registers.mode == .none)
        for address: UInt64 in [0, 0x1234_5678, 0xffff_ffff, 0x1_8765_4321] {
            for access in allAccesses {
                var trace = WalkTrace()
                let result = Walker.walk(address, access, registers: registers, memory: memory, tracer: &trace)
                #expect(result.physicalAddress == address & 0xffff_ffff, "nonpaging \(hex(address)) \(access): \(result.summary)")
                #expect(trace.steps.isEmpty)
            }
        }
        #expect(memory.allocatedPages == 0)
    }

    @Test("32-bit and PAE paging truncate the linear address to 32 bits instead of #GP", arguments: [PagingMode.bits32, .pae])
    func legacyTruncates(mode: PagingMode) throws {
        let memory = makeMemory()
        let builder = PageTableBuilder(mode: mode, memory: memory)
        builder.map4K(leafFlags: Entry.p | Entry.rw)
        let registers = try builder.setup().registers(memory: memory)
        for high: UInt64 in [1 << 32, 0xffff_ffff_0000_0000, 0x8000_0000_0000_0000] {
            let result = Walker.walk(builder.gva | high, .read, registers: registers, memory: memory)
            #expect(result.physicalAddress == Layout.page4K | builder.gva & 0xfff, "\(mode) \(hex(builder.gva | high)): \(result.summary)")
        }
    }
}
