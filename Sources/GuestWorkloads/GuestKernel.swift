import X86Paging
import ScenarioLanguage
import ScenarioRuntime

/// A guest operating-system kernel in miniature, for workloads: it boots,
/// builds page tables the way Linux does, runs processes with demand paging,
/// forks with copy-on-write, execs, unmaps memory with the TLB invalidations
/// that requires, and switches address spaces — issuing every guest action
/// as a scenario command through a `ScenarioRecorder`.
///
/// It reacts to what the machine reports: an access that page-faults runs the
/// fault handler, which maps a page, copies one, or signals the process, and
/// the access is retried. It also checks the machine against its own
/// knowledge of the page tables it wrote: every access must reach the guest
/// physical address its tables name, read the value last written there, and
/// fault exactly when its tables say so. A difference is a `KernelPanic`
/// (the MMU under test broke the architecture).
///
/// Physical memory: `[0, 1 MiB)` unused, the kernel image at 1 MiB (text,
/// then data), 4 KiB frames from 2 MiB up, and a pool of huge frames at the
/// top. Page tables are written through the direct map once paging is on
/// (before that with `store`), so a hypervisor sees the writes a real kernel
/// makes to its page tables.
public final class GuestKernel {
    public let layout: GuestPagingLayout
    public let recorder: ScenarioRecorder
    // The state every user access reads or writes is `@exclusivity(unchecked)`:
    // a class's `var` otherwise costs a dynamic exclusivity check per access
    // (a fifth of trace replay's instructions, measured with callgrind).
    @exclusivity(unchecked) public internal(set) var counters = Counters()
    /// Called with one line per kernel event (`--verbose`).
    public var log: ((String) -> Void)?

    var allocator: FrameAllocator
    var random: SplitMix64
    /// Every page table, kernel and user, by frame address.
    var tables: [UInt64: PageTable] = [:]
    /// Known non-zero 8-byte words of data frames: frame number → word index → value.
    @exclusivity(unchecked) var contents: [UInt64: [Int: UInt64]] = [:]
    /// Freed frames that may hold non-zero words: zeroed when handed out again.
    var staleWords: [UInt64: (width: Int, offsets: [Int])] = [:]
    /// User mappings of each data frame (page-cache, zero and huge pages included).
    var references: [UInt64: Int] = [:]
    /// Page-cache frames of executable files: file → page index → frame.
    var pageCache: [Int: [Int: UInt64]] = [:]
    var zeroPage: UInt64 = 0
    /// The kernel's own address space (Linux's `init_mm`): the kernel half only.
    var kernelSpace: AddressSpace!
    var processes: [GuestProcess] = []
    @exclusivity(unchecked) var current: GuestProcess?
    var loadedCR3: UInt64 = 0
    var pagingEnabled = false
    var nextPID = 1
    var nextSpaceID = 1

    /// The kernel image: text pages (one per kernel function), then data pages.
    static let imageStart: UInt64 = 0x10_0000
    static let imageTextPages = 8
    static let imageDataPages = 8
    /// First frame the allocator hands out.
    static let firstFreeFrame: UInt64 = 0x20_0000

    /// Kernel functions, one text page each: every kernel operation first
    /// fetches its function's code through the kernel-image mapping.
    enum KernelFunction: Int {
        case startKernel, pageFault, schedule, fork, exec, memoryMap, exit, idle
    }

    public init(layout: GuestPagingLayout, recorder: ScenarioRecorder, seed: UInt64, hugeFrames: Int = 0) {
        self.layout = layout
        self.recorder = recorder
        var mixer = SplitMix64(seed: seed ^ 0x5eed_0f_9e57_ce11)
        random = SplitMix64(seed: mixer.next())
        allocator = FrameAllocator(
            start: Self.firstFreeFrame, memorySize: recorder.configuration.memorySize,
            hugeFrames: hugeFrames, hugePageSize: layout.hugePageSize)
    }

    // MARK: - Counters

