import Testing
import X86Paging

// Accessed and dirty flags (semantics reference §7, SDM Vol. 3A §4.8) and the
// memory references a walk makes (the walk trace).

/// One translation shape: paging mode and the level of the leaf.
struct WalkShape: Sendable, CustomTestStringConvertible {
    var name: String
    var mode: PagingMode
    var leafLevel: Int
    var pse = false
    /// Memory references of a successful walk (PAE PDPTEs are registers).
    var references: Int

    var testDescription: String { name }

    var pageBase: UInt64 {
        switch (mode, leafLevel) {
        case (_, 1): Layout.page4K
        case (.bits32, 2): Layout.page4M
        case (_, 2): Layout.page2M
        default: Layout.page1G
        }
    }

    var pageShift: Int {
        switch (mode, leafLevel) {
        case (_, 1): 12
        case (.bits32, 2): 22
        case (_, 2): 21
        default: 30
        }
    }

    static let all: [WalkShape] = [
        WalkShape(name: "32-bit 4 KiB", mode: .bits32, leafLevel: 1, references: 2),
        WalkShape(name: "32-bit 4 KiB (PSE on)", mode: .bits32, leafLevel: 1, pse: true, references: 2),
        WalkShape(name: "32-bit 4 MiB", mode: .bits32, leafLevel: 2, pse: true, references: 1),
        WalkShape(name: "PAE 4 KiB", mode: .pae, leafLevel: 1, references: 2),
        WalkShape(name: "PAE 2 MiB", mode: .pae, leafLevel: 2, references: 1),
        WalkShape(name: "4-level 4 KiB", mode: .level4, leafLevel: 1, references: 4),
        WalkShape(name: "4-level 2 MiB", mode: .level4, leafLevel: 2, references: 3),
        WalkShape(name: "4-level 1 GiB", mode: .level4, leafLevel: 3, references: 2),
        WalkShape(name: "5-level 4 KiB", mode: .level5, leafLevel: 1, references: 5),
        WalkShape(name: "5-level 2 MiB", mode: .level5, leafLevel: 2, references: 4),
        WalkShape(name: "5-level 1 GiB", mode: .level5, leafLevel: 3, references: 3),
    ]

    /// Levels whose entries are in memory, top-down.
    var memoryLevels: [Int] {
        Array(stride(from: mode.levels, through: leafLevel, by: -1)).filter { !(mode == .pae && $0 == 3) }
    }

    /// Builds the path with A=D=0 everywhere and `extra` bits in every
    /// entry (bits the A/D update must preserve), plus `leafFlags` on the leaf.
    func build(memory: SparseMemory, leafFlags: UInt64, extra: UInt64 = 0) -> PageTableBuilder {
        let builder = PageTableBuilder(mode: mode, memory: memory)
        for level in memoryLevels where level != leafLevel {
            builder.setEntry(level: level, builder.pointer(level: level, flags: Entry.p | Entry.rw | Entry.us | extra))
        }
        if mode == .pae { builder.setEntry(level: 3, builder.pointer(level: 3, flags: Entry.p)) }
        let ps = leafLevel > 1 ? Entry.ps : 0
        builder.setEntry(level: leafLevel, pageBase | leafFlags | ps | extra)
        return builder
    }

    func registers(memory: SparseMemory, builder: PageTableBuilder, wp: Bool = false, nxe: Bool = true) throws -> ControlRegisters {
        var setup = builder.setup()
        setup.pse = pse
        setup.wp = wp
        setup.nxe = nxe && mode != .bits32
        return try setup.registers(model: CPUModel(maxPhysicalAddressBits: 46), memory: memory)
    }
}

@Suite("Accessed and dirty flags")
struct AccessedDirtyTests {
    /// Bits every A/D update must leave alone: PWT, PCD, the ignored bits 11:9
    /// and, in 64-bit formats, bit 52 and the protection-key field.
    static func preservedBits(_ mode: PagingMode) -> UInt64 {
        mode == .bits32 ? Entry.pwt | Entry.pcd | 0xe00 : Entry.pwt | Entry.pcd | 0xe00 | (mode.isLongMode ? 1 << 52 | Entry.key(5) : 0)
    }

