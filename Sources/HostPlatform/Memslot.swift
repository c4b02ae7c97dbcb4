import X86Paging

/// A range of guest physical memory backed by host memory (KVM's memslot).
/// Guest-physical addresses outside every memslot are MMIO.
public struct Memslot: Hashable, Sendable {
    public var baseGFN: UInt64
    public var pageCount: UInt64
    /// Host physical address backing `baseGFN`; the slot is contiguous in host memory.
    public var hostBase: UInt64

    public init(baseGFN: UInt64, pageCount: UInt64, hostBase: UInt64) {
        self.baseGFN = baseGFN
        self.pageCount = pageCount
        self.hostBase = hostBase
    }

    @inlinable
    public func contains(gfn: UInt64) -> Bool { gfn >= baseGFN && gfn - baseGFN < pageCount }

    /// Host frame number backing `gfn` (KVM's pfn).
    @inlinable
    public func hostFrame(of gfn: UInt64) -> UInt64 { hostBase >> 12 + (gfn - baseGFN) }

    /// The guest frame a host frame of this slot backs, if any.
    @inlinable
    public func guestFrame(ofHostFrame pfn: UInt64) -> UInt64? {
        let first = hostBase >> 12
        guard pfn >= first, pfn - first < pageCount else { return nil }
        return baseGFN + (pfn - first)
    }
}

/// Guest physical memory as the hypervisor sees it: memslots over host
/// memory. Reading and writing it is what KVM's `kvm_read_guest` /
/// `kvm_write_guest` do; addresses outside the memslots read as all ones and
/// ignore writes (unclaimed MMIO).
///
/// Writes made on the guest's behalf (emulated stores, accessed/dirty flags
/// set by the hypervisor's walker, guest stores) go through `guestWrite`,
/// which feeds the dirty log; `loaderWrite` (the scenario's `poke`) does not.
public final class GuestMemory: PhysicalMemory {
    public let host: HostMemory
    public let slots: [Memslot]
    @usableFromInline let firstSlot: Memslot
    public let size: UInt64
    /// Dirty logging (KVM_MEM_LOG_DIRTY_PAGES on every slot).
    @exclusivity(unchecked) public private(set) var dirtyLogging = false
    /// Frames marked dirty since the last harvest.
    @exclusivity(unchecked) public private(set) var dirtyFrames: Set<UInt64> = []
    /// Frames the guest really wrote since the last harvest (the machine
    /// reports every write it performs): what a logged frame is measured against.
    @exclusivity(unchecked) public private(set) var writtenFrames: Set<UInt64> = []
    /// Frames a harvest reported that the guest had not written (allowed: a
    /// migration copies them for nothing).
    public private(set) var falsePositives = 0

    public init(host: HostMemory, size: UInt64) {
        self.host = host
        self.size = size
        slots = [Memslot(baseGFN: 0, pageCount: size >> 12, hostBase: HostMemory.guestRAMBase)]
        firstSlot = slots[0]
    }

    @inlinable
    public func slot(for gfn: UInt64) -> Memslot? {
        for slot in slots where slot.contains(gfn: gfn) { return slot }
        return nil
    }

    /// Host physical address backing `gpa`, or nil for MMIO.
    @inlinable
    public func hostAddress(of gpa: UInt64) -> UInt64? {
        guard let slot = slot(for: gpa >> 12) else { return nil }
        return slot.hostFrame(of: gpa >> 12) << 12 | gpa & 0xfff
    }

    /// The guest physical address a host physical address backs, if any
    /// (every TLB hit asks: the first slot is tried without the array).
    @inlinable @inline(__always)
    public func guestAddress(ofHost hpa: UInt64) -> UInt64? {
        if let gfn = firstSlot.guestFrame(ofHostFrame: hpa >> 12) { return gfn << 12 | hpa & 0xfff }
        for slot in slots.dropFirst() {
            if let gfn = slot.guestFrame(ofHostFrame: hpa >> 12) { return gfn << 12 | hpa & 0xfff }
        }
        return nil
    }

    public func load(_ address: UInt64, width: Int) -> UInt64 {
        guard let hpa = hostAddress(of: address) else { return SparseMemory.widthMask(width) }
        return host.load(hpa, width: width)
    }

    /// A write on the guest's behalf (the page walker's A/D updates, emulated
    /// writes): logged as dirty.
    public func store(_ address: UInt64, width: Int, _ value: UInt64) {
        guard let hpa = hostAddress(of: address) else { return }
        host.store(hpa, width: width, value)
        markDirty(address >> 12)
        noteWritten(address >> 12)
    }

    /// The guest wrote this frame (any path: hardware, emulation, walker flags).
    public func noteWritten(_ gfn: UInt64) {
        if dirtyLogging { writtenFrames.insert(gfn) }
    }

    /// The loader's write (`poke`): no dirty logging, no MMU hook.
    public func loaderWrite(_ address: UInt64, width: Int, _ value: UInt64) {
        guard let hpa = hostAddress(of: address) else { return }
        host.store(hpa, width: width, value)
    }

    public func markDirty(_ gfn: UInt64) {
        if dirtyLogging, slot(for: gfn) != nil { dirtyFrames.insert(gfn) }
    }

    /// Starting (when not already logging) begins a fresh log; stopping keeps
    /// what was logged until it is read.
    public func setDirtyLogging(_ enabled: Bool) {
        if enabled, !dirtyLogging {
            dirtyFrames = []
            writtenFrames = []
        }
        dirtyLogging = enabled
    }

    /// The dirty frames, sorted; the log starts afresh.
    public func harvestDirtyFrames() -> [UInt64] {
        defer {
            dirtyFrames = []
            writtenFrames = []
        }
        falsePositives += dirtyFrames.subtracting(writtenFrames).count
        return dirtyFrames.sorted()
    }
}
