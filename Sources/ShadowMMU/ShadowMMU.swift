import HostPlatform
import KVMCatalogue
import MMUEncoding
import X86Paging

/// How the hypervisor virtualizes the guest's paging.
public enum MMUMode: Hashable, Sendable {
    /// Shadow paging: tables built from the guest's own.
    case shadow
    /// Two-dimensional paging: the guest's tables run on the hardware and the
    /// hypervisor keeps a direct map of guest-physical memory (KVM's TDP MMU)
    /// in EPT format (`.ept`) or NPT (`.x86`) format, with `levels` levels (3
    /// only for NPT on a 32-bit PAE host).
    case tdp(format: SPTEFormat, levels: Int)

    public var isTDP: Bool { if case .tdp = self { true } else { false } }
}

/// KVM's shadow MMU: the hypervisor builds, in host memory, the tables the
/// hardware walks (shadow pages) from the guest's own page tables, keeps them
/// coherent by write-protecting the guest tables it shadows (or letting leaf
/// tables go unsync until the guest flushes), and handles the faults the
/// hardware raises on them.
///
/// Roots follow the "local shadow pages" design (DESIGN.md §4): every table
/// on a root path is a `ShadowPage`; those with no guest table behind them (a
/// PAE root, padding levels) are local to one vCPU, outside the hash.
///
/// One instance serves every vCPU of a VM (state shared through the hash) and
/// keeps one `Context` per vCPU (roles and roots: KVM's per-vCPU `kvm_mmu`).
/// It owns no guest memory and no hardware: it reads guest memory and writes
/// host tables through `GuestMemory` and `HostMemory`, and asks the machine to
/// flush hardware TLBs through `remoteFlush`.
public final class ShadowMMU {
    public let host: HostMemory
    public let memory: GuestMemory
    public let mode: MMUMode
    /// How roots without a guest table of their shape are built: the series'
    /// local pages (the default), the same filled eagerly, or upstream's
    /// special roots (ShadowMMU+SpecialRoots).
    public let rootDesign: RootDesign
    /// The format of every table this MMU builds.
    public let spteFormat: SPTEFormat
    // The MMU is driven by one thread at a time; its hot state skips Swift's
    // dynamic exclusivity checks, which cost about a third of a fault.
    @exclusivity(unchecked) public internal(set) var contexts: [Context]
    /// Per vCPU, the MMU that shadows an L1 hypervisor's nested tables while
    /// the vCPU runs L2 (KVM's `guest_mmu`); created at the first nested entry.
    @exclusivity(unchecked) public internal(set) var nestedContexts: [Context?]
    /// Known bugs switched back on, to show that the checker catches them.
    @exclusivity(unchecked) public var regressions: Set<Regression> = []
    /// Whether `regression` is switched on: no hashing when none is (the
    /// fault path asks several times per fault).
    @inline(__always) func regressed(_ regression: Regression) -> Bool { !regressions.isEmpty && regressions.contains(regression) }
    /// Whether `deviation` is fixed, as cheaply.
    @inline(__always) func fixed(_ deviation: Deviation) -> Bool { !fixes.isEmpty && fixes.contains(deviation) }
    /// Departures from the architecture that KVM makes and the model, by
    /// default, makes with it; each one listed here behaves architecturally.
    public var fixes: Set<Deviation> = [] {
        didSet {
            // A fix can change what the root role is: roots built under the old
            // set are released and the roles derived again.
            guard !mode.isTDP, fixes != oldValue else { return }
            for context in contexts {
                freeRoots(context, current: true, previous: true)
                context.rootRole = shadowRootRole(for: context.cpuRole)
            }
        }
    }

