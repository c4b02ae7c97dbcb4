import Testing
import X86Paging

// Every single bit of a present entry, at every level of every paging mode,
// for MAXPHYADDR 36, 46 and 52: either a reserved bit (the walk faults with
// exactly P|RSVD) or not (the walk goes on, with the bit's ordinary meaning).
// The reserved masks are literal tables written from x86-paging-semantics.md
// §4 (SDM Vol. 3A Tables 4-4, 4-8 … 4-20), not computed from the walker's
// helpers.

/// What one entry of the sweep is.
enum SweptEntry: String, CaseIterable, Sendable {
    case pml5e = "PML5E"
    case pml4e = "PML4E"
    case pdpteTable = "PDPTE→PD"
    case pdpte1G = "PDPTE (1 GiB)"
    case pdeTable = "PDE→PT"
    case pde2M = "PDE (2 MiB)"
    case pte = "PTE"

    var level: Int {
        switch self {
        case .pml5e: 5
        case .pml4e: 4
        case .pdpteTable, .pdpte1G: 3
        case .pdeTable, .pde2M: 2
        case .pte: 1
        }
    }

    var isLeaf: Bool { self == .pdpte1G || self == .pde2M || self == .pte }
    var pageShift: Int { self == .pdpte1G ? 30 : self == .pde2M ? 21 : 12 }
}

/// Literal reserved-bit masks (§4 of the semantics reference).
enum ReservedBitTable {
    /// HI(M) = bits 51:M.
    static let high: [Int: UInt64] = [36: 0x000f_fff0_0000_0000, 46: 0x000f_c000_0000_0000, 52: 0]
    /// PAE PDE/PTE: bits 62:M.
    static let paeHigh: [Int: UInt64] = [36: 0x7fff_fff0_0000_0000, 46: 0x7fff_c000_0000_0000, 52: 0x7ff0_0000_0000_0000]
    /// PDPTE register at load: 63:M, 8:5, 2:1.
    static let pdpteRegister: [Int: UInt64] = [36: 0xffff_fff0_0000_01e6, 46: 0xffff_c000_0000_01e6, 52: 0xfff0_0000_0000_01e6]
    static let xdWithoutNXE: UInt64 = 0x8000_0000_0000_0000
    /// 4 MiB PDE, 32-bit paging: bits 21:(M'-19), M' = min(M, 40).
    static let pde4M: [Int: UInt64] = [36: 0x003e_0000, 46: 0x0020_0000, 52: 0x0020_0000]

    static func mask(_ entry: SweptEntry, mode: PagingMode, m: Int, nxe: Bool, vendor: CPUModel.Vendor) -> UInt64 {
        var mask = mode == .pae ? paeHigh[m]! : high[m]!
        if !nxe { mask |= xdWithoutNXE }
        switch entry {
        case .pml5e, .pml4e:
            mask |= 0x80
            if vendor == .amd { mask |= 0x100 }
        case .pdpte1G:
            mask |= 0x3fff_e000
        case .pde2M:
            mask |= 0x001f_e000
        case .pdpteTable, .pdeTable, .pte:
            break
        }
        return mask
    }

    /// Bits of the entry that are part of the physical address it holds.
    static func addressBits(_ entry: SweptEntry, m: Int) -> UInt64 {
        bits(m - 1, entry.pageShift)
    }
}

/// One parameter of the 64-bit sweep.
struct ReservedSweepCase: Sendable, CustomTestStringConvertible {
    var mode: PagingMode
    var entry: SweptEntry
    var m: Int
    var nxe: Bool
    var vendor: CPUModel.Vendor

    var testDescription: String { "\(mode) \(entry.rawValue) M=\(m) NXE=\(nxe ? 1 : 0) \(vendor)" }

    static let all: [ReservedSweepCase] = {
        var cases: [ReservedSweepCase] = []
        for mode in [PagingMode.pae, .level4, .level5] {
            let entries: [SweptEntry] = switch mode {
            case .pae: [.pdeTable, .pde2M, .pte]
            case .level4: [.pml4e, .pdpteTable, .pdpte1G, .pdeTable, .pde2M, .pte]
            default: SweptEntry.allCases
            }
            for entry in entries {
                for m in [36, 46, 52] {
                    for nxe in [false, true] {
                        for vendor in [CPUModel.Vendor.intel, .amd] {
                            cases.append(ReservedSweepCase(mode: mode, entry: entry, m: m, nxe: nxe, vendor: vendor))
                        }
                    }
                }
            }
        }
        return cases
    }()
}

