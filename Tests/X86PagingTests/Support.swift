import Testing
import X86Paging

// Shared helpers of the X86Paging tests: a deterministic RNG, entry bits
// spelled out from the SDM (not taken from PTE32/PTE64, so a wrong constant
// there cannot hide in the tests), register setup through the architectural
// write path, and a page-table builder over SparseMemory.

// MARK: - Deterministic randomness

/// SplitMix64: a tiny deterministic generator so that a failing random case
/// reproduces from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

// MARK: - Entry bits (SDM Vol. 3A §4.3–4.5)

enum Entry {
    static let p: UInt64 = 1 << 0
    static let rw: UInt64 = 1 << 1
    static let us: UInt64 = 1 << 2
    static let pwt: UInt64 = 1 << 3
    static let pcd: UInt64 = 1 << 4
    static let a: UInt64 = 1 << 5
    static let d: UInt64 = 1 << 6
    static let ps: UInt64 = 1 << 7
    static let g: UInt64 = 1 << 8
    static let xd: UInt64 = 1 << 63

    /// Protection key field, bits 62:59.
    static func key(_ k: UInt64) -> UInt64 { k << 59 }
}

/// Page-fault error-code bits (SDM Vol. 3A §4.7), spelled out.
enum PFEC {
    static let p: UInt64 = 1 << 0
    static let w: UInt64 = 1 << 1
    static let u: UInt64 = 1 << 2
    static let rsvd: UInt64 = 1 << 3
    static let id: UInt64 = 1 << 4
    static let pk: UInt64 = 1 << 5
}

/// Control-register bits, spelled out.
enum Bit {
    static let cr0PE: UInt64 = 1 << 0
    static let cr0ET: UInt64 = 1 << 4
    static let cr0WP: UInt64 = 1 << 16
    static let cr0NW: UInt64 = 1 << 29
    static let cr0CD: UInt64 = 1 << 30
    static let cr0PG: UInt64 = 1 << 31

    static let cr4PSE: UInt64 = 1 << 4
    static let cr4PAE: UInt64 = 1 << 5
    static let cr4PGE: UInt64 = 1 << 7
    static let cr4LA57: UInt64 = 1 << 12
    static let cr4PCIDE: UInt64 = 1 << 17
    static let cr4SMEP: UInt64 = 1 << 20
    static let cr4SMAP: UInt64 = 1 << 21
    static let cr4PKE: UInt64 = 1 << 22

    static let eferLME: UInt64 = 1 << 8
    static let eferLMA: UInt64 = 1 << 10
    static let eferNXE: UInt64 = 1 << 11
}