    /// The shadow root role for `cpuRole`, as KVM computes it, but for the
    /// deviations fixed.
    func shadowRootRole(for cpuRole: CPURole) -> PageRole {
        var role = PageRole.shadowRoot(for: cpuRole, keepingGuestNX: fixed(.eferNXForced), keepingGuestPSE: fixed(.cr4PSENotInRole))
        // Role bits KVM once lacked (the bug zoo).
        if regressed(.cr0WPNotInRole) { role.cr0WP = false }
        if regressed(.smepAndNotWPNotInRole) { role.smepAndNotWP = false }
        if regressed(.smapAndNotWPNotInRole) { role.smapAndNotWP = false }
        return role
    }
    @exclusivity(unchecked) public internal(set) var statistics = MMUStatistics()
    /// Called whenever translations cached by any vCPU's hardware may be stale
    /// (KVM's `kvm_flush_remote_tlbs`): the machine flushes every hardware TLB
    /// and makes every vCPU reload its root state (PDPTE registers) before it
    /// runs again.
    public var remoteFlush: () -> Void = {}

    /// The page hash: (gfn, role) → page, valid pages only.
    @exclusivity(unchecked) var hash: [PageKey: ShadowPage] = [:]

    /// Hashed pages by gfn (KVM walks the hash bucket of the gfn).
    @exclusivity(unchecked) var pagesByGFN: [UInt64: [ShadowPage]] = [:]
    /// Every live page, hashed, invalid or local, by the host frame of its table
    /// (KVM finds a page from its table through the page's private field).
    @exclusivity(unchecked) var pageByFrame = FrameTable()
    /// Reverse map: gfn → host addresses of the leaf sptes mapping it.
    @exclusivity(unchecked) var rmap: [UInt64: [UInt64]] = [:]
    /// gfn → number of upper-level (level > 1) shadow pages of it: such a
    /// frame is write-tracked and can never be mapped writable.
    @exclusivity(unchecked) var writeTrack: [UInt64: Int] = [:]
    /// Pages with guest ptes (`indirect_shadow_pages`).
    @exclusivity(unchecked) var indirectShadowPages = 0
    /// The MMU generation; pages of an older one are obsolete (fast zap).
    @exclusivity(unchecked) public internal(set) var generation: UInt64 = 0
    /// Memslot generation, stamped into MMIO sptes.
    @exclusivity(unchecked) public internal(set) var memslotGeneration: UInt64 = 0
    /// Cap on hashed shadow pages (`n_max_mmu_pages`).
    @exclusivity(unchecked) public internal(set) var maxPages = Int.max
    /// Hashed pages in use (`n_used_mmu_pages`).
    @exclusivity(unchecked) public internal(set) var usedPages = 0
    @exclusivity(unchecked) var nextSerial = 0

    public init(
        host: HostMemory, memory: GuestMemory, vcpuCount: Int, guestModel: CPUModel, mode: MMUMode = .shadow,
        rootDesign: RootDesign = .local
    ) {
        self.host = host
        self.memory = memory
        self.mode = mode
        self.rootDesign = rootDesign
        if case .tdp(let format, _) = mode { spteFormat = format } else { spteFormat = .x86 }
        contexts = (0..<vcpuCount).map { Context(vcpu: $0, registers: ControlRegisters(model: guestModel), mode: mode) }
        nestedContexts = Array(repeating: nil, count: vcpuCount)
    }

    /// Every context: each vCPU's root MMU and, once it ran L2, its nested one.
    public var allContexts: [Context] { contexts + nestedContexts.compactMap { $0 } }

    /// Per-vCPU MMU state (KVM's `struct kvm_mmu` for the vCPU's root MMU).
    public final class Context {
        public let vcpu: Int
        /// The guest's paging state as of its last register write.
        @exclusivity(unchecked) public internal(set) var registers: ControlRegisters
        @exclusivity(unchecked) public internal(set) var cpuRole: CPURole
        @exclusivity(unchecked) public internal(set) var rootRole: PageRole
        @exclusivity(unchecked) public internal(set) var root: ShadowPage?
        /// The guest CR3 the current root was built for.
        @exclusivity(unchecked) var rootPGD: UInt64 = 0
        /// Cached roots for fast CR3 switches (`prev_roots`): 64-bit roots only.
        @exclusivity(unchecked) var previousRoots: [(pgd: UInt64, page: ShadowPage)?] = [nil, nil, nil]
        /// Backing frame of local PAE roots (and of the special `pae_root`),
        /// below 4 GiB; allocated when first needed.
        @exclusivity(unchecked) public internal(set) var paeRootFrame: UInt64?
        /// Frames of the special `pml4_root` (key 4) and `pml5_root` (key 5)
        /// tables, kept for the vCPU's life once allocated (`RootDesign.special`).
        @exclusivity(unchecked) var paddingRootFrames: [Int: UInt64] = [:]
        /// For a nested context: the L1 hypervisor's second stage being shadowed.
        /// `registers` then hold L1's paging mode (NPT) and the guest walk is a
        /// walk of L1's nested tables, indexed by L2-physical address.
        @exclusivity(unchecked) public internal(set) var nested: NestedPaging?

