import ScenarioLanguage
import ScenarioRuntime
/// One address space of the guest kernel (Linux's `mm_struct`): its top-level
/// table, the user-half tables it owns, and the user mappings it made.
final class AddressSpace {
    let id: Int
    /// Guest physical address of the top-level table (for PAE, the PDPT): the CR3 value.
    let top: UInt64
    /// Frames of the user-half tables below `top` that this space owns.
    var userTables: Set<UInt64> = []
    /// User mappings by page address (a huge page by its base).
    @exclusivity(unchecked) var mappings: [UInt64: UserMapping] = [:]

    init(id: Int, top: UInt64) {
        self.id = id
        self.top = top
    }

    /// The mapping that translates `address`, if any.
    func mapping(containing address: UInt64, hugePageSize: UInt64) -> UserMapping? {
        mappings[address & ~0xfff] ?? mappings[address & ~(hugePageSize - 1)].flatMap { $0.huge ? $0 : nil }
    }
}

/// A leaf the kernel wrote into a user address space.
struct UserMapping {
    enum Backing: Equatable {
        /// A private anonymous page (heap, stack, anonymous mmap).
        case anonymous
        /// A page-cache page of an executable file, shared read-only.
        case file
        /// The shared zero page, mapped read-only on a read fault of anonymous memory.
        case zeroPage
        /// A huge page from the hugetlb pool, shared with children on fork.
        case huge
    }

    /// Guest physical address of the page (or huge page).
    var frame: UInt64
    var writable: Bool
    var executable: Bool
    var huge: Bool
    var backing: Backing
    /// Private memory the region lets the process write, mapped read-only
    /// until a write fault gives it its own copy.
    var copyOnWrite: Bool
    /// The entry (PTE, or PDE for a huge page) that maps it.
    var entry: EntryLocation

    func permits(_ kind: AccessCommand.Kind) -> Bool {
        switch kind {
        case .read: true
        case .write: writable
        case .fetch: executable
        }
    }
}

/// One paging-structure entry: the table holding it and its index.
struct EntryLocation: Hashable {
    var table: UInt64
    var index: Int
    var level: Int
}

/// What the kernel knows of one page-table frame: the entries it wrote
/// (the CPU may since have set accessed and dirty flags in present ones).
struct PageTable {
    var level: Int
    /// Non-zero entries, by index, as the kernel last wrote them.
    var entries: [Int: UInt64] = [:]
    /// The entry pointing at this table (nil for a top-level table).
    var parent: EntryLocation?
    /// Whether no entry of it is present.
    var isEmpty: Bool { !entries.values.contains { $0 & 1 != 0 } }
}

/// A region of a process's user address space (Linux's `vm_area_struct`).
struct MemoryRegion {
    enum Kind: Equatable {
        /// An executable file's text: page-cache pages, read-only and executable.
        case code(file: Int)
        /// Private anonymous memory: zero page on a read fault, a fresh page on a write.
        case anonymous
        /// Huge pages from the hugetlb pool.
        case huge
        /// A traced program's whole address space: a page becomes code (read and
        /// execute) or data (read and write) by its first access.
        case firstTouch
    }

    var start: UInt64
    var end: UInt64
    var kind: Kind
    var writable: Bool
    var executable: Bool

    func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    func permits(_ kind: AccessCommand.Kind) -> Bool {
        switch kind {
        case .read: true
        case .write: writable
        case .fetch: executable
        }
    }
}

/// A guest process: an address space, its regions, and the pages it has touched.
final class GuestProcess {
    let pid: Int
    var space: AddressSpace
    var regions: [MemoryRegion] = []
    /// The executable it runs (a file of the page cache).
    var binary: Int
    /// Heap pages in use (the process's working set grows into these).
    var heapPages = 0
    /// Pages of the anonymous mmap area in use.
    var mmapPages = 0
    /// Huge pages mapped at the huge area.
    var hugePages = 0

    init(pid: Int, space: AddressSpace, binary: Int) {
        self.pid = pid
        self.space = space
        self.binary = binary
    }

    func region(containing address: UInt64) -> MemoryRegion? { regions.first { $0.contains(address) } }
}
