import ShadowMMU

/// One counter a machine reports: the raw value is the name `run --stats`
/// prints and the scenario JSON output carries (docs/SCENARIO-FORMAT.md), so
/// a tool reads a counter by case, and renaming one is a compile error rather
/// than a silent zero.
public enum Counter: String, CaseIterable, Sendable {
    // The guest's side, counted by every machine.
    case accesses
    case guestPageFaults = "guest_page_faults"
    case guestGPFaults = "guest_gp_faults"
    case rejectedRegisterWrites = "rejected_register_writes"
    case stores
    case dirtyLogFalsePositives = "dirty_log_false_positives"
    case nestedFaultsToL1 = "nested_faults_to_l1"

    // The architectural CPU of `mmu native`.
    case walks
    case tlbHits = "tlb_hits"
    case tlbMisses = "tlb_misses"
    /// INVLPGs: the native CPU's, or the hypervisor's handled (`MMUStatistics.invlpgs`).
    case invlpg
    case flushes
    case guestPagesBacked = "guest_pages_backed"

    // The hardware under a hypervisor.
    case vmEntries = "vm_entries"
    case hardwareWalks = "hardware_walks"
    case hardwareTLBHits = "hardware_tlb_hits"
    case walkReferences = "walk_references"
    case referencesPerWalkX100 = "references_per_walk_x100"
    case nestedEmulations = "nested_emulations"

    // The hypervisor's MMU (`MMUStatistics`, field by field).
    case exits
    case shadowFaultsFixed = "shadow_faults_fixed"
    case spuriousFaults = "spurious_faults"
    case guestFaultsInjected = "guest_faults_injected"
    case emulatedAccesses = "emulated_accesses"
    case mmioExits = "mmio_exits"
    case mmioSPTEsCreated = "mmio_sptes_created"
    case shadowPagesCreated = "shadow_pages_created"
    case shadowPagesZapped = "shadow_pages_zapped"
    case pteWritesEmulated = "pte_writes_emulated"
    case pagesFlooded = "pages_flooded"
    case pagesRecycled = "pages_recycled"
    case unsync
    case sync
    case localRootsCreated = "local_roots_created"
    case localPagesCreated = "local_pages_created"
    case localPagesFreed = "local_pages_freed"
    case cachedRootHits = "cached_root_hits"
    case cachedRootMisses = "cached_root_misses"
    case rootsLoaded = "roots_loaded"
    case remoteTLBFlushes = "remote_tlb_flushes"
    case guestTLBFlushes = "guest_tlb_flushes"
    case fastZaps = "fast_zaps"
    case trappedStores = "trapped_stores"
    case nestedExits = "nested_exits"
    case nestedFaultsReflected = "nested_faults_reflected"
    case nestedPDPTERepoints = "nested_pdpte_repoints"
    case specialRootsCreated = "special_roots_created"
    case rootsFreed = "roots_freed"

    // The hypervisor's memory.
    /// Hashed shadow pages in use now.
    case shadowPages = "shadow_pages"
    case hostTableFrames = "host_table_frames"

    /// The printed name.
    public var name: String { rawValue }
}

/// A machine's counters, in the order it prints them (`run --stats`). Each
/// kind of machine counts its own set: a counter it does not have reads 0
/// and `contains` says whether it has it.
public struct MachineStatistics: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var counter: Counter
        public var value: Int
    }

    /// The counters in printing order.
    public private(set) var entries: [Entry]

    public init(_ entries: [(Counter, Int)] = []) {
        self.entries = entries.map { Entry(counter: $0.0, value: $0.1) }
    }

    /// The value of `counter`; 0 when this machine does not count it.
    public subscript(_ counter: Counter) -> Int {
        entries.first { $0.counter == counter }?.value ?? 0
    }

    public func contains(_ counter: Counter) -> Bool { entries.contains { $0.counter == counter } }

    /// (printed name, value) in printing order.
    public var printed: [(name: String, value: Int)] { entries.map { ($0.counter.name, $0.value) } }
}

extension MMUStatistics {
    /// Every MMU counter, in its printing order.
    var counters: [(Counter, Int)] {
        [
            (.exits, exits), (.shadowFaultsFixed, shadowFaultsFixed), (.spuriousFaults, spuriousFaults),
            (.guestFaultsInjected, guestFaultsInjected), (.emulatedAccesses, emulatedAccesses),
            (.mmioExits, mmioExits), (.mmioSPTEsCreated, mmioSPTEsCreated),
            (.shadowPagesCreated, pagesCreated), (.shadowPagesZapped, pagesZapped),
            (.pteWritesEmulated, pteWritesEmulated), (.pagesFlooded, pagesFlooded),
            (.pagesRecycled, pagesRecycled), (.unsync, unsyncs), (.sync, syncs),
            (.localRootsCreated, localRootsCreated), (.localPagesCreated, localPagesCreated),
            (.localPagesFreed, localPagesFreed), (.cachedRootHits, cachedRootHits),
            (.cachedRootMisses, cachedRootMisses), (.rootsLoaded, rootsLoaded),
            (.remoteTLBFlushes, remoteTLBFlushes), (.invlpg, invlpgs), (.guestTLBFlushes, guestTLBFlushes),
            (.fastZaps, fastZaps), (.trappedStores, trappedStores),
            (.nestedExits, nestedExits), (.nestedFaultsReflected, nestedFaultsReflected),
            (.nestedPDPTERepoints, nestedPDPTERepoints),
            (.specialRootsCreated, specialRootsCreated), (.rootsFreed, rootsFreed),
        ]
    }
}
