import MMUEncoding
import X86Paging

// Local shadow pages for special roots: Lai Jiangshan's series "KVM: X86/MMU:
// Use one-off local shadow page for special roots" (V3, May 2022; DESIGN.md §4,
// docs/reference/local-shadow-pages-series.md). The series was not merged;
// upstream still builds these roots from raw `pae_root`/`pml4_root`/`pml5_root`
// pages. This file holds what the series adds; the table says, patch by patch,
// where each change lives, here or in the generic code it touches.
//
// | patch | series change | code |
// |---|---|---|
// | P1 | verify the PAE PDPTE in `FNAME(page_fault)`; free the root on mismatch | not modelled: P9 replaces it (Lai withdrew both P1 and P9 for a redo; the model keeps P9) — see departures |
// | P2 | `using_local_root_page()`, OR form; `fast_pgd_switch` frees local roots | `Context.usingLocalRootPageLongForm`; `newPGD(_:)` (ShadowMMU+Roots) |
// | P3 | the same predicate, direct/indirect form | `Context.usingLocalRootPage` (the one the code uses; LocalRootPredicateTests proves the two agree on every reachable role pair) |
// | P4 | `kvm_mmu_alloc_local_shadow_page`, the hook in `kvm_mmu_get_page`, `mmu_free_local_root_page` | `allocateLocalShadowPage(_:role:)`, hook in `shadowPage(_:gfn:role:trace:)` (ShadowMMU.swift); `freeLocalRoot(_:_:)`, `freeLocalPage(_:_:)`, called by `releaseRoot(_:_:)` (ShadowMMU+Roots) |
// | P5 | `make_pae_pdpte` for the entries of a real PAE PDPT, in `link_shadow_page` | `makeLinkSPTE(_:to:_:)`, `SPTE.paeRootEntry(child:)`, called by `link(_:_:to:context:trace:)` |
// | P6 | roots are one `mmu_alloc_root` of the full root level; PDPTEs and lower local levels on demand; one free and one sync path; walker defaults above the guest's top level | `loadRoot(_:)` (gfn 0 for a local root), `releaseRoot(_:_:)`, `syncRoots(_:)` (ShadowMMU+Roots); `fetch` builds every level from the root; `GuestWalk` keeps gfn 0 / full rights above the guest's levels |
// | P7 | `to_shadow_page()` of a root is never NULL; obsolescence is `is_obsolete_sp` on the root | `Context.root` is a `ShadowPage`; `freeObsoleteRoots(_:)` and `isObsolete(_:)` treat local roots like any page |
// | P8 | allocate `pae_root` on demand, below 4 GiB | `takePAERootFrame(_:)` (at the first local PAE page, not in `kvm_mmu_load`); `HostMemory` allocates every table frame below 4 GiB |
// | P9 | compare the level-3 entry with the walk's PD in `FNAME(fetch)`, drop it on mismatch | `repointStaleLocalPDPTE(_:_:sptep:linked:)`, called by `fetch`; `Regression.staleNPTPDPTE` switches it off |
// | P10 | drop `INVALID_PAE_ROOT`; an empty PDPTE is 0 | nothing to write: empty entries are 0 and tested with `SPTE.isShadowPresent` |
// | P11 | `pae_root` backs a local L3 page only when `root_role.level == 3` | `allocateLocalShadowPage(_:role:)` |
// | P12 | remove `mmu_alloc_special_roots`, `pml4_root`, `pml5_root` | nothing to write: local L4/L5 pages come from `allocateLocalShadowPage(_:role:)` like any other |
//
// Hardware side (VirtualMachine): `VirtualMachine.enter` loads the PDPTE
// registers from a 3-level root at VM entry; since P6 fills PDPTEs on demand,
// the machine re-enters after a fault on such a root (`rootIsLatchedAtEntry(vcpu:)`);
// `VCPU.loadedRoot` tells roots apart by serial, not frame, because successive
// local PAE roots share one frame.
//
// Where the model departs from the series, and why:
// - P1 is not modelled and P9 is gated, as Sean Christopherson asked: the
//   fault-time nPDPTE check applies to shadow NPT with a PAE L1 only
//   (`Context.checksNestedPDPTEs`). The series applies it to every PAE guest,
//   which trades one architectural error for another: an ordinary PAE guest's
//   latched PDPTE registers must keep winning over its PDPT in memory.
// - P9 drops the stale entry with `drop_spte`, which looks up a gfn rmap the
//   local page does not have; the model unlinks the child from its parent
//   pointers and clears the entry (`unlinkChild(_:from:)`), the structural
//   unlink the series uses everywhere else.
// - P8: the backing frame is allocated at the first local PAE page, and its
//   four entries are cleared whenever a new local root takes it (Sean's
//   review) instead of relying on the previous free having cleared them.
// - A page is local by its `ShadowPage.owner`, not by a role bit (Sean's
//   `role.per_vcpu` proposal): local pages never reach the hash, so the role
//   needs no bit to keep them apart, and `ShadowPage.hasGuestPTEs` is false
//   for them (the `sp_has_gptes` pitfall Sean pointed out).
// - P6's skip of `gpte_changed` at levels above the guest's top has nothing to
//   skip here: the model's walk and fetch run with no guest write in between.
// - The design the series replaces (upstream's special roots) is modelled
//   beside this one, as `RootDesign.special` (ShadowMMU+SpecialRoots), and
//   so is the series' design with entries filled at load
//   (`RootDesign.localEager`), to measure the two against each other
//   (docs/series.md).

