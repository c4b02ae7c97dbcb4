import Testing
import X86Paging

/// Guest-physical addresses across the whole width of every second-stage
/// format. A physical address is neither canonical nor not: 4-level NPT and
/// EPT tables translate bits 47:0 (so 2^47 is an ordinary address, index 256
/// of the top table), 5-level ones bits 56:0, legacy-mode NPT tables 31:0;
/// anything above faults without reading an entry. And no guest-physical
/// address, whatever its width, can make the second stage trap.
@Suite("Second-stage address width")
struct SecondStageWidthTests {
    enum Format: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case npt32, nptPAE, npt4, npt5, ept4, ept5
        var testDescription: String { rawValue }
        var levels: Int {
            switch self {
            case .npt32: 2
            case .nptPAE: 3
            case .npt4, .ept4: 4
            case .npt5, .ept5: 5
            }
        }
        var isEPT: Bool { self == .ept4 || self == .ept5 }
        var width: Int {
            switch self {
            case .npt32, .nptPAE: 32
            case .npt4, .ept4: 48
            case .npt5, .ept5: 57
            }
        }
    }

    /// Nested tables that map the 4 KiB page at `gpa` to host 0x700000,
    /// built from host 0x1000 upwards.
    static func tables(_ format: Format, mapping gpa: UInt64) -> (SparseMemory, NestedPaging) {
        let memory = SparseMemory(size: 1 << 24)
        var next: UInt64 = 0x1000
        func allocate() -> UInt64 { defer { next += 0x1000 }; return next }
        let root = allocate()
        var table = root
        if format == .npt32 {
            let pt = allocate()
            memory.store(root + (gpa >> 22 & 1023) * 4, width: 4, pt | 7)
            memory.store(pt + (gpa >> 12 & 1023) * 4, width: 4, 0x70_0000 | 7)
        } else {
            for level in stride(from: format.levels, through: 1, by: -1) {
                let shift = UInt64(12 + 9 * (level - 1))
                let index = format == .nptPAE && level == 3 ? gpa >> 30 & 3 : gpa >> shift & 511
                let entryAddress = table + index * 8
                if level == 1 {
                    memory.store(entryAddress, width: 8, 0x70_0000 | (format.isEPT ? 7 | 6 << 3 : 7))
                } else {
                    let child = allocate()
                    // A PAE nPDPTE carries P and the address only.
                    memory.store(entryAddress, width: 8, child | (format == .nptPAE && level == 3 ? 1 : 7))
                    table = child
                }
            }
        }
        let model = CPUModel(maxPhysicalAddressBits: 52, vendor: .amd, latchesPDPTEs: false)  // AMD: nPDPTEs are memory references
        switch format {
        case .ept4, .ept5:
            return (memory, .ept(EPTPointer(root: root, levels: format.levels, accessedDirty: true), maxPhysicalAddressBits: 52))
        case .npt32:
            return (memory, .npt(host: ControlRegisters(model: model, cr0: CR0(rawValue: 0x8000_0001), cr3: root, cr4: CR4(rawValue: 0x10), efer: EFER(rawValue: 0))))
        case .nptPAE:
            return (memory, .npt(host: ControlRegisters(model: model, cr0: CR0(rawValue: 0x8000_0001), cr3: root, cr4: CR4(rawValue: 0x20), efer: EFER(rawValue: 0x800))))
        case .npt4:
            return (memory, .npt(host: ControlRegisters(model: model, cr0: CR0(rawValue: 0x8000_0001), cr3: root, cr4: CR4(rawValue: 0x20), efer: EFER(rawValue: 0xd00))))
        case .npt5:
            return (memory, .npt(host: ControlRegisters(model: model, cr0: CR0(rawValue: 0x8000_0001), cr3: root, cr4: CR4(rawValue: 0x1020), efer: EFER(rawValue: 0xd00))))
        }
    }

    /// The last page below the format's width, and for 48 and 57 bits the
    /// first page with the top bit set (where a linear-address walk would
    /// see a sign bit).
    static func boundaries(_ format: Format) -> [UInt64] {
        let top = UInt64(1) << UInt64(format.width)
        var addresses = [top - 0x1000, 0x1000]
        if format.width > 32 { addresses += [top >> 1, (top >> 1) + 0x5000, UInt64(1) << 32] }
        return addresses
    }

    @Test("Mapped addresses at the width's boundaries translate", arguments: Format.allCases)
    func boundariesTranslate(_ format: Format) {
        for gpa in Self.boundaries(format) {
            let (memory, nested) = Self.tables(format, mapping: gpa)
            for access in [NestedAccess(.read), NestedAccess(.write), NestedAccess(.read, pagingStructure: true)] {
                var tracer = NoWalkTrace()
                let outcome = nested.translate(gpa | 0x123, access, memory: memory, tracer: &tracer)
                #expect(outcome == .translated(hostPhysicalAddress: 0x70_0123, pageShift: 12, writable: true),
                        "\(format) gpa \(String(gpa, radix: 16)) \(access)")
            }
        }
    }

    @Test("Addresses beyond the width fault without reading an entry", arguments: Format.allCases)
    func beyondWidthFaults(_ format: Format) {
        let beyond = UInt64(1) << UInt64(format.width)
        // Tables that map the address with its bits above the width dropped.
        let (memory, nested) = Self.tables(format, mapping: beyond & ((1 << UInt64(format.width)) - 1))
        for gpa in [beyond, beyond | 0x7000, UInt64.max & ~0xfff] {
            var tracer = WalkTrace()
            let outcome = nested.translate(gpa, NestedAccess(.read), memory: memory, tracer: &tracer)
            guard case .fault(let fault) = outcome else {
                Issue.record("\(format): gpa \(String(gpa, radix: 16)) translated: \(outcome)")
                continue
            }
            #expect(tracer.steps.isEmpty, "\(format): an entry was read for gpa \(String(gpa, radix: 16))")
            switch fault.kind {
            case .nestedPageFault(let info): #expect(info & 1 == 0, "\(format): P set in \(String(info, radix: 16))")
            case .eptViolation(let qualification): #expect(qualification & 0x38 == 0)
            case .eptMisconfiguration: Issue.record("\(format): misconfiguration for an address beyond the width")
            }
        }
    }

    @Test("No guest-physical address and no table content traps the second stage", arguments: Format.allCases)
    func anyAddressAnyTables(_ format: Format) {
        var random = SplitMix64(seed: 0x5ec0 + UInt64(format.levels))
        let (memory, nested) = Self.tables(format, mapping: 0)
        // Hostile tables: random entries (reserved bits, loops, addresses
        // beyond memory) in every table page.
        for _ in 0..<4096 {
            let address = 0x1000 + (random.next(upperBound: UInt64(8)) << 12) + random.next(upperBound: UInt64(512)) * 8
            memory.store(address, width: 8, random.next())
        }
        for index in 0..<20_000 {
            // Every width: shift a random value right by 0...63 bits.
            let gpa = random.next() >> random.next(upperBound: UInt64(64))
            let kinds: [NestedAccess] = [NestedAccess(.read), NestedAccess(.write), NestedAccess(.fetch),
                                         NestedAccess(.read, pagingStructure: true), NestedAccess(.write, pagingStructure: true),
                                         .pdpteRegisterLoad]
            var tracer = NoWalkTrace()
            switch nested.translate(gpa, kinds[index % kinds.count], memory: memory, tracer: &tracer) {
            case .translated(let hpa, let shift, _):
                #expect(hpa & ((1 << UInt64(shift)) - 1) == gpa & ((1 << UInt64(shift)) - 1))
            case .fault(let fault):
                #expect(fault.guestPhysicalAddress == gpa)
            }
        }
    }
}