    /// What the guest kernel did.
    public struct Counters: Sendable, Equatable {
        public var processesCreated = 0
        public var forks = 0
        public var execs = 0
        public var exits = 0
        public var contextSwitches = 0
        public var idlePeriods = 0
        /// Page faults the kernel's handler took (all kinds).
        public var pageFaultsHandled = 0
        /// Not-present faults on anonymous memory that got a fresh zeroed page.
        public var anonymousFaults = 0
        /// Read faults on anonymous memory that mapped the shared zero page.
        public var zeroPageFaults = 0
        /// Not-present faults on a file's text that mapped a page-cache page.
        public var fileFaults = 0
        public var hugePageFaults = 0
        /// Write faults on a copy-on-write page that copied it.
        public var copyOnWriteCopies = 0
        /// Write faults on a copy-on-write page no one else maps: made writable in place.
        public var copyOnWriteReuses = 0
        /// Protection faults of a traced program that widened a page's rights.
        public var permissionUpgrades = 0
        public var segmentationFaults = 0
        public var munmaps = 0
        public var pagesUnmapped = 0
        public var pageTablesFreed = 0
        public var pageTableWrites = 0
        public var invlpgs = 0
        /// CR3 reloads that flush the current address space's translations.
        public var tlbFlushes = 0
        public var userAccesses = 0
        public var kernelAccesses = 0
        public var framesAllocated = 0
        public var peakFramesInUse = 0

        /// Name and value of every counter, in a stable order.
        public var all: [(String, Int)] {
            [
                ("processes_created", processesCreated), ("forks", forks), ("execs", execs), ("exits", exits),
                ("context_switches", contextSwitches), ("idle_periods", idlePeriods),
                ("page_faults_handled", pageFaultsHandled), ("anonymous_faults", anonymousFaults),
                ("zero_page_faults", zeroPageFaults), ("file_faults", fileFaults), ("huge_page_faults", hugePageFaults),
                ("cow_copies", copyOnWriteCopies), ("cow_reuses", copyOnWriteReuses),
                ("permission_upgrades", permissionUpgrades), ("segmentation_faults", segmentationFaults),
                ("munmaps", munmaps), ("pages_unmapped", pagesUnmapped), ("page_tables_freed", pageTablesFreed),
                ("page_table_writes", pageTableWrites), ("invlpg", invlpgs), ("tlb_flushes", tlbFlushes),
                ("user_accesses", userAccesses), ("kernel_accesses", kernelAccesses),
                ("frames_allocated", framesAllocated), ("peak_frames_in_use", peakFramesInUse),
            ]
        }
    }

    // MARK: - Boot

    /// Loads the kernel image, builds the kernel half (the direct map with huge
    /// pages, the kernel image with 4 KiB global pages), turns paging on and
    /// starts running the kernel's code.
    public func boot() throws(KernelPanic) {
        let memory = recorder.configuration.memorySize
        guard memory <= layout.maximumMemory else {
            throw KernelPanic(.unusable, "a \(layout.mode) kernel maps at most \(layout.maximumMemory >> 20) MiB in its direct map, the machine has \(memory >> 20) MiB")
        }
        recorder.comment("boot: the loader places the kernel image at \(Self.imageStart.hex)")
        for page in 0..<Self.imageTextPages {
            // Text: a recognisable instruction-like word at the start of each function.
            recorder.perform(.poke(address: Self.imageStart + UInt64(page) << 12, value: 0x90c3_9090_0000_0000 | UInt64(page), width: 8))
        }
        _ = recorder.writeRegister(.cr0, 0x11)  // protected mode, caches on, paging off
        recorder.comment("boot: the kernel builds its page tables with paging off")
        let top = try allocateTable(level: layout.levels, parent: nil)
        kernelSpace = AddressSpace(id: 0, top: top)

        // The direct map: all of guest memory in huge pages, global, never executable.
        let huge = layout.hugePageSize
        var physical: UInt64 = 0
        while physical < memory {
            let entry = try makeEntry(layout.directMapBase + physical, level: 2, in: kernelSpace, user: false)
            try writeEntry(entry, physical | Flags.kernelLeaf | Flags.writable | Flags.dirty | Flags.pageSize | noExecute)
            physical += huge
        }
        // The kernel image: text read-only and executable, data writable.
        let imagePages = Self.imageTextPages + Self.imageDataPages
        for page in 0..<imagePages {
            let address = layout.kernelImageBase + UInt64(page) << 12
            let entry = try makeEntry(address, level: 1, in: kernelSpace, user: false)
            let text = page < Self.imageTextPages
            let rights = text ? 0 : Flags.writable | Flags.dirty | noExecute
            try writeEntry(entry, Self.imageStart + UInt64(page) << 12 | Flags.kernelLeaf | rights)
        }
        zeroPage = try allocateFrame()

        recorder.comment("boot: paging on (\(layout.mode))")
        try setRegister(.cr4, layout.cr4)
        try setRegister(.cr3, top)
        loadedCR3 = top
        if layout.efer != 0 { try setRegister(.efer, layout.efer) }
        try setRegister(.cr0, layout.cr0)
        pagingEnabled = true
        try enterKernel(.startKernel)
        log?("boot: \(layout.mode) paging, \(memory >> 20) MiB direct-mapped at \(layout.directMapBase.hex), kernel image at \(layout.kernelImageBase.hex)")
    }

