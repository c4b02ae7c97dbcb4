import X86Paging

/// Writes a guest's own page tables (32-bit, PAE or 4-level) into guest physical
/// memory, the way a guest kernel's loader would: table frames come from a
/// bump allocator in `[tableBase, tableLimit)`, every table entry grants
/// user read/write (A and D left clear, so the first walk sets them).
///
/// The memory is reached through `poke`/`peek` so that the same layout can be
/// written into a `VirtualMachine` (shadow paging) and into the `SparseMemory`
/// of an `ArchitecturalCPU` (the native reference).
public struct GuestTableBuilder {
    public let mode: PagingMode
    /// CR3: the PML4 (4-level), the PDPT (PAE) or the page directory (32-bit).
    public let root: UInt64
    private var nextTable: UInt64
    private let tableLimit: UInt64
    private let poke: (UInt64, UInt64) -> Void
    private let peek: (UInt64) -> UInt64
    /// The page table that mapped the previous `map` call's 2 MiB region,
    /// so that filling a table does not walk from the root for every entry.
    private var lastRegion: (linear: UInt64, pageTable: UInt64)?

    static let tableEntryFlags: UInt64 = 0x7  // P RW US
    static let paePDPTEFlags: UInt64 = 0x1  // P only: RW/US are reserved in a PDPTE

    public init(mode: PagingMode, tableBase: UInt64, tableLimit: UInt64, poke: @escaping (UInt64, UInt64) -> Void, peek: @escaping (UInt64) -> UInt64) {
        precondition(mode == .level4 || mode == .pae || mode == .bits32, "benchmark guests are 32-bit, PAE or 4-level")
        self.mode = mode
        self.tableLimit = tableLimit
        self.poke = poke
        self.peek = peek
        nextTable = tableBase
        root = tableBase
        nextTable += 4096
    }

    private mutating func allocateTable() -> UInt64 {
        precondition(nextTable < tableLimit, "guest table region exhausted")
        defer { nextTable += 4096 }
        return nextTable
    }

    /// A 32-bit guest's 4-byte entry, read and written through the 8-byte
    /// `peek`/`poke` (the other half of the word is kept).
    private func entry32(_ address: UInt64) -> UInt64 {
        peek(address & ~7) >> (address & 4 != 0 ? 32 : 0) & 0xffff_ffff
    }

    private func setEntry32(_ address: UInt64, _ value: UInt64) {
        let shift: UInt64 = address & 4 != 0 ? 32 : 0
        let word = peek(address & ~7) & ~(0xffff_ffff << shift) | value << shift
        poke(address & ~7, word)
    }

    /// The 4 KiB page at `linear` mapped to `gpa` in a 32-bit guest's tables.
    private mutating func map32(_ linear: UInt64, to gpa: UInt64, flags: UInt64) {
        let directoryEntry = root + (linear >> 22 & 1023) * 4
        var pageTable = entry32(directoryEntry) & 0xffff_f000
        if entry32(directoryEntry) & 1 == 0 {
            pageTable = allocateTable()
            setEntry32(directoryEntry, pageTable | Self.tableEntryFlags)
        }
        setEntry32(pageTable + (linear >> 12 & 1023) * 4, gpa | flags)
    }

    /// The table the entry at `entryAddress` points to, made present if needed.
    private mutating func table(at entryAddress: UInt64, flags: UInt64) -> UInt64 {
        let entry = peek(entryAddress)
        if entry & 1 != 0 { return entry & 0x000f_ffff_ffff_f000 }
        let table = allocateTable()
        poke(entryAddress, table | flags)
        return table
    }

    /// Maps the 4 KiB page at `linear` to `gpa` with leaf `flags`.
    public mutating func map(_ linear: UInt64, to gpa: UInt64, flags: UInt64 = 0x7) {
        if mode == .bits32 { return map32(linear, to: gpa, flags: flags) }
        let region = linear >> 21
        let pageTable: UInt64
        if let last = lastRegion, last.linear == region {
            pageTable = last.pageTable
        } else {
            pageTable = table(at: directory(for: linear) + (linear >> 21 & 511) * 8, flags: Self.tableEntryFlags)
            lastRegion = (region, pageTable)
        }
        poke(pageTable + (linear >> 12 & 511) * 8, gpa | flags)
    }

    /// Maps the 2 MiB page at `linear` (2 MiB aligned) to `gpa` with leaf
    /// `flags` and PS, in a PAE or 4-level guest's page directory.
    public mutating func mapLarge(_ linear: UInt64, to gpa: UInt64, flags: UInt64 = 0x7) {
        precondition(mode != .bits32 && linear & 0x1f_ffff == 0 && gpa & 0x1f_ffff == 0, "2 MiB pages of PAE or 4-level guests, aligned")
        poke(directory(for: linear) + (linear >> 21 & 511) * 8, gpa | flags | 0x80)
        lastRegion = nil
    }

    /// The page directory covering `linear` in a PAE or 4-level guest, made
    /// (with its PDPT) if missing.
    private mutating func directory(for linear: UInt64) -> UInt64 {
        if mode == .pae { return table(at: root + (linear >> 30 & 3) * 8, flags: Self.paePDPTEFlags) }
        let pdpt = table(at: root + (linear >> 39 & 511) * 8, flags: Self.tableEntryFlags)
        return table(at: pdpt + (linear >> 30 & 511) * 8, flags: Self.tableEntryFlags)
    }

    /// The guest physical address of the page-directory entry for `linear`
    /// (which must be mapped).
    public func pageDirectoryEntry(_ linear: UInt64) -> UInt64 {
        if mode == .bits32 { return root + (linear >> 22 & 1023) * 4 }
        let directory: UInt64
        if mode == .pae {
            directory = peek(root + (linear >> 30 & 3) * 8) & 0x000f_ffff_ffff_f000
        } else {
            let pdpt = peek(root + (linear >> 39 & 511) * 8) & 0x000f_ffff_ffff_f000
            directory = peek(pdpt + (linear >> 30 & 511) * 8) & 0x000f_ffff_ffff_f000
        }
        return directory + (linear >> 21 & 511) * 8
    }

    /// The register writes that turn paging on with these tables, in an
    /// order the architecture accepts (PAE before LME, CR3 before PG; for a
    /// PAE guest the PDPTE registers latch when CR0.PG is set, so every
    /// PDPTE must be written first).
    public var pagingOn: [(ControlRegister, UInt64)] {
        switch mode {
        case .pae: [(.cr4, 0x20), (.cr3, root), (.cr0, 0x8001_0001)]
        case .bits32: [(.cr3, root), (.cr0, 0x8001_0001)]
        default: [(.cr4, 0x20), (.cr3, root), (.efer, 0x100), (.cr0, 0x8001_0001)]
        }
    }
}