// MARK: - When roots start with local pages (P2, P3)

extension ShadowMMU.Context {
    /// Whether roots of this context start with local pages
    /// (`using_local_root_page`, the series' cheap form of P3): a direct root of
    /// three levels, or an indirect root over a guest with at most three.
    public var usingLocalRootPage: Bool {
        rootRole.direct ? rootRole.level == 3 : cpuRole.level <= 3
    }

    /// The series' first form of the same predicate (P2): a 3-level root, or
    /// an indirect root over a guest with at most three levels. For an indirect
    /// root a 3-level root implies a guest of at most three levels, which is
    /// why P3 can drop the first test; a test proves the two agree.
    public var usingLocalRootPageLongForm: Bool {
        rootRole.level == 3 || (!rootRole.direct && cpuRole.level <= 3)
    }

    /// The series' fault-time check of a local level-3 entry against the
    /// nPDPTE just read (P9) applies here: shadow NPT for a PAE L1 only (for an
    /// ordinary PAE guest the latched PDPTE registers win).
    var checksNestedPDPTEs: Bool {
        if case .npt = nested { return cpuRole.level == 3 }
        return false
    }
}

extension ShadowMMU {
    // MARK: - Allocation and freeing (P4, P8, P11)

    /// A page local to `context`'s vCPU (`kvm_mmu_alloc_local_shadow_page`):
    /// gfn 0, not in the hash, not counted against the cap, never
    /// write-protected. A level-3 page of a 3-level root is a real PAE PDPT
    /// and takes the context's PAE root frame (P11); every other local page
    /// gets a table frame of its own.
    func allocateLocalShadowPage(_ context: Context, role: PageRole) -> ShadowPage {
        let frame = role.level == 3 && context.rootRole.level == 3 ? takePAERootFrame(context) : host.allocateTableFrame()
        statistics.localPagesCreated += 1
        let page = ShadowPage(gfn: 0, role: role, frame: frame, generation: generation, owner: context.vcpu, serial: nextSerial)
        nextSerial += 1
        pageByFrame[frame] = page
        return page
    }

    /// The frame of `context`'s PAE roots (KVM's `pae_root`): allocated when
    /// first needed (P8), below 4 GiB like every table frame so that a 32-bit
    /// CR3 can hold it, and reused by each successive local PAE root, which
    /// finds its four entries cleared.
    func takePAERootFrame(_ context: Context) -> UInt64 {
        if context.paeRootFrame == nil { context.paeRootFrame = host.allocateTableFrame() }
        let frame = context.paeRootFrame!
        for index in 0..<4 { host.setEntry(frame << 12 + UInt64(index) * 8, 0) }
        return frame
    }