    /// Boot-time memory initialisation: the kernel writes a descriptor for
    /// each of `total` frames spread over memory and reads the frame through
    /// the direct map (as Linux fills its `struct page` array while freeing
    /// memory to the allocator); this call does descriptors `first ..< first + pages`.
    public func initialiseMemoryMap(pages: Int, first: Int = 0, of total: Int? = nil) throws(KernelPanic) {
        let frames = recorder.configuration.memorySize >> 12
        let stride = max(1, frames / UInt64(max(total ?? pages, 1)))
        let slots = UInt64(Self.imageDataPages * 512)
        for index in UInt64(first)..<UInt64(first + pages) {
            let frame = (index * stride) % frames
            let slot = Self.imageStart + UInt64(Self.imageTextPages) << 12 + (index % slots) * 8
            try writeWord(slot, frame << 12 | 1)
            _ = try kernelAccess(.read, layout.directMapBase + (frame << 12), expecting: frame << 12)
        }
    }

    // MARK: - Entry flags

    enum Flags {
        static let present: UInt64 = 1 << 0
        static let writable: UInt64 = 1 << 1
        static let user: UInt64 = 1 << 2
        static let accessed: UInt64 = 1 << 5
        static let dirty: UInt64 = 1 << 6
        static let pageSize: UInt64 = 1 << 7
        static let global: UInt64 = 1 << 8
        static let executeDisable: UInt64 = 1 << 63
        /// P A G: a kernel leaf before its rights.
        static let kernelLeaf: UInt64 = present | accessed | global
    }

    /// XD where the mode has it.
    var noExecute: UInt64 { layout.hasExecuteDisable ? Flags.executeDisable : 0 }

    /// A non-leaf entry pointing at a table of the level below `level`.
    func tableEntry(_ table: UInt64, level: Int, user: Bool) -> UInt64 {
        // A PAE PDPTE has only P and the address: RW, US and A are reserved there.
        if layout.mode == .pae && level == 3 { return table | Flags.present }
        return table | Flags.present | Flags.writable | Flags.accessed | (user ? Flags.user : 0)
    }

    /// The leaf entry of a user mapping.
    func leafEntry(_ mapping: UserMapping) -> UInt64 {
        var value = mapping.frame | Flags.present | Flags.user | Flags.accessed
        if mapping.writable { value |= Flags.writable | Flags.dirty }
        if mapping.huge { value |= Flags.pageSize | Flags.dirty }
        if !mapping.executable { value |= noExecute }
        return value
    }

    // MARK: - Kernel code and memory

    /// Runs `function`'s code: a fetch through the kernel-image mapping.
    func enterKernel(_ function: KernelFunction) throws(KernelPanic) {
        guard pagingEnabled else { return }
        let offset = UInt64(function.rawValue) << 12 | 0x40
        _ = try kernelAccess(.fetch, layout.kernelImageBase + offset, expecting: Self.imageStart + offset)
    }