/// Mask of bits `high...low` (empty when high < low).
func bits(_ high: Int, _ low: Int) -> UInt64 {
    guard high >= low else { return 0 }
    var mask: UInt64 = 0
    for index in low...high { mask |= 1 << UInt64(index) }
    return mask
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

// MARK: - Register setup through the architectural write path

struct SetupRejected: Error, CustomStringConvertible {
    var register: ControlRegister
    var value: UInt64
    var description: String { "setup write \(register) = \(hex(value)) was rejected (#GP)" }
}

/// A paging configuration reached from RESET by the writes an OS makes:
/// EFER, CR4, CR3, CR0 (enabling paging), then CR4.PCIDE and PKRU.
struct RegisterSetup {
    var mode: PagingMode
    var cr3: UInt64
    var pse = false
    var pge = false
    var wp = false
    var smep = false
    var smap = false
    var pke = false
    var nxe = false
    var pcide = false
    var pkru: UInt32 = 0

    var cr4: UInt64 {
        var value: UInt64 = 0
        if pse { value |= Bit.cr4PSE }
        if mode == .pae || mode.isLongMode { value |= Bit.cr4PAE }
        if mode == .level5 { value |= Bit.cr4LA57 }
        if pge { value |= Bit.cr4PGE }
        if smep { value |= Bit.cr4SMEP }
        if smap { value |= Bit.cr4SMAP }
        if pke { value |= Bit.cr4PKE }
        return value
    }

    var cr0: UInt64 {
        var value = Bit.cr0PE | Bit.cr0ET
        if mode != .none { value |= Bit.cr0PG }
        if wp { value |= Bit.cr0WP }
        return value
    }

    var efer: UInt64 {
        var value: UInt64 = 0
        if mode.isLongMode { value |= Bit.eferLME }
        if nxe { value |= Bit.eferNXE }
        return value
    }

    /// Performs the writes in order; throws on the first rejected one.
    func apply(_ write: (ControlRegister, UInt64) -> RegisterWriteResult) throws {
        var writes: [(ControlRegister, UInt64)] = [(.efer, efer), (.cr4, cr4), (.cr3, cr3), (.cr0, cr0)]
        if pcide { writes.append((.cr4, cr4 | Bit.cr4PCIDE)) }
        writes.append((.pkru, UInt64(pkru)))
        for (register, value) in writes where !write(register, value).isAccepted {
            throw SetupRejected(register: register, value: value)
        }
    }

    func registers(model: CPUModel = CPUModel(), memory: SparseMemory) throws -> ControlRegisters {
        var registers = ControlRegisters(model: model)
        try apply { registers.write($0, $1, memory: memory) }
        return registers
    }

    func cpu(model: CPUModel = CPUModel(), memory: SparseMemory, tlbCapacity: Int = 4096) throws -> ArchitecturalCPU {
        let cpu = ArchitecturalCPU(model: model, tlbCapacity: tlbCapacity)
        try apply { cpu.write($0, $1, memory: memory) }
        return cpu
    }
}

// MARK: - Page-table builder

/// Fixed physical layout used by the tests: tables below 2 MiB, pages above.
enum Layout {
    /// Guest memory size: tables and pages must lie below it.
    static let memorySize: UInt64 = 1 << 32
    /// A 4 KiB data page.
    static let page4K: UInt64 = 0x0345_6000
    /// A 2 MiB page.
    static let page2M: UInt64 = 0x0360_0000
    /// A 4 MiB page (32-bit paging with CR4.PSE).
    static let page4M: UInt64 = 0x0340_0000
    /// A 1 GiB page.
    static let page1G: UInt64 = 0x4000_0000

    /// The linear address each mode's tests use; every level's index is
    /// distinct and non-zero, and the page offset is non-zero.
    static func gva(_ mode: PagingMode) -> UInt64 {
        switch mode {
        case .none, .bits32: 0x9234_5abc
        case .pae: 0xd234_5abc
        case .level4: 0xffff_9234_5678_9abc
        case .level5: 0xff92_3456_789a_bcde
        }
    }

    /// Default table addresses, top-down. The PAE PDPT is deliberately not
    /// page-aligned (CR3[31:5] locates it).
    static func tables(_ mode: PagingMode) -> [UInt64] {
        switch mode {
        case .none: []
        case .bits32: [0x0010_2000, 0x0010_1000]
        case .pae: [0x0010_3fe0, 0x0010_2000, 0x0010_1000]
        case .level4: [0x0010_4000, 0x0010_3000, 0x0010_2000, 0x0010_1000]
        case .level5: [0x0010_5000, 0x0010_4000, 0x0010_3000, 0x0010_2000, 0x0010_1000]
        }
    }
}

/// Paging structures for one linear address: one table per level at chosen
/// addresses, entries written and read at the width of the mode.
/// Levels: 5 = PML5E … 1 = PTE; PAE PDPTEs are level 3, 32-bit PDEs level 2.
struct PageTableBuilder {
    let mode: PagingMode
    let memory: SparseMemory
    let gva: UInt64
    /// Table address per level, index `level - 1`.
    let tables: [UInt64]

    /// `tables` top-down; defaults to `Layout.tables(mode)`.
    init(mode: PagingMode, memory: SparseMemory, gva: UInt64? = nil, tables: [UInt64]? = nil) {
        precondition(mode != .none)
        self.mode = mode
        self.memory = memory
        self.gva = gva ?? Layout.gva(mode)
        let topDown = tables ?? Layout.tables(mode)
        precondition(topDown.count == mode.levels)
        self.tables = topDown.reversed()
    }

    var entrySize: Int { mode == .bits32 ? 4 : 8 }
    /// The CR3 value that locates the top table.
    var cr3: UInt64 { tables[mode.levels - 1] }
    func table(level: Int) -> UInt64 { tables[level - 1] }

    /// Index of the entry for `address` in the table at `level`.
    func index(level: Int, address: UInt64? = nil) -> UInt64 {
        let la = address ?? gva
        switch mode {
        case .bits32: return level == 2 ? (la >> 22) & 0x3ff : (la >> 12) & 0x3ff
        case .pae where level == 3: return (la >> 30) & 3
        default: return (la >> UInt64(12 + 9 * (level - 1))) & 0x1ff
        }
    }

    func entryAddress(level: Int, address: UInt64? = nil) -> UInt64 {
        table(level: level) + index(level: level, address: address) * UInt64(entrySize)
    }

    func entry(level: Int, address: UInt64? = nil) -> UInt64 {
        memory.load(entryAddress(level: level, address: address), width: entrySize)
    }

    func setEntry(level: Int, _ value: UInt64, address: UInt64? = nil) {
        memory.store(entryAddress(level: level, address: address), width: entrySize, value)
    }

    /// An entry at `level` pointing to the table of `level - 1` with `flags`.
    func pointer(level: Int, flags: UInt64) -> UInt64 {
        table(level: level - 1) | flags
    }

    /// Writes every entry from the root down to `level + 1` as a pointer to
    /// the next table with `flags` (PAE PDPTEs get P only: their R/W and U/S
    /// bits are reserved).
    func linkDown(to level: Int, flags: UInt64 = Entry.p | Entry.rw | Entry.us | Entry.a) {
        guard level < mode.levels else { return }
        for upper in stride(from: mode.levels, to: level, by: -1) {
            let entryFlags = mode == .pae && upper == 3 ? Entry.p : flags
            setEntry(level: upper, pointer(level: upper, flags: entryFlags))
        }
    }

    /// Maps `gva` to a 4 KiB page at `frame` with `leafFlags` (P included by
    /// the caller); the path above gets P, R/W, U/S, A.
    func map4K(frame: UInt64 = Layout.page4K, leafFlags: UInt64) {
        linkDown(to: 1)
        setEntry(level: 1, frame | leafFlags)
    }

    /// Maps `gva` with a large page whose leaf is at `level` (2: 2/4 MiB, 3: 1 GiB).
    func mapLarge(level: Int, base: UInt64, leafFlags: UInt64) {
        linkDown(to: level)
        setEntry(level: level, base | leafFlags | Entry.ps)
    }

    /// CPU setup for this builder's tables.
    func setup(mode setupMode: PagingMode? = nil) -> RegisterSetup {
        RegisterSetup(mode: setupMode ?? mode, cr3: cr3)
    }
}

/// A fresh 4 GiB sparse memory.
func makeMemory() -> SparseMemory { SparseMemory(size: Layout.memorySize) }

/// The nine access descriptors: {read, write, fetch} × {user, supervisor, implicit supervisor}.
let allAccesses: [MemoryAccess] = MemoryAccess.Kind.allCases.flatMap { kind in
    MemoryAccess.Mode.allCases.map { MemoryAccess(kind, $0) }
}

extension WalkResult {
    /// `ok pa=… shift=…`, `#PF …`, `#GP` — for failure messages.
    var summary: String {
        switch self {
        case .translated(let t): "ok pa=\(hex(t.physicalAddress)) shift=\(t.pageShift)"
        case .pageFault(let code): "#PF \(code)"
        case .generalProtection: "#GP"
        }
    }

    var errorCode: UInt64? {
        if case .pageFault(let code) = self { code.rawValue } else { nil }
    }

    var physicalAddress: UInt64? {
        if case .translated(let t) = self { t.physicalAddress } else { nil }
    }
}