/// Table addresses of equal Hamming weight (two bits each): setting any one
/// extra address bit in a pointer never lands on another table in use.
private let sweepTables: [PagingMode: [UInt64]] = [
    .pae: [0x00c0_0fe0, 0x0060_0000, 0x0050_0000],
    .level4: [0x0090_0000, 0x0060_0000, 0x0050_0000, 0x0030_0000],
    .level5: [0x00a0_0000, 0x0090_0000, 0x0060_0000, 0x0050_0000, 0x0030_0000],
    .bits32: [0x0060_0000, 0x0050_0000],
]

@Suite("Reserved bits")
struct ReservedBitTests {
    static let read = MemoryAccess(.read, .supervisor)

    @Test("each bit of a present 64-bit entry is reserved exactly as the table says", arguments: ReservedSweepCase.all)
    func sweep64(_ c: ReservedSweepCase) throws {
        let memory = makeMemory()
        let builder = PageTableBuilder(mode: c.mode, memory: memory, tables: sweepTables[c.mode]!)
        let flags = Entry.p | Entry.rw | Entry.us | Entry.a
        let base: UInt64
        var baseline: UInt64
        switch c.entry {
        case .pdpte1G:
            base = Layout.page1G
            builder.mapLarge(level: 3, base: base, leafFlags: flags | Entry.d)
        case .pde2M:
            base = Layout.page2M
            builder.mapLarge(level: 2, base: base, leafFlags: flags | Entry.d)
        default:
            base = Layout.page4K
            builder.map4K(leafFlags: flags | Entry.d)
        }
        baseline = builder.entry(level: c.entry.level)
        var setup = builder.setup()
        setup.nxe = c.nxe
        let registers = try setup.registers(model: CPUModel(maxPhysicalAddressBits: c.m, vendor: c.vendor), memory: memory)
        let offsetMask: UInt64 = (1 << UInt64(c.entry.pageShift)) - 1
        let basePA = base | builder.gva & offsetMask

        let reserved = ReservedBitTable.mask(c.entry, mode: c.mode, m: c.m, nxe: c.nxe, vendor: c.vendor)
        let address = ReservedBitTable.addressBits(c.entry, m: c.m)
        var reservedSeen: UInt64 = 0
        for b in 0..<64 {
            let bit: UInt64 = 1 << UInt64(b)
            // PS in a PDPTE/PDE pointing to a table turns it into a large leaf:
            // that entry kind has its own sweep.
            if bit == Entry.ps && (c.entry == .pdpteTable || c.entry == .pdeTable) { continue }
            builder.setEntry(level: c.entry.level, baseline | bit)
            let result = Walker.walk(builder.gva, Self.read, registers: registers, memory: memory, setAccessedDirty: false)
            let expected: String
            if reserved & bit != 0 {
                expected = "#PF 0x9"
                reservedSeen |= bit
                #expect(result.errorCode == PFEC.p | PFEC.rsvd, "\(c.testDescription) bit \(b) is reserved: walker \(result.summary), expected \(expected)")
            } else if baseline & bit == 0 && address & bit != 0 {
                if c.entry.isLeaf {
                    expected = "ok pa=\(hex(basePA | bit))"
                    #expect(result.physicalAddress == basePA | bit, "\(c.testDescription) bit \(b) is an address bit: walker \(result.summary), expected \(expected)")
                } else {
                    // The next table moves to an empty (or unbacked) frame.
                    expected = "#PF 0x0 at the next level"
                    #expect(result.errorCode == 0, "\(c.testDescription) bit \(b) is an address bit: walker \(result.summary), expected \(expected)")
                }
            } else {
                expected = "ok pa=\(hex(basePA))"
                #expect(result.physicalAddress == basePA, "\(c.testDescription) bit \(b) is not reserved: walker \(result.summary), expected \(expected)")
            }
        }
        // The sweep did try every reserved bit of the table.
        #expect(reservedSeen == reserved, "\(c.testDescription): swept reserved \(hex(reservedSeen)), table \(hex(reserved))")
    }

    @Test("XD in a 4-level PTE: reserved with NXE=0, no-execute with NXE=1")
    func executeDisableDependsOnNXE() throws {
        // XD in a 4-level PTE: reserved with NXE=0, a no-execute flag with NXE=1.
        for nxe in [false, true] {
            let memory = makeMemory()
            let builder = PageTableBuilder(mode: .level4, memory: memory)
            builder.map4K(leafFlags: Entry.p | Entry.rw | Entry.xd)
            var setup = builder.setup()
            setup.nxe = nxe
            let registers = try setup.registers(memory: memory)
            let fetch = Walker.walk(builder.gva, .fetch, registers: registers, memory: memory)
            let read = Walker.walk(builder.gva, .read, registers: registers, memory: memory)
            if nxe {
                #expect(fetch.errorCode == PFEC.p | PFEC.id, "NXE=1 XD PTE fetch: \(fetch.summary)")
                #expect(read.physicalAddress == Layout.page4K | 0xabc, "NXE=1 XD PTE read: \(read.summary)")
            } else {
                #expect(fetch.errorCode == PFEC.p | PFEC.rsvd, "NXE=0 XD PTE fetch: \(fetch.summary)")
                #expect(read.errorCode == PFEC.p | PFEC.rsvd, "NXE=0 XD PTE read: \(read.summary)")
            }
        }
    }