    /// A supervisor access that must complete at `gpa` (the kernel's own mappings never change).
    func kernelAccess(_ kind: AccessCommand.Kind, _ address: UInt64, expecting gpa: UInt64, width: Int = 8, value: UInt64? = nil) throws(KernelPanic) -> UInt64? {
        counters.kernelAccesses += 1
        let outcome = recorder.access(AccessCommand(kind: kind, address: address, width: width, value: value))
        guard case .ok(let reached, let read) = outcome, reached == gpa else {
            throw KernelPanic(.mismatch, "the kernel's \(kind) at \(address.hex) should reach guest physical \(gpa.hex) through its own mappings, the machine gave \(outcome.summary)")
        }
        return read
    }

    /// A kernel store to guest physical memory: through the direct map once
    /// paging is on, a physical store before.
    func writePhysical(_ gpa: UInt64, _ value: UInt64, width: Int) throws(KernelPanic) {
        if pagingEnabled {
            _ = try kernelAccess(.write, layout.directMapBase + gpa, expecting: gpa, width: width, value: value)
        } else {
            recorder.perform(.store(address: gpa, value: value, width: width))
        }
    }

    /// A kernel load through the direct map.
    func readPhysical(_ gpa: UInt64, width: Int) throws(KernelPanic) -> UInt64 {
        try kernelAccess(.read, layout.directMapBase + gpa, expecting: gpa, width: width) ?? 0
    }

    /// Writes one 8-byte word of a data frame and remembers it.
    func writeWord(_ gpa: UInt64, _ value: UInt64) throws(KernelPanic) {
        try writePhysical(gpa, value, width: 8)
        storeModel(gpa, width: 8, value)
    }

    /// Writes a paging-structure entry and remembers it.
    func writeEntry(_ entry: EntryLocation, _ value: UInt64) throws(KernelPanic) {
        counters.pageTableWrites += 1
        try writePhysical(entry.table + UInt64(entry.index * layout.entrySize), value, width: layout.entrySize)
        if value == 0 {
            tables[entry.table]?.entries[entry.index] = nil
        } else {
            tables[entry.table]?.entries[entry.index] = value
        }
    }

    /// Reads back an entry the kernel wrote; only the accessed and dirty flags
    /// may have changed (the CPU sets them).
    func readEntry(_ entry: EntryLocation) throws(KernelPanic) -> UInt64 {
        let value = try readPhysical(entry.table + UInt64(entry.index * layout.entrySize), width: layout.entrySize)
        let written = tables[entry.table]?.entries[entry.index] ?? 0
        let hardwareBits = Flags.accessed | Flags.dirty
        guard value & ~hardwareBits == written & ~hardwareBits else {
            throw KernelPanic(.mismatch, "entry \(entry.index) of the level-\(entry.level) table at \(entry.table.hex) reads \(value.hex), the kernel wrote \(written.hex)")
        }
        return value
    }

    func setRegister(_ name: RegisterName, _ value: UInt64) throws(KernelPanic) {
        guard recorder.writeRegister(name, value) else {
            throw KernelPanic(.mismatch, "the machine rejected '\(name.rawValue) \(value.hex)' (#GP), which the architecture allows here")
        }
        if name == .cr3 { loadedCR3 = value }
    }

    // MARK: - The memory model

    /// The value the guest last stored at `gpa` (zero where it never did).
    func loadModel(_ gpa: UInt64, width: Int) -> UInt64 {
        let shift = (gpa & 7) * 8
        if shift / 8 + UInt64(width) <= 8 {
            // Within one word (every access a trace makes after splitting): one look-up.
            let word = contents[gpa >> 12]?[Int(gpa & 0xfff) >> 3] ?? 0
            return word >> shift & SparseMemory.widthMask(width)
        }
        var value: UInt64 = 0
        for byte in 0..<UInt64(width) {
            let address = gpa + byte
            let word = contents[address >> 12]?[Int(address & 0xfff) >> 3] ?? 0
            value |= (word >> ((address & 7) * 8) & 0xff) << (byte * 8)
        }
        return value
    }

    func storeModel(_ gpa: UInt64, width: Int, _ value: UInt64) {
        let shift = (gpa & 7) * 8
        if shift / 8 + UInt64(width) <= 8 {
            storeModelWord(gpa, mask: SparseMemory.widthMask(width) << shift, value << shift)
            return
        }
        for byte in 0..<UInt64(width) {
            let address = gpa + byte
            let shift = (address & 7) * 8
            storeModelWord(address, mask: 0xff << shift, (value >> (byte * 8) & 0xff) << shift)
        }
    }