    @Test("a successful read sets A on every entry used and D nowhere", arguments: WalkShape.all)
    func readSetsAccessed(_ shape: WalkShape) throws {
        let memory = makeMemory()
        let extra = Self.preservedBits(shape.mode)
        let builder = shape.build(memory: memory, leafFlags: Entry.p | Entry.rw | Entry.us, extra: extra)
        let registers = try shape.registers(memory: memory, builder: builder)
        let before = shape.memoryLevels.map { builder.entry(level: $0) }
        let pdpt = shape.mode == .pae ? builder.entry(level: 3) : 0
        var trace = WalkTrace()
        let result = Walker.walk(builder.gva, .read, registers: registers, memory: memory, tracer: &trace)
        let pa = shape.pageBase | builder.gva & ((1 << UInt64(shape.pageShift)) - 1)
        #expect(result.physicalAddress == pa, "\(shape.name) read: \(result.summary), expected ok pa=\(hex(pa))")
        for (slot, level) in shape.memoryLevels.enumerated() {
            let after = builder.entry(level: level)
            #expect(after == before[slot] | Entry.a, "\(shape.name) read: level-\(level) entry \(hex(before[slot])) → \(hex(after)), expected \(hex(before[slot] | Entry.a))")
        }
        #expect(trace.updates.count == shape.memoryLevels.count, "\(shape.name): \(trace.updates.count) A/D writes recorded")
        if shape.mode == .pae {
            #expect(builder.entry(level: 3) == pdpt, "PAE: the in-memory PDPTE was written")
        }
        // A second read changes nothing and records no update.
        var again = WalkTrace()
        _ = Walker.walk(builder.gva, .read, registers: registers, memory: memory, tracer: &again)
        #expect(again.updates.isEmpty, "\(shape.name): second read rewrote \(again.updates.count) entries")
    }

