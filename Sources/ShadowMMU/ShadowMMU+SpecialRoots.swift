import MMUEncoding
import X86Paging

// Upstream KVM's special roots (`RootDesign.special`): the design the series
// replaces, as Linux v5.18 has it (mmu.c: `mmu_alloc_shadow_roots`,
// `mmu_alloc_direct_roots`, `mmu_alloc_special_roots`, `mmu_free_roots`,
// `kvm_mmu_sync_roots`, `shadow_walk_init_using_root`). It applies exactly
// where the series uses local pages (`Context.usingLocalRootPage`), so the two
// designs differ in rows 1-3 and 6-10 of DESIGN.md §4 and nowhere else.
//
// - `pae_root` is a raw table of the vCPU below 4 GiB; for a 32-bit or PAE L1's
//   nested tables on a 4- or 5-level host, raw `pml4_root` (and `pml5_root`)
//   tables stack above it, entry 0 of each naming the next. None has a page
//   header: they are not in the hash, have no role KVM could look up, no
//   parent pointers, and are never zapped, synced or counted.
// - At root load all four `pae_root` entries are filled: a 32-bit guest's
//   page directory in quadrants 0-3, a PAE guest's PDPTE registers (for a PAE
//   L1's nested tables, its nPDPTEs, read from L1 memory now and never again
//   while the root lives), or the four GiBs of a direct map. Each child is a
//   root of its own (`root_count`), not linked through parent pointers.
// - The MMU's own walk starts at the child behind the entry for the address's
//   GiB; an empty entry leaves it nowhere to go (`FNAME(fetch)` warns and
//   returns -EFAULT, which `KVM_RUN` hands to the VMM).
// - Roots are freed on every CR3 switch (`fast_pgd_switch` keeps no special
//   root), on a PDPTE change and at every nested VMRUN; freeing drops each
//   child's root reference. A special root counts as obsolete as soon as any
//   child is zapped or the generation moves on.
//
// Not modelled: `mmu_check_root`'s triple fault when a PDPTE names a frame no
// memslot holds (such a root here shadows an empty table, and every access
// through it faults in the guest walk first); the per-vCPU request plumbing
// (`KVM_REQ_MMU_FREE_OBSOLETE_ROOTS`), whose effect `freeObsoleteRoots` has at
// the next entry.

extension ShadowMMU {
    /// Whether `context`'s roots are built as upstream's special roots.
    func usesSpecialRoots(_ context: Context) -> Bool {
        rootDesign == .special && context.usingLocalRootPage
    }

    /// Builds a special root (`mmu_alloc_shadow_roots`/`mmu_alloc_direct_roots`
    /// with `mmu_alloc_special_roots`): the raw tables from the root level
    /// down to `pae_root`, and the four children at once. Returns the top table.
    func loadSpecialRoot(_ context: Context) -> ShadowPage {
        let rootLevel = context.rootRole.level
        let tables = stride(from: rootLevel, through: 3, by: -1).map { specialTable(context, level: $0) }
        for (upper, lower) in zip(tables, tables.dropFirst()) {
            host.setEntry(upper.spteAddress(0), SPTE.nonLeaf(child: lower.frame, format: spteFormat).rawValue)
        }
        let paeRoot = tables[tables.count - 1]
        for index in 0..<4 {
            guard let gfn = paeRootChildGFN(context, index) else { continue }  // INVALID_PAE_ROOT
            let child = shadowPage(context, gfn: gfn, role: paeRootChildRole(context, index), trace: nil)
            child.rootCount += 1
            // A real PAE PDPT takes PDPTE-format entries; under pml4_root they are ordinary table entries.
            let entry = rootLevel == 3 ? SPTE.paeRootEntry(child: child.frame) : SPTE.nonLeaf(child: child.frame, format: spteFormat)
            host.setEntry(paeRoot.spteAddress(index), entry.rawValue)
        }
        statistics.specialRootsCreated += 1
        return tables[0]
    }

    /// One raw special table at `level` (3: `pae_root`, 4: `pml4_root`,
    /// 5: `pml5_root`) on the frame the vCPU keeps for it, entries cleared.
    func specialTable(_ context: Context, level: Int) -> ShadowPage {
        let frame: UInt64
        if level == 3 {
            frame = takePAERootFrame(context)
        } else {
            if context.paddingRootFrames[level] == nil { context.paddingRootFrames[level] = host.allocateTableFrame() }
            frame = context.paddingRootFrames[level]!
            host.setEntry(frame << 12, 0)
        }
        var role = context.rootRole
        role.level = level
        let table = ShadowPage(gfn: 0, role: role, frame: frame, generation: generation, owner: context.vcpu, serial: nextSerial, isSpecialRoot: true)
        nextSerial += 1
        pageByFrame[frame] = table
        return table
    }

    /// The guest frame behind `pae_root` entry `index`, nil for an entry left
    /// empty: a direct map's GiB; a 32-bit guest's page directory (one frame,
    /// four quadrants); a PAE guest's PDPTE register, or a PAE L1's nPDPTE as
    /// L1 memory holds it now.
    func paeRootChildGFN(_ context: Context, _ index: Int) -> UInt64? {
        if context.rootRole.direct { return UInt64(index) << 18 }
        guard context.cpuRole.level == 3 else { return context.pgd >> 12 }
        let pdpte: UInt64
        if context.nested != nil {
            let address = context.pgd + UInt64(index) * 8
            // An nPDPTE outside L1's memory reads as not present.
            pdpte = address + 8 <= memory.size ? memory.load(address, width: 8) : 0
        } else {
            pdpte = context.registers.pdptes[index]
        }
        guard pdpte & 1 != 0 else { return nil }
        return (pdpte & 0x000f_ffff_ffff_f000) >> 12
    }