    /// Sets the `mask` bits of the word holding `gpa` to `bits`, in place
    /// (the page's dictionary is mutated where it lives, never copied).
    private func storeModelWord(_ gpa: UInt64, mask: UInt64, _ bits: UInt64) {
        let frame = gpa >> 12, index = Int(gpa & 0xfff) >> 3
        let word = (contents[frame]?[index] ?? 0) & ~mask | bits & mask
        if word != 0 {
            contents[frame, default: [:]][index] = word
        } else if contents[frame]?.removeValue(forKey: index) != nil, contents[frame]?.isEmpty == true {
            contents[frame] = nil
        }
    }

    // MARK: - Frames

    /// A zeroed 4 KiB frame.
    func allocateFrame() throws(KernelPanic) -> UInt64 {
        guard let frame = allocator.allocate() else {
            throw KernelPanic(.unusable, "out of guest memory (\(recorder.configuration.memorySize >> 20) MiB): the workload needs more frames than the machine has")
        }
        counters.framesAllocated = allocator.framesAllocated
        counters.peakFramesInUse = allocator.peakFramesInUse
        try zero(frame)
        return frame
    }

    /// Clears the words a freed frame may still hold (a kernel clears a page before reuse).
    func zero(_ frame: UInt64) throws(KernelPanic) {
        guard let stale = staleWords.removeValue(forKey: frame) else { return }
        for offset in stale.offsets.sorted() {
            try writePhysical(frame + UInt64(offset), 0, width: stale.width)
        }
    }

    /// Returns a frame to the allocator, remembering which of its words are not zero.
    func freeFrame(_ frame: UInt64) {
        if let table = tables.removeValue(forKey: frame), !table.entries.isEmpty {
            staleWords[frame] = (layout.entrySize, table.entries.keys.map { $0 * layout.entrySize })
        } else if let words = contents.removeValue(forKey: frame >> 12) {
            staleWords[frame] = (8, words.keys.map { $0 * 8 })
        }
        allocator.release(frame)
    }

    /// A zeroed page table for `level`.
    func allocateTable(level: Int, parent: EntryLocation?) throws(KernelPanic) -> UInt64 {
        let frame = try allocateFrame()
        tables[frame] = PageTable(level: level, parent: parent)
        return frame
    }

    /// The entry that maps `address` at `level` in `space`, creating missing
    /// tables on the way (user tables are owned by `space`).
    func makeEntry(_ address: UInt64, level: Int, in space: AddressSpace, user: Bool) throws(KernelPanic) -> EntryLocation {
        try walk(to: address, level: level, in: space, user: user, create: true)!
    }

    /// The entry that maps `address` at `level` in `space`, if its tables exist.
    func findEntry(_ address: UInt64, level: Int, in space: AddressSpace) -> EntryLocation? {
        try? walk(to: address, level: level, in: space, user: true, create: false)
    }

    private func walk(to address: UInt64, level target: Int, in space: AddressSpace, user: Bool, create: Bool) throws(KernelPanic) -> EntryLocation? {
        var table = space.top
        var level = layout.levels
        while level > target {
            let index = layout.index(of: address, level: level)
            if let value = tables[table]?.entries[index], value & Flags.present != 0 {
                table = value & layout.addressMask
            } else {
                guard create else { return nil }
                let parent = EntryLocation(table: table, index: index, level: level)
                let child = try allocateTable(level: level - 1, parent: parent)
                if user { space.userTables.insert(child) }
                try writeEntry(parent, tableEntry(child, level: level, user: user))
                table = child
            }
            level -= 1
        }
        return EntryLocation(table: table, index: layout.index(of: address, level: target), level: target)
    }
}

/// The guest kernel found the machine breaking the architecture, or could not go on.
public struct KernelPanic: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// The machine's result differs from what the guest's own tables say.
        case mismatch
        /// The workload cannot run as asked (memory too small or too large).
        case unusable
    }

    public var kind: Kind
    public var message: String

    init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { kind == .mismatch ? "guest kernel panic: \(message)" : message }
}