    @Test("a successful write sets A everywhere and D on the leaf only", arguments: WalkShape.all, [false, true])
    func writeSetsDirtyOnLeaf(_ shape: WalkShape, readOnlyWithWPClear: Bool) throws {
        let memory = makeMemory()
        let extra = Self.preservedBits(shape.mode)
        // With CR0.WP=0 a supervisor write to a read-only page succeeds and sets D too.
        let leafFlags = readOnlyWithWPClear ? Entry.p | Entry.us : Entry.p | Entry.rw | Entry.us
        let builder = shape.build(memory: memory, leafFlags: leafFlags, extra: extra)
        let registers = try shape.registers(memory: memory, builder: builder, wp: false)
        let before = shape.memoryLevels.map { builder.entry(level: $0) }
        let result = Walker.walk(builder.gva, .write, registers: registers, memory: memory)
        let what = "\(shape.name) supervisor write\(readOnlyWithWPClear ? " to a read-only page, WP=0" : "")"
        #expect(result.physicalAddress != nil, "\(what): \(result.summary)")
        for (slot, level) in shape.memoryLevels.enumerated() {
            let want = before[slot] | Entry.a | (level == shape.leafLevel ? Entry.d : 0)
            let after = builder.entry(level: level)
            #expect(after == want, "\(what): level-\(level) entry \(hex(after)), expected \(hex(want))")
        }
        if case .translated(let t) = result { #expect(t.dirty, "\(what): translation not marked dirty") }
    }

    struct FaultCase: Sendable, CustomTestStringConvertible {
        var name: String
        var shape: WalkShape
        var leafFlags: UInt64
        var access: MemoryAccess
        var wp = true
        var testDescription: String { "\(shape.name): \(name)" }

        static let all: [FaultCase] = WalkShape.all.flatMap { shape -> [FaultCase] in
            let longOrPAE = shape.mode != .bits32
            var cases = [
                FaultCase(name: "leaf not present", shape: shape, leafFlags: Entry.rw | Entry.us, access: .read),
                FaultCase(name: "user read of a supervisor page", shape: shape, leafFlags: Entry.p | Entry.rw, access: MemoryAccess(.read, .user)),
                FaultCase(name: "supervisor write to a read-only page, WP=1", shape: shape, leafFlags: Entry.p | Entry.us, access: .write),
            ]
            if longOrPAE {
                cases.append(FaultCase(name: "fetch from an XD page", shape: shape, leafFlags: Entry.p | Entry.rw | Entry.xd, access: .fetch))
                cases.append(FaultCase(name: "reserved bit 51 in the leaf", shape: shape, leafFlags: Entry.p | Entry.rw | 1 << 51, access: .write))
            } else if shape.leafLevel == 2 {
                cases.append(FaultCase(name: "reserved bit 21 in the 4 MiB PDE", shape: shape, leafFlags: Entry.p | Entry.rw | 1 << 21, access: .write))
            }
            return cases
        }
    }

    @Test("a faulting walk writes nothing", arguments: FaultCase.all)
    func faultWritesNothing(_ c: FaultCase) throws {
        let memory = makeMemory()
        let builder = c.shape.build(memory: memory, leafFlags: c.leafFlags)
        let registers = try c.shape.registers(memory: memory, builder: builder, wp: c.wp)
        let before = c.shape.memoryLevels.map { builder.entry(level: $0) }
        let pagesBefore = memory.allocatedPages
        var trace = WalkTrace()
        let result = Walker.walk(builder.gva, c.access, registers: registers, memory: memory, tracer: &trace)
        #expect(result.errorCode != nil, "\(c.testDescription): expected a #PF, walker \(result.summary)")
        #expect(trace.updates.isEmpty, "\(c.testDescription): \(trace.updates.count) A/D updates on a fault")
        for (slot, level) in c.shape.memoryLevels.enumerated() {
            #expect(builder.entry(level: level) == before[slot], "\(c.testDescription): level-\(level) entry changed on a fault")
        }
        #expect(memory.allocatedPages == pagesBefore)
    }

    @Test("setAccessedDirty: false leaves memory alone", arguments: WalkShape.all)
    func noUpdatesWhenDisabled(_ shape: WalkShape) throws {
        let memory = makeMemory()
        let builder = shape.build(memory: memory, leafFlags: Entry.p | Entry.rw | Entry.us)
        let registers = try shape.registers(memory: memory, builder: builder)
        let before = shape.memoryLevels.map { builder.entry(level: $0) }
        let result = Walker.walk(builder.gva, .write, registers: registers, memory: memory, setAccessedDirty: false)
        #expect(result.physicalAddress != nil)
        #expect(shape.memoryLevels.map { builder.entry(level: $0) } == before)
    }

    @Test("a walk reads the entries top-down, once each", arguments: WalkShape.all)
    func memoryReferences(_ shape: WalkShape) throws {
        let memory = makeMemory()
        let builder = shape.build(memory: memory, leafFlags: Entry.p | Entry.rw | Entry.us)
        let registers = try shape.registers(memory: memory, builder: builder)
        var trace = WalkTrace()
        _ = Walker.walk(builder.gva, .read, registers: registers, memory: memory, tracer: &trace)
        let expected = shape.memoryLevels.map { builder.entryAddress(level: $0) }
        #expect(trace.memoryReferences.count == shape.references, "\(shape.name): \(trace.memoryReferences.count) memory references, expected \(shape.references)")
        #expect(trace.memoryReferences == expected, "\(shape.name): references \(trace.memoryReferences.map(hex)), expected \(expected.map(hex))")
        if shape.mode == .pae {
            #expect(trace.steps.first?.source == .pdpteRegister(Int(builder.index(level: 3))), "PAE: the first step must be the PDPTE register")
        }
    }

    @Test("32-bit A/D updates do not touch the neighbouring 4-byte entries")
    func narrowEntriesStayNarrow() throws {
        let memory = makeMemory()
        let shape = WalkShape.all[0]
        let builder = shape.build(memory: memory, leafFlags: Entry.p | Entry.rw | Entry.us)
        let pte = builder.entryAddress(level: 1)
        let pde = builder.entryAddress(level: 2)
        for neighbour in [pte - 4, pte + 4, pde - 4, pde + 4] { memory.store(neighbour, width: 4, 0xdead_b000) }
        let registers = try shape.registers(memory: memory, builder: builder)
        _ = Walker.walk(builder.gva, .write, registers: registers, memory: memory)
        for neighbour in [pte - 4, pte + 4, pde - 4, pde + 4] {
            #expect(memory.load(neighbour, width: 4) == 0xdead_b000, "neighbour at \(hex(neighbour)) clobbered")
        }
        #expect(memory.load(pte, width: 4) == Layout.page4K | Entry.p | Entry.rw | Entry.us | Entry.a | Entry.d)
    }

    /// access.c `check_large_pte_dirty_for_nowp`: two read-only 2 MiB mappings
    /// of one page, CR0.WP=0: a supervisor write through each succeeds and sets
    /// D in that mapping's own PDE only.
    @Test("large read-only PDEs with WP=0: D goes to the PDE used")
    func largeDirtyForNoWP() throws {
        let memory = makeMemory()
        let builder = PageTableBuilder(mode: .level4, memory: memory)
        builder.mapLarge(level: 2, base: Layout.page2M, leafFlags: Entry.p | Entry.a)
        let second = builder.gva + (1 << 21)
        builder.setEntry(level: 2, Layout.page2M | Entry.p | Entry.a | Entry.ps, address: second)
        var setup = builder.setup()
        setup.wp = false
        let registers = try setup.registers(memory: memory)
        #expect(Walker.walk(builder.gva, .write, registers: registers, memory: memory).physicalAddress == Layout.page2M | builder.gva & 0x1f_ffff)
        #expect(builder.entry(level: 2) & Entry.d != 0, "first PDE not dirty")
        #expect(builder.entry(level: 2, address: second) & Entry.d == 0, "second PDE dirtied by a write through the first")
        #expect(Walker.walk(second, .write, registers: registers, memory: memory).physicalAddress == Layout.page2M | second & 0x1f_ffff)
        #expect(builder.entry(level: 2, address: second) & Entry.d != 0, "second PDE not dirty")
    }
}