        /// The table the root shadows (KVM's `pgd`): the guest's CR3 table, or
        /// L1's nCR3 / EPTP table.
        var pgd: UInt64 { nested?.rootAddress ?? registers.rootTableAddress }

        /// The address that indexes this context's tables: linear for shadow
        /// paging, guest-physical for TDP and nested contexts.
        func tableIndex(_ address: UInt64, tdp: Bool) -> UInt64 {
            tdp || nested != nil ? address : registers.linearAddress(address)
        }

        init(vcpu: Int, registers: ControlRegisters, mode: MMUMode) {
            self.vcpu = vcpu
            self.registers = registers
            cpuRole = CPURole(registers)
            switch mode {
            case .shadow: rootRole = PageRole.shadowRoot(for: cpuRole)
            case .tdp(_, let levels): rootRole = PageRole.tdpRoot(levels: levels)
            }
        }

        /// The cached roots, most recent first.
        public var cachedRoots: [ShadowPage] { previousRoots.compactMap { $0?.page } }
    }

    /// Pages in the hash, oldest first.
    public var hashedPages: [ShadowPage] { hash.values.sorted { $0.serial < $1.serial } }

    /// Every live page (hashed, local, and zapped roots still held).
    public var livePages: [ShadowPage] { pageByFrame.values.sorted { $0.serial < $1.serial } }

    /// The page whose table holds the spte at host address `sptep`.
    func page(holding sptep: UInt64) -> ShadowPage { pageByFrame[sptep >> 12]! }

    /// The page a present non-leaf spte points to.
    func child(of spte: SPTE) -> ShadowPage? { pageByFrame[spte.frame] }

    func isObsolete(_ page: ShadowPage) -> Bool { page.role.invalid || page.generation != generation }

    /// Valid pages with guest ptes at `gfn`.
    func shadowedPages(of gfn: UInt64) -> [ShadowPage] {
        (pagesByGFN[gfn] ?? []).filter { $0.hasGuestPTEs && !isObsolete($0) }
    }

    /// Asks the machine to flush every hardware TLB.
    func flushRemoteTLBs() {
        statistics.remoteTLBFlushes += 1
        remoteFlush()
    }
}

// MARK: - Finding, creating and linking shadow pages

extension ShadowMMU {
    /// The role of a child of `parent` (`kvm_mmu_child_role`) for address `address`.
    func childRole(of parent: PageRole, address: UInt64, direct: Bool, access: AccessRights) -> PageRole {
        var role = parent
        role.level = parent.level - 1
        role.direct = direct
        role.access = access
        role.passthrough = false
        role.quadrant = 0
        if parent.hasFourByteGPTE {
            // A 1024-entry guest table becomes several 512-entry shadow pages:
            // a page directory four (one per GiB), a page table two (one per 2 MiB).
            if role.level == 2 { role.quadrant = Int(address >> 30 & 3) }
            if role.level == 1 { role.quadrant = Int(address >> 21 & 1) }
        }
        return role
    }

