import HostPlatform
import MMUEncoding
import X86Paging

/// One fault on its way through the MMU (KVM's `struct kvm_page_fault`): what
/// the hardware reported, what the walk of the guest's tables found, what the
/// handler decided, and what it did — and, when an explanation asks for one,
/// the tracer that records each step.
///
/// The entry points (`pageFault`, `nestedPageFault`, `tdpPageFault`) build one
/// and hand it down, `inout`, through `fetch` and `setSPTE`; the spte builder
/// `makeSPTE`, which sync shares and which has no fault there, takes the
/// decided rights and the tracer.
struct PageFault {
    // MARK: Inputs

    /// The vCPU's MMU that handles the fault (its nested context for L2).
    let context: ShadowMMU.Context
    /// The faulting address: linear under shadow paging, L2-physical under the
    /// shadow of an L1's nested tables, guest-physical under TDP.
    let address: UInt64
    /// The access as the fault judges it: its kind (for an L2 access, the kind
    /// L1's tables are checked for) and privilege.
    let access: MemoryAccess
    /// The hardware's page-fault error code (shadow paging); empty for a
    /// second-stage fault.
    let errorCode: PageFaultErrorCode
    /// Records each step when set; nil on every path that is not explained.
    let trace: MMUTrace?

    var write: Bool { access.kind == .write }
    var exec: Bool { access.kind == .fetch }
    var user: Bool { access.mode == .user }

    // MARK: What the walk found

    /// The guest table at each level and the rights it is reached with;
    /// levels the guest lacks (and every level of a direct map) are direct.
    var walk: GuestWalk
    /// The guest-physical (for L2, L1-physical) address the walk reached.
    var gpa: UInt64 = 0
    /// The memslot holding `gfn`; nil for MMIO.
    var slot: Memslot?
    /// The guest's leaf entry is dirty (always, with paging off).
    var dirty = true

    var gfn: UInt64 { gpa >> 12 }

    // MARK: Decisions

    /// The rights the leaf spte may grant (KVM's `pte_access`): the walk's,
    /// less write on a clean page, adjusted for CR0.WP=0 emulation.
    var pageAccess: AccessRights = .all
    /// `pageAccess` before CR0.WP=0 emulation made it writable (nil when it
    /// did not): what KVM keyed direct pages by before c22885050e65.
    var accessBeforeWPEmulation: AccessRights?
    var protectionKey = 0
    /// The level of the leaf spte (`goal_level`): 1 under shadow paging (a
    /// guest huge page is mapped with 4 KiB sptes), the largest the memslot
    /// allows under TDP (`kvm_mmu_max_mapping_level`); lowered when a table
    /// already sits where the huge page would go.
    var goalLevel = 1

    // MARK: Outputs

    /// Write access was withheld from the leaf: the frame holds a guest page
    /// table the hypervisor must see writes to (the write is emulated).
    var writeProtected = false

    init(
        context: ShadowMMU.Context, address: UInt64, access: MemoryAccess, errorCode: PageFaultErrorCode, walk: GuestWalk,
        trace: MMUTrace?
    ) {
        self.context = context
        self.address = address
        self.access = access
        self.errorCode = errorCode
        self.walk = walk
        self.trace = trace
    }
}
