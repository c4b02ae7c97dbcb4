/// Where the runner lives, in guest-physical and guest-virtual space.
///
/// The runner is the small piece of guest software that performs the
/// operations of a scenario (accesses, MOV CRn, WRMSR, INVLPG, …) inside a VM
/// on the host's `/dev/kvm`. It occupies its own memslot (slot 1) at
/// ``guestPhysicalBase`` — above any scenario memory — and its own top-level
/// slot (``topLevelSlot``) of every PML4 the guest runs with. The scenario owns
/// every other guest-physical address and every other PML4 slot.
///
/// Guest-physical layout of the runner region (offsets from ``guestPhysicalBase``):
///
/// | offset | contents |
/// |---|---|
/// | `0x0000` | the runner's PDPT (``topLevelEntry`` points here) |
/// | `0x1000` | supervisor PD (PDPT[0]) |
/// | `0x2000` | supervisor PT: maps the whole 2 MiB region, U/S=0 |
/// | `0x3000` | user PD (PDPT[1]) |
/// | `0x4000` | user PT: user code page, then one user stack page per vCPU, U/S=1 |
/// | `0x5000` | supervisor code: operation stubs, exception handlers |
/// | `0x6000` | user code: CPL-3 access stubs |
/// | `0x7000` | IDT (256 interrupt gates, all on IST1) |
/// | `0x10000 + n·0x4000` | vCPU n: page 0 GDT (+0) and 64-bit TSS (+0x800); page 1 CPL-0 stack; page 2 IST1 (exception) stack; page 3 user stack |
/// | `0x100000 + k·0x1000` | PD k of the direct map of guest memory (PDPT[2+k], 2 MiB pages) |
///
/// Guest-virtual layout, inside PML4 slot 511 (`0xffff_ff80_0000_0000` and up):
/// supervisor pages at ``virtualBase`` + offset (the whole region, U/S=0 at the
/// PDPTE), user pages at ``userVirtualBase`` (U/S=1 at every level), and a
/// supervisor read-write direct map of guest memory `[0, memorySize)` at
/// ``directMapVirtualBase`` + gpa (used by ``KVMMachine/store(vcpu:gpa:value:width:)``).
///
/// Every runner entry has P, R/W and A set (leaves also D), and never XD, G or
/// PAT/PCD/PWT, so the runner works with EFER.NXE on or off, CR0.WP,
/// CR4.SMEP/SMAP/PGE in any state, and KVM never needs to write A/D bits in
/// the runner's tables. Supervisor code never runs from a U=1 page and
/// supervisor code never touches a user page.
public enum RunnerLayout {
    /// Guest-physical base of the runner region: 32 GiB − 2 MiB.
    ///
    /// Chosen below 2^35 so that the runner's own paging entries are free of
    /// reserved bits for every guest MAXPHYADDR ≥ 35 (scenarios use 35, 36,
    /// 40, 52). Consequences: scenario memory must end at or below this
    /// address (``KVMMachine`` checks it) and the guest's MAXPHYADDR must be
    /// at least ``minimumPhysicalAddressBits``.
    public static let guestPhysicalBase: UInt64 = 0x7_FFE0_0000
    /// Size of the runner region (one memslot): 2 MiB.
    public static let size: UInt64 = 0x20_0000
    /// The memslot numbers: the scenario's memory is slot 0, the runner's slot 1.
    public static let guestMemorySlot: UInt32 = 0
    public static let runnerSlot: UInt32 = 1
    /// The smallest guest MAXPHYADDR for which the runner region is addressable.
    public static let minimumPhysicalAddressBits = 35

    /// The PML4 index the runner owns: 511.
    public static let topLevelSlot = 511
    /// Byte offset of the runner's entry inside a PML4 page (511 × 8).
    public static let topLevelEntryOffset: UInt64 = UInt64(topLevelSlot) * 8
    /// The exact 8-byte value written at `PML4[511]`: the runner's PDPT,
    /// P | R/W | U/S | A (`0x27`), no XD. Value: `0x7_ffe0_0027`.
    public static let topLevelEntry: UInt64 = guestPhysicalBase + pdptOffset | 0x27

    /// First guest-virtual address of the runner's range (PML4 slot 511).
    public static let virtualBase: UInt64 = 0xFFFF_FF80_0000_0000
    /// Guest-virtual base of the runner's user-mode pages (PDPT[1]).
    public static let userVirtualBase: UInt64 = virtualBase + 0x4000_0000
    /// Guest-virtual base of the supervisor direct map of guest memory (PDPT[2…]).
    public static let directMapVirtualBase: UInt64 = virtualBase + 0x8000_0000

    /// The most vCPUs one machine can have (each needs its own stacks, GDT, TSS).
    public static let maxVCPUs = 32

    // Offsets inside the region.
    static let pdptOffset: UInt64 = 0x0000
    static let supervisorPDOffset: UInt64 = 0x1000
    static let supervisorPTOffset: UInt64 = 0x2000
    static let userPDOffset: UInt64 = 0x3000
    static let userPTOffset: UInt64 = 0x4000
    static let supervisorCodeOffset: UInt64 = 0x5000
    static let userCodeOffset: UInt64 = 0x6000
    static let idtOffset: UInt64 = 0x7000
    static let vcpuAreaOffset: UInt64 = 0x10000
    static let vcpuAreaSize: UInt64 = 0x4000
    static let directMapPDOffset: UInt64 = 0x10_0000
    /// Direct-map PDs that fit in the region (each maps 1 GiB).
    static let maxDirectMapGiB = Int((size - directMapPDOffset) / 0x1000)

    static func gdtOffset(vcpu: Int) -> UInt64 { vcpuAreaOffset + UInt64(vcpu) * vcpuAreaSize }
    static func tssOffset(vcpu: Int) -> UInt64 { gdtOffset(vcpu: vcpu) + 0x800 }
    /// Top (exclusive) of vCPU n's CPL-0 stack.
    static func kernelStackTopOffset(vcpu: Int) -> UInt64 { gdtOffset(vcpu: vcpu) + 0x2000 }
    /// Top (exclusive) of vCPU n's IST1 stack, where every exception frame lands.
    static func istStackTopOffset(vcpu: Int) -> UInt64 { gdtOffset(vcpu: vcpu) + 0x3000 }
    /// Offset of vCPU n's user stack page.
    static func userStackPageOffset(vcpu: Int) -> UInt64 { gdtOffset(vcpu: vcpu) + 0x3000 }

    /// Supervisor virtual address of a region offset.
    static func supervisorVA(_ offset: UInt64) -> UInt64 { virtualBase + offset }
    /// User virtual address of the user code page.
    static let userCodeVA: UInt64 = userVirtualBase
    /// User virtual address of the top of vCPU n's user stack.
    static func userStackTopVA(vcpu: Int) -> UInt64 { userVirtualBase + UInt64(1 + vcpu) * 0x1000 + 0x1000 }

    // GDT selectors (same in every vCPU's GDT).
    static let kernelCodeSelector: UInt16 = 0x08
    static let kernelDataSelector: UInt16 = 0x10
    static let userCodeSelector: UInt16 = 0x18 | 3
    static let userDataSelector: UInt16 = 0x20 | 3
    static let tssSelector: UInt16 = 0x28
    /// A 16-byte LDT descriptor the host points at the address of an implicit access.
    static let ldtSelector: UInt16 = 0x38
    static let gdtLimit: UInt16 = 0x47
}