    // MARK: PAE PDPTE registers

    @Test("each bit of a present PAE PDPTE: MOV CR3 #GP exactly on 63:M, 8:5, 2:1", arguments: [36, 46, 52])
    func pdpteRegisterSweep(m: Int) throws {
        let memory = makeMemory()
        let builder = PageTableBuilder(mode: .pae, memory: memory, tables: sweepTables[.pae]!)
        builder.map4K(leafFlags: Entry.p | Entry.rw | Entry.a | Entry.d)
        let baseline = builder.entry(level: 3)
        let model = CPUModel(maxPhysicalAddressBits: m)
        // Start with a loadable PDPT, then MOV CR3 with each bit set in turn.
        var registers = try builder.setup().registers(model: model, memory: memory)
        let reserved = ReservedBitTable.pdpteRegister[m]!
        for nxe in [false, true] {
            let written = registers.write(.efer, nxe ? Bit.eferNXE : 0, memory: memory)
            #expect(written.isAccepted)
            for b in 0..<64 {
                let bit: UInt64 = 1 << UInt64(b)
                builder.setEntry(level: 3, baseline | bit)
                let before = registers
                let result = registers.write(.cr3, builder.cr3, memory: memory)
                if reserved & bit != 0 {
                    #expect(result == .generalProtection, "PAE M=\(m) NXE=\(nxe ? 1 : 0) PDPTE bit \(b) is reserved: MOV CR3 gave \(result)")
                    #expect(registers == before, "PAE M=\(m) PDPTE bit \(b): a #GP write changed the registers")
                } else {
                    #expect(result.isAccepted, "PAE M=\(m) NXE=\(nxe ? 1 : 0) PDPTE bit \(b) is not reserved: MOV CR3 gave #GP")
                    #expect(registers.pdptes[Int(builder.index(level: 3))] == baseline | bit, "PAE M=\(m) PDPTE bit \(b): register not loaded")
                }
            }
        }
    }

    // MARK: 32-bit paging

    struct Case32: Sendable, CustomTestStringConvertible {
        enum Entry32: String, Sendable { case pdeTable = "PDE→PT", pde4M = "PDE (4 MiB)", pte = "PTE" }
        var entry: Entry32
        var pse: Bool
        var m: Int
        var testDescription: String { "32-bit PSE=\(pse ? 1 : 0) \(entry.rawValue) M=\(m)" }

        static let all: [Case32] = [36, 46, 52].flatMap { m in
            [Case32(entry: .pdeTable, pse: false, m: m), Case32(entry: .pdeTable, pse: true, m: m),
             Case32(entry: .pte, pse: false, m: m), Case32(entry: .pte, pse: true, m: m),
             Case32(entry: .pde4M, pse: true, m: m)]
        }
    }

