/// A place where KVM's shadow MMU departs from the x86 architecture and the
/// model, to stay faithful to KVM, departs with it (DESIGN.md §5 item 5).
///
/// By default the model does what KVM does; a deviation in `ShadowMMU.fixes`
/// (`--fix NAME`) makes it do what the architecture requires instead, so a
/// difference from `mmu native` that a fix removes is known KVM behaviour, not
/// a bug of the model. Each case has a scenario under
/// `Tests/ShadowMMUTests/Deviations/` and an entry in `docs/deviations.md`.
public enum Deviation: String, CaseIterable, Sendable {
    /// Architecture: once software clears EFER.NXE, bit 63 (XD) of every
    /// paging-structure entry is reserved; after the TLB flush the change
    /// requires, an access through an entry with XD set is a #PF with RSVD.
    ///
    /// KVM: `kvm_init_shadow_mmu` (mmu.c) forces `root_role.efer_nx = 1`,
    /// because KVM itself uses NX in sptes. The role does not change with the
    /// guest's NXE, so the root that `kvm_mmu_reset_context` builds finds the
    /// shadow pages made under NXE=1 by (gfn, role), sptes and all, and an
    /// access they already map completes, even after MOV CR3 and a flush.
    ///
    /// Fixed: the shadow root role carries the guest's EFER.NX, so pages built
    /// under one setting never serve the other and the next access walks the
    /// guest's tables again.
    case eferNXForced = "efer-nx-forced"

    /// Architecture: CR4.PSE decides whether a 32-bit PDE with PS=1 maps a
    /// 4 MiB page or points to a page table; changing it (with the flush MOV
    /// CR4 does) makes the walk read the PDE the new way.
    ///
    /// KVM: `kvm_mmu_page_role` has no PSE bit; CR4.PSE lives only in the
    /// extended cpu role (`kvm_calc_cpu_role`, mmu.c), which picks the guest
    /// walker's reserved bits but not the shadow pages. `kvm_post_set_cr4`
    /// (x86.c) resets the context and the new root reuses the page-directory
    /// shadows whose sptes still translate the old way: after PSE 1→0 a 4 MiB
    /// page stays mapped as one, after 0→1 the page table stays in use, for
    /// every address already mapped.
    ///
    /// Fixed: a CR4.PSE change under 32-bit paging zaps the 32-bit
    /// page-directory shadows.
    case cr4PSENotInRole = "cr4-pse-not-in-role"

    /// Architecture: with CR4.SMAP=1 a supervisor data access to a user page
    /// faults unless EFLAGS.AC=1 (and it is explicit); with CR0.WP=0 a
    /// supervisor write ignores R/W. A write allowed by AC=1 leaves the page a
    /// user page: a later supervisor access with AC=0 (or an implicit one)
    /// faults.
    ///
    /// KVM: `FNAME(page_fault)` (paging_tmpl.h) emulates CR0.WP=0 for a
    /// supervisor write to a read-only page by mapping it writable and
    /// supervisor-only (U=0), without regard to SMAP (mmu.rst reasons that
    /// SMAP would have faulted first, which AC=1 contradicts). The hardware then
    /// sees a supervisor page and SMAP never fires on it: later supervisor
    /// accesses with AC=0 complete until a user access re-maps the page.
    ///
    /// Fixed: such a write is emulated and the spte keeps the guest's U bit.
    case cr0WPEmulationSMAP = "cr0-wp-emulation-smap"

    /// Architecture: with PSE-36, a 32-bit 4 MiB PDE holds physical-address
    /// bits (M'−1):32 in bits (M'−20):13, with M' = min(MAXPHYADDR, 40); only
    /// bits 21:(M'−19) are reserved.
    ///
    /// KVM: `__reset_rsvds_bits_mask` (mmu.c, `PT32_ROOT_LEVEL`) reserves bits
    /// 21:17 whatever the guest's MAXPHYADDR, and `FNAME(walk_addr_generic)`
    /// adds only bits 16:13 (`pse36_gfn_delta`, paging_tmpl.h): a guest with
    /// MAXPHYADDR > 36 that sets bit 17 or above in a 4 MiB PDE gets a #PF with
    /// RSVD where the architecture translates above 64 GiB.
    ///
    /// Fixed: the shadow MMU walks 32-bit guest tables with the guest's own
    /// MAXPHYADDR.
    case pse36LimitedTo36Bits = "pse36-limited-to-36-bits"

    /// Architecture (AMD APM, nested paging): a PAE guest's nPDPTEs are not
    /// latched; the nested walk reads them from memory every time, so an L1
    /// that re-points one (or makes one present) changes L2's translations
    /// at its next VMRUN with a TLB flush, or at once for entries not cached.
    ///
    /// KVM before the series (`roots=special`, v5.18): `mmu_alloc_shadow_roots`
    /// reads the four nPDPTEs once, at root load, into `pae_root`; the fault
    /// path walks L1's tables afresh but shadow-walks from the stale entry,
    /// so it links the new page directory's tables under the old one's shadow
    /// page (L2 later sees mappings L1 never made), or finds the entry empty
    /// and fails `KVM_RUN` with -EFAULT. The stale-nPDPTE bug the series
    /// fixes; under the series' design (`roots=local`) it cannot happen.
    ///
    /// Fixed: a nested fault whose nPDPTE differs from the one the root was
    /// built with frees the root and retries (the series' patch 1).
    case nptPDPTEsReadAtRootLoad = "npt-pdptes-read-at-root-load"
}
