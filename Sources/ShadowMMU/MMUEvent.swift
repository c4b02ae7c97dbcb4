import MMUEncoding
import X86Paging

/// What the hypervisor did while handling one exit, step by step — recorded
/// only for a fault handed an ``MMUTrace`` (for `shadowmmu explain`).
public enum MMUEvent: Sendable {
    /// The hypervisor's walk of the guest's own tables (KVM's `FNAME(walk_addr)`).
    case guestWalk(WalkTrace, mode: PagingMode)
    /// The hypervisor's walk of an L1 hypervisor's nested tables for an
    /// L2-physical address (the nested MMU's `walk_addr`).
    case nestedWalk(WalkTrace, paging: NestedPaging, address: UInt64, access: NestedAccess)
    /// A shadow page found in the hash (or the vCPU's local page) and used.
    case pageFound(level: Int, gfn: UInt64, role: PageRole, local: Bool)
    /// A shadow page created.
    case pageCreated(level: Int, gfn: UInt64, role: PageRole, local: Bool)
    /// An spte written: the table's level, the entry's index and host address, old and new values.
    case spteWritten(level: Int, index: Int, address: UInt64, old: UInt64, new: UInt64)
    /// Leaf tables of this gfn went unsync instead of staying write-protected.
    case unsynced(gfn: UInt64)
    /// Write access withheld: the frame holds a guest page table the hypervisor must see writes to.
    case writeProtected(gfn: UInt64)
    /// Free-form decision (emulation, MMIO, a guest fault injected).
    case note(String)
}