    /// The role of the level-2 page behind PAE entry `index`, the role both
    /// designs give it (`mmu_alloc_root`: the root role at level 2, quadrant
    /// `index` over a 32-bit guest's 1024-entry directory, every right).
    func paeRootChildRole(_ context: Context, _ index: Int) -> PageRole {
        var role = context.rootRole
        role.level = 3
        role.passthrough = false
        role.quadrant = 0
        return childRole(of: role, address: UInt64(index) << 30, direct: role.direct, access: .all)
    }

    /// `pae_root` of the special root whose top table is `root`.
    func paeRoot(of root: ShadowPage) -> ShadowPage {
        var table = root
        while table.role.level > 3 {
            let spte = SPTE(rawValue: host.entry(table.spteAddress(0)))
            guard let next = child(of: spte), next.isSpecialRoot else { break }
            table = next
        }
        return table
    }

    /// The roots behind a special root's four PAE entries.
    func specialRootChildren(_ root: ShadowPage) -> [ShadowPage] {
        let paeRoot = paeRoot(of: root)
        return (0..<4).compactMap { index in
            let spte = SPTE(rawValue: host.entry(paeRoot.spteAddress(index)))
            return spte.isShadowPresent ? child(of: spte) : nil
        }
    }

    /// Whether a root must be rebuilt before the vCPU runs: an obsolete page,
    /// or a special root from an older generation or with a zapped child
    /// (KVM takes every special root for obsolete when asked to free them).
    func isObsoleteRoot(_ root: ShadowPage) -> Bool {
        guard root.isSpecialRoot else { return isObsolete(root) }
        return root.generation != generation || specialRootChildren(root).contains(where: isObsolete)
    }

    /// Frees a special root (`mmu_free_roots`): each PAE entry drops its
    /// child's root reference (a zapped child is freed with its last one) and
    /// is cleared; the raw tables stay with the vCPU for its next root.
    func freeSpecialRoot(_ root: ShadowPage) {
        let paeRoot = paeRoot(of: root)
        for index in 0..<4 {
            let sptep = paeRoot.spteAddress(index)
            let spte = SPTE(rawValue: host.entry(sptep))
            guard spte.isShadowPresent, let child = child(of: spte) else { continue }
            host.setEntry(sptep, 0)
            child.rootCount -= 1
            if child.rootCount == 0, child.role.invalid { freePage(child) }
        }
        var table: ShadowPage? = root
        while let current = table {
            let spte = SPTE(rawValue: host.entry(current.spteAddress(0)))
            table = current.role.level > 3 ? child(of: spte) : nil
            if pageByFrame[current.frame] === current { pageByFrame[current.frame] = nil }
        }
    }

    /// Where the MMU's own walk of `context`'s tables for the table index
    /// `linear` starts (`shadow_walk_init_using_root`): the root, or under a
    /// special root the page behind the PAE entry of the address's GiB — nil
    /// when that entry is empty.
    func shadowWalkStart(_ context: Context, _ linear: UInt64) -> ShadowPage? {
        guard let root = context.root, root.isSpecialRoot else { return context.root }
        let spte = SPTE(rawValue: host.entry(paeRoot(of: root).spteAddress(Int(linear >> 30 & 3))))
        return spte.isShadowPresent ? child(of: spte) : nil
    }

    /// Under `--fix npt-pdptes-read-at-root-load`, before a nested fault is
    /// handled on a special root over a PAE L1: if the nPDPTE the walk just
    /// read names another page directory than the one `pae_root` holds for
    /// that GiB (or L1 made it present since the load), the root is freed and
    /// the access retried on a root read afresh (the series' first patch,
    /// "verify PDPTE for nested NPT in PAE paging mode when page fault").
    func freeSpecialRootForChangedNPDPTE(_ fault: PageFault) -> Bool {
        let context = fault.context
        guard fixed(.nptPDPTEsReadAtRootLoad), context.checksNestedPDPTEs, let root = context.root, root.isSpecialRoot else {
            return false
        }
        let linked = shadowWalkStart(context, fault.address)
        guard linked?.gfn != fault.walk.tableGFN[2] else { return false }
        statistics.nestedPDPTERepoints += 1
        fault.trace?.record(.note("the nPDPTE for this GiB now names page directory \((fault.walk.tableGFN[2] << 12).hex): the special root read at load is stale and is freed"))
        freeRoots(context, current: true, previous: false)
        return true
    }

    // MARK: - Local pages filled at load (RootDesign.localEager)

    /// Fills a new local root at load, as upstream fills its special roots:
    /// the local levels down to level 3, then the four level-2 children,
    /// linked like any child (parent pointers, unsync propagation). The
    /// series' fault-time check of nPDPTEs (P9) still applies.
    func fillLocalRootEagerly(_ context: Context, _ root: ShadowPage) {
        var table = root
        while table.role.level > 3 {
            let child = shadowPage(context, gfn: 0, role: childRole(of: table.role, address: 0, direct: table.role.direct, access: .all), trace: nil)
            link(table, 0, to: child, context: context, trace: nil)
            table = child
        }
        for index in 0..<4 {
            guard let gfn = paeRootChildGFN(context, index) else { continue }
            let child = shadowPage(context, gfn: gfn, role: paeRootChildRole(context, index), trace: nil)
            link(table, index, to: child, context: context, trace: nil)
        }
    }
}
