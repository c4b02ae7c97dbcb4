import X86Paging

/// The host's physical memory: where the hypervisor keeps the tables it builds
/// (shadow pages) and where guest memory is backed.
///
/// Layout: table frames are allocated from `[1 MiB, 4 GiB)` — low enough for
/// a PAE root, whose address must fit a 32-bit CR3 — and guest RAM is backed
/// at `guestRAMBase` and above. Freed table frames are filled with `poison`;
/// a later read of a freed frame (by the hardware walker or anyone else) is
/// counted in `poisonedReads`, which every audit requires to stay zero.
public final class HostMemory: PhysicalMemory {
    /// MAXPHYADDR of the simulated host hardware. Below 52 so that a reserved
    /// physical-address bit exists for MMIO sptes (KVM needs the same).
    public static let maxPhysicalAddressBits = 46
    /// Host physical address where guest RAM backing starts.
    public static let guestRAMBase: UInt64 = 1 << 40
    /// What a freed frame holds: present with reserved bits set, so a stale
    /// walk through it also faults loudly.
    public static let poison: UInt64 = 0xdead_beef_dead_beef

    public let size: UInt64 = 1 << UInt64(maxPhysicalAddressBits)
    @usableFromInline let storage: SparseMemory
    private static let firstTableFrame: UInt64 = 0x100
    private static let tableFrameLimit: UInt64 = 0x10_0000  // 4 GiB
    @exclusivity(unchecked) private var nextTableFrame = firstTableFrame
    @exclusivity(unchecked) private var freeTableFrames: [UInt64] = []
    /// Frames freed and not reallocated since.
    @exclusivity(unchecked) public private(set) var freedFrames: Set<UInt64> = []
    /// Reads of freed frames: a use-after-free by the hypervisor or hardware.
    @exclusivity(unchecked) public private(set) var poisonedReads = 0
    /// Table frames currently allocated.
    @exclusivity(unchecked) public private(set) var tableFramesInUse = 0

    public init() {
        storage = SparseMemory(size: 1 << UInt64(Self.maxPhysicalAddressBits))
    }

    /// A zeroed 4 KiB frame for a hypervisor table; returns its frame number.
    public func allocateTableFrame() -> UInt64 {
        let frame: UInt64
        if let reused = freeTableFrames.popLast() {
            frame = reused
            freedFrames.remove(frame)
        } else {
            precondition(nextTableFrame < Self.tableFrameLimit, "host table memory exhausted")
            frame = nextTableFrame
            nextTableFrame += 1
        }
        storage.fill(frame: frame, with: 0)
        tableFramesInUse += 1
        return frame
    }

    /// Returns a table frame; its contents become `poison`.
    public func freeTableFrame(_ frame: UInt64) {
        precondition(!freedFrames.contains(frame), "double free of host frame \(frame.hex)")
        storage.fill(frame: frame, with: Self.poison)
        freedFrames.insert(frame)
        freeTableFrames.append(frame)
        tableFramesInUse -= 1
    }

    @inlinable @inline(__always)
    public func load(_ address: UInt64, width: Int) -> UInt64 {
        let value = storage.load(address, width: width)
        // Cheap filter first: only a poison-looking value can come from a freed frame.
        if value == Self.poison & SparseMemory.widthMask(width) { notePossiblePoisonedRead(address) }
        return value
    }

    @usableFromInline
    func notePossiblePoisonedRead(_ address: UInt64) {
        if freedFrames.contains(address >> 12) { poisonedReads += 1 }
    }

    public func store(_ address: UInt64, width: Int, _ value: UInt64) {
        storage.store(address, width: width, value)
    }

    /// An 8-byte entry of a hypervisor table.
    @inlinable
    public func entry(_ address: UInt64) -> UInt64 { storage.load(address, width: 8) }

    @inlinable
    public func setEntry(_ address: UInt64, _ value: UInt64) { storage.store(address, width: 8, value) }
}
