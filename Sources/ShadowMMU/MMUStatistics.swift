/// The hypervisor's counters, in KVM's spirit (`kvm_vm_stat`, `kvm_vcpu_stat`).
public struct MMUStatistics: Hashable, Sendable {
    /// Page faults that exited to the hypervisor (`pf_taken`).
    public var exits = 0
    /// Faults fixed by building or updating sptes (`pf_fixed`).
    public var shadowFaultsFixed = 0
    /// Faults that needed nothing (`pf_spurious`).
    public var spuriousFaults = 0
    /// Page faults reflected to the guest (`pf_guest`).
    public var guestFaultsInjected = 0
    /// Accesses the hypervisor emulated (`pf_emulate`): writes to
    /// write-protected page tables and MMIO.
    public var emulatedAccesses = 0
    public var mmioExits = 0
    public var mmioSPTEsCreated = 0
    /// Shadow pages allocated (`mmu_cache_miss`).
    public var pagesCreated = 0
    public var pagesZapped = 0
    /// Emulated guest writes to shadowed page tables (`mmu_pte_write`).
    public var pteWritesEmulated = 0
    /// Pages zapped for misaligned or repeated writes (`mmu_flooded`).
    public var pagesFlooded = 0
    /// Pages reclaimed to stay under the cap (`mmu_recycled`).
    public var pagesRecycled = 0
    /// Pages made unsync, and unsync pages synced.
    public var unsyncs = 0
    public var syncs = 0
    public var localRootsCreated = 0
    public var localPagesCreated = 0
    public var localPagesFreed = 0
    public var cachedRootHits = 0
    public var cachedRootMisses = 0
    public var rootsLoaded = 0
    public var remoteTLBFlushes = 0
    public var invlpgs = 0
    public var guestTLBFlushes = 0
    public var fastZaps = 0
    /// Guest stores delivered to a frame the hypervisor tracks.
    public var trappedStores = 0
    /// Second-stage faults taken while a vCPU ran an L2 guest on the shadow of
    /// its L1 hypervisor's nested tables, and those reflected to L1 (its own
    /// tables deny the access: #NPF or EPT violation/misconfiguration).
    public var nestedExits = 0
    public var nestedFaultsReflected = 0
    /// Local level-3 entries re-pointed because an L1's nPDPTE changed.
    public var nestedPDPTERepoints = 0
    /// Special roots built (`RootDesign.special`: `pae_root` filled at load).
    public var specialRootsCreated = 0
    /// Roots a vCPU let go of: local and special roots freed, references to
    /// shared roots dropped (`mmu_free_root_page`).
    public var rootsFreed = 0

    public init() {}
}