    /// The shadow page for (`gfn`, `role`) (`kvm_mmu_get_shadow_page`): a fresh
    /// local page when the context uses local root pages and the level is 3 or
    /// more (the series' hook, ShadowMMU+LocalRoots), else the valid page in
    /// the hash, else a new hashed page.
    func shadowPage(_ context: Context, gfn: UInt64, role: PageRole, trace: MMUTrace?) -> ShadowPage {
        if role.level >= 3, context.usingLocalRootPage {
            trace?.record(.pageCreated(level: role.level, gfn: 0, role: role, local: true))
            return allocateLocalShadowPage(context, role: role)
        }
        for page in pagesByGFN[gfn] ?? [] where !isObsolete(page) {
            if page.role != role {
                // The guest reuses a leaf table as an upper-level table: an unsync
                // page would stay writable while the new page needs write protection.
                if role.level > 1, page.unsync { zapPage(page) }
                continue
            }
            if page.role.direct {
                trace?.record(.pageFound(level: role.level, gfn: gfn, role: role, local: false))
                return page
            }
            if page.unsync, !syncPage(context, page, trace: trace) {
                zapPage(page)
                break
            }
            page.writeFloodingCount = 0
            trace?.record(.pageFound(level: role.level, gfn: gfn, role: role, local: false))
            return page
        }
        trace?.record(.pageCreated(level: role.level, gfn: gfn, role: role, local: false))
        return allocateHashedPage(gfn: gfn, role: role)
    }

    func allocateHashedPage(gfn: UInt64, role: PageRole) -> ShadowPage {
        statistics.pagesCreated += 1
        let page = ShadowPage(gfn: gfn, role: role, frame: host.allocateTableFrame(), generation: generation, owner: nil, serial: nextSerial)
        nextSerial += 1
        hash[PageKey(gfn: gfn, role: role)] = page
        pagesByGFN[gfn, default: []].append(page)
        pageByFrame[page.frame] = page
        usedPages += 1
        if page.hasGuestPTEs { accountShadowed(page) }
        return page
    }

    /// Write-protects the guest table a new page shadows (`account_shadowed`):
    /// upper-level tables are write-tracked for good; leaf tables are
    /// write-protected now and may later go unsync.
    func accountShadowed(_ page: ShadowPage) {
        indirectShadowPages += 1
        if page.role.level > 1 { writeTrack[page.gfn, default: 0] += 1 }
        if writeProtect(gfn: page.gfn), !regressed(.noFlushAfterWriteProtect) { flushRemoteTLBs() }
    }

    func unaccountShadowed(_ page: ShadowPage) {
        indirectShadowPages -= 1
        if page.role.level > 1 {
            let count = writeTrack[page.gfn, default: 0] - 1
            writeTrack[page.gfn] = count > 0 ? count : nil
        }
    }

    /// Removes write access from every spte mapping `gfn`; returns whether
    /// anything changed (a TLB flush is then due).
    @discardableResult
    func writeProtect(gfn: UInt64, keepMMUWritable: Bool = false) -> Bool {
        var changed = false
        for sptep in rmap[gfn] ?? [] {
            let spte = host.entry(sptep)
            var new = spte & ~SPTE.writable
            if !keepMMUWritable { new &= ~SPTE.mmuWritable(spteFormat) }
            if new != spte {
                host.setEntry(sptep, new)
                changed = changed || spte & SPTE.writable != 0
            }
        }
        return changed
    }

    /// Points `parent`'s entry `index` at `child` (`link_shadow_page`).
    func link(_ parent: ShadowPage, _ index: Int, to child: ShadowPage, context: Context, trace: MMUTrace?) {
        let sptep = parent.spteAddress(index)
        let spte = makeLinkSPTE(parent, to: child, context)
        trace?.record(.spteWritten(level: parent.role.level, index: index, address: sptep, old: host.entry(sptep), new: spte.rawValue))
        host.setEntry(sptep, spte.rawValue)
        child.parentSPTEs.append(sptep)
        if child.unsync || child.unsyncChildren > 0 { markUnsync(sptep) }
    }

    /// Records, up every path to the roots, that the entry at `sptep` leads to
    /// an unsync page (`mark_unsync`).
    func markUnsync(_ sptep: UInt64) {
        let parent = page(holding: sptep)
        guard parent.markUnsyncChild(Int(sptep & 0xfff) / 8), parent.unsyncChildren == 1 else { return }
        for grandparent in parent.parentSPTEs { markUnsync(grandparent) }
    }
}