    /// Frees a local root and the local pages under it (`mmu_free_local_root_page`):
    /// entry 0 of each local L5/L4 page, entries 0–3 of the local L3 page. The
    /// ordinary pages below are only unlinked: they stay in the hash, for the
    /// next root over the same guest tables.
    func freeLocalRoot(_ context: Context, _ root: ShadowPage) {
        var next: ShadowPage? = root
        while let page = next {
            next = nil
            if page.role.level > 3 {
                let spte = SPTE(rawValue: host.entry(page.spteAddress(0)))
                if spte.isShadowPresent, let child = child(of: spte), child.isLocal { next = child }
                zapSPTE(page, 0)
            } else {
                for index in 0..<4 { zapSPTE(page, index) }
            }
            freeLocalPage(context, page)
        }
    }

    /// Returns a local page's frame to the host — except the PAE root frame,
    /// which the context keeps for its next local root.
    func freeLocalPage(_ context: Context, _ page: ShadowPage) {
        statistics.localPagesFreed += 1
        if pageByFrame[page.frame] === page { pageByFrame[page.frame] = nil }
        if page.frame != context.paeRootFrame { host.freeTableFrame(page.frame) }
    }

    // MARK: - Entries of local pages (P5)

    /// The entry that links `child` under `parent` (`link_shadow_page`'s
    /// choice, P5): an entry of a real hardware PAE PDPT — a local level-3
    /// page of a 3-level root — is a PDPTE (`make_pae_pdpte`); every other
    /// link, including the local L5/L4/L3 entries over a 32-bit or PAE L1 on a
    /// 4- or 5-level host, is an ordinary non-leaf spte (`make_nonleaf_spte`).
    func makeLinkSPTE(_ parent: ShadowPage, to child: ShadowPage, _ context: Context) -> SPTE {
        let hardwarePDPT = parent.isLocal && parent.role.level == 3 && context.rootRole.level == 3
        return hardwarePDPT ? SPTE.paeRootEntry(child: child.frame) : SPTE.nonLeaf(child: child.frame, format: spteFormat)
    }

    /// Whether the current root of `vcpu` is loaded into the hardware's PDPTE
    /// registers at VM entry (a 3-level root, or no root yet): the series
    /// fills a PAE root's entries on demand (P6), so after a fault the machine
    /// must enter again for the hardware to see an entry the fault filled.
    public func rootIsLatchedAtEntry(vcpu: Int) -> Bool {
        contexts[vcpu].root?.role.level ?? 3 == 3
    }

    // MARK: - Stale nPDPTEs (P9)

    /// The series' fix for stale nPDPTEs, in `FNAME(fetch)`: under shadow NPT
    /// for a PAE L1, before descending through a local level-3 entry, checks
    /// that the page it links (`linked`) shadows the page directory the guest
    /// walk just used. L1's nPDPTEs are read on every nested walk, never
    /// latched, and its 32-byte PDPT cannot be write-protected, so L1 may have
    /// re-pointed the nPDPTE since the entry was linked. If so, unlinks the
    /// entry (the caller then links the right page) and returns true.
    /// `Regression.staleNPTPDPTE` switches the check off.
    func repointStaleLocalPDPTE(_ fault: PageFault, _ page: ShadowPage, sptep: UInt64, linked: ShadowPage) -> Bool {
        guard page.isLocal, page.role.level == 3, fault.context.checksNestedPDPTEs, !regressed(.staleNPTPDPTE),
              linked.gfn != fault.walk.tableGFN[2]
        else { return false }
        statistics.nestedPDPTERepoints += 1
        fault.trace?.record(.note("the nPDPTE for this GiB now names page directory \((fault.walk.tableGFN[2] << 12).hex), not \((linked.gfn << 12).hex): the local level-3 entry is re-pointed"))
        unlinkChild(linked, from: sptep)
        flushRemoteTLBs()
        return true
    }
}