    @Test("each bit of a present 32-bit entry (PSE-36 4 MiB PDE: bits 21:(M'-19), M'=min(M,40))", arguments: Case32.all)
    func sweep32(_ c: Case32) throws {
        let memory = makeMemory()
        let builder = PageTableBuilder(mode: .bits32, memory: memory, tables: sweepTables[.bits32]!)
        let flags = Entry.p | Entry.rw | Entry.us | Entry.a | Entry.d
        let level = c.entry == .pte ? 1 : 2
        let shift: UInt64 = c.entry == .pde4M ? 22 : 12
        let base: UInt64
        if c.entry == .pde4M {
            base = Layout.page4M
            builder.mapLarge(level: 2, base: base, leafFlags: flags)
        } else {
            base = Layout.page4K
            builder.map4K(leafFlags: flags)
        }
        let baseline = builder.entry(level: level)
        var setup = builder.setup()
        setup.pse = c.pse
        let registers = try setup.registers(model: CPUModel(maxPhysicalAddressBits: c.m), memory: memory)
        let basePA = base | builder.gva & ((1 << shift) - 1)
        let mPrime = min(c.m, 40)
        let reserved: UInt64 = c.entry == .pde4M ? ReservedBitTable.pde4M[c.m]! : 0
        for b in 0..<32 {
            let bit: UInt64 = 1 << UInt64(b)
            if bit == Entry.ps && c.entry == .pdeTable && c.pse { continue } // becomes a 4 MiB leaf
            builder.setEntry(level: level, baseline | bit)
            let result = Walker.walk(builder.gva, Self.read, registers: registers, memory: memory, setAccessedDirty: false)
            let what = "\(c.testDescription) bit \(b)"
            if reserved & bit != 0 {
                #expect(result.errorCode == PFEC.p | PFEC.rsvd, "\(what) is reserved: walker \(result.summary), expected #PF 0x9")
                continue
            }
            if baseline & bit != 0 {
                #expect(result.physicalAddress == basePA, "\(what) already set: walker \(result.summary)")
                continue
            }
            switch c.entry {
            case .pde4M:
                if b >= 22 {
                    #expect(result.physicalAddress == basePA | bit, "\(what): walker \(result.summary), expected ok pa=\(hex(basePA | bit))")
                } else if b >= 13 && b < 13 + (mPrime - 32) {
                    // PSE-36: PDE bit 13+i is physical-address bit 32+i.
                    let pa = basePA | 1 << UInt64(32 + b - 13)
                    #expect(result.physicalAddress == pa, "\(what) (PSE-36): walker \(result.summary), expected ok pa=\(hex(pa))")
                } else {
                    #expect(result.physicalAddress == basePA, "\(what): walker \(result.summary), expected ok pa=\(hex(basePA))")
                }
            case .pte:
                let pa = b >= 12 ? basePA | bit : basePA
                #expect(result.physicalAddress == pa, "\(what): walker \(result.summary), expected ok pa=\(hex(pa))")
            case .pdeTable:
                if b >= 12 {
                    #expect(result.errorCode == 0, "\(what) moves the page table: walker \(result.summary), expected #PF 0x0")
                } else {
                    // Includes PS with CR4.PSE=0: ignored, still a table.
                    #expect(result.physicalAddress == basePA, "\(what): walker \(result.summary), expected ok pa=\(hex(basePA))")
                }
            }
        }
    }

    // MARK: Precedence

    @Test("a reserved bit pre-empts every permission fault and sets no A/D")
    func reservedPreemptsPermissions() throws {
        let memory = makeMemory()
        let builder = PageTableBuilder(mode: .level4, memory: memory)
        // Supervisor-only, read-only, execute-disabled leaf with bit 51 set (M=46).
        builder.map4K(leafFlags: Entry.p | Entry.xd | 1 << 51)
        builder.setEntry(level: 4, builder.pointer(level: 4, flags: Entry.p | Entry.rw | Entry.us))
        var setup = builder.setup()
        setup.nxe = true
        setup.wp = true
        setup.smep = true
        let registers = try setup.registers(model: CPUModel(maxPhysicalAddressBits: 46), memory: memory)
        let pml4e = builder.entry(level: 4)
        for access in allAccesses {
            let result = Walker.walk(builder.gva, access, registers: registers, memory: memory)
            var code = PFEC.p | PFEC.rsvd
            if access.kind == .write { code |= PFEC.w }
            if access.mode == .user { code |= PFEC.u }
            if access.kind == .fetch { code |= PFEC.id }
            #expect(result.errorCode == code, "\(access): walker \(result.summary), expected #PF \(hex(code))")
            #expect(builder.entry(level: 4) == pml4e, "\(access): the PML4E's A flag was set on a faulting walk")
        }
    }

    @Test("the highest level with a problem decides: not-present above reserved, reserved above not-present")
    func firstFaultingLevelWins() throws {
        let memory = makeMemory()
        let builder = PageTableBuilder(mode: .level4, memory: memory)
        builder.map4K(leafFlags: Entry.p | 1 << 51)
        let registers = try builder.setup().registers(model: CPUModel(maxPhysicalAddressBits: 46), memory: memory)
        // PDE not present (with a reserved bit, which is then ignored) above a reserved PTE.
        builder.setEntry(level: 2, builder.pointer(level: 2, flags: 1 << 51))
        #expect(Walker.walk(builder.gva, .read, registers: registers, memory: memory).errorCode == 0)
        // PDPTE with a reserved bit above a not-present PDE.
        builder.setEntry(level: 3, builder.pointer(level: 3, flags: Entry.p | Entry.rw | 1 << 50))
        builder.setEntry(level: 2, 0)
        #expect(Walker.walk(builder.gva, .read, registers: registers, memory: memory).errorCode == PFEC.p | PFEC.rsvd)
    }
}
