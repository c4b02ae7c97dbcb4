/// The bug zoo: known bugs of KVM's x86 MMU, fixed upstream (or by the seed
/// series), that the model can be switched back to (`--regress NAME`), to show
/// what each did and that the differential checker and the fuzzer catch it.
///
/// Each case puts the bug back as KVM had it before the fix, at the one place
/// the fix went (`regressions.contains(.name)` in the MMU), and has a scenario
/// `Tests/ShadowMMUTests/Regressions/NAME.scenario` that `check` passes and
/// `check --regress NAME` fails; `shadowmmu zoo` measures how many fuzzed
/// guests each takes to be caught. Where the model's code differs in shape
/// from KVM's, the doc comment says how the hook approximates the old code.
public enum Regression: String, CaseIterable, Sendable {
    /// Before the seed series' fix: a fault under shadow NPT for a PAE L1 does
    /// not compare the local level-3 entry with the nPDPTE just read, so after
    /// L1 re-points an nPDPTE the fault path fills the old page directory's
    /// shadow page with the new one's translations.
    case staleNPTPDPTE = "stale-npt-pdpte"

    // MARK: Role bits missing from the role

    /// Before "KVM: MMU: Segregate shadow pages with different cr0.wp": CR0.WP
    /// is not in the page role. A supervisor write with CR0.WP=0 to a
    /// read-only page maps it writable and supervisor-only; after CR0.WP is
    /// set the new root finds the same pages (same role) and the supervisor
    /// write that must fault completes. The hook clears `cr0_wp` from the
    /// shadow root role (`shadowRootRole(for:)`); the context is still reset
    /// on the CR0.WP write, as KVM's was.
    case cr0WPNotInRole = "cr0-wp-not-in-role"

    /// Before role.smep_andnot_wp (added by 411c588dfb86, Avi Kivity, 2012):
    /// with CR0.WP=0 and SMEP the spte of an emulated supervisor write is
    /// supervisor-only and NX; with SMEP off it is supervisor-only and
    /// executable, and the role does not tell them apart. After the guest
    /// turns SMEP on, a supervisor fetch from that user page completes instead
    /// of faulting. The hook clears `smep_andnot_wp` from the shadow root role.
    case smepAndNotWPNotInRole = "smep-andnot-wp-not-in-role"

    /// Before "KVM: MMU: fix SMAP virtualization" (Xiao Guangrong, 2015): with
    /// CR0.WP=0 an emulated supervisor write makes a user page
    /// supervisor-only; once SMAP is on, a supervisor read of that page with
    /// EFLAGS.AC=0 must fault, but a page built while SMAP was off serves the
    /// new root and the read completes. The hook clears `smap_andnot_wp` from
    /// the shadow root role.
    case smapAndNotWPNotInRole = "smap-andnot-wp-not-in-role"

    /// Before `ad_disabled` was in the page role ("kvm: x86: mmu: allow A/D
    /// bits to be disabled in an mmu", ac8d57e57343, Peter Feiner, 2017; nested
    /// EPT A/D flags came just before it, ae1e2d1082ae): a
    /// shadow EPT page does not record whether L1's EPTP enables accessed and
    /// dirty flags. Pages built while they were off map clean L1 entries
    /// writable; after L1 enables them, an L2 write through such an spte never
    /// exits, and L1's EPT entry never gets its dirty flag. The hook clears
    /// `ad_disabled` from the nested role (`enterNested`), so the roots survive
    /// the change.
    case adDisabledNotInRole = "ad-disabled-not-in-role"

    // MARK: Unsync and sync

    /// Before the reserved-bit test of `FNAME(prefetch_invalid_gpte)` reached
    /// the sync path (Xiao Guangrong's 2010 prefetch and sync series; the exact
    /// commit is not confirmed): resynchronizing an unsync page keeps an spte whose guest entry
    /// now has a reserved bit set (bit 63 with EFER.NXE=0, a physical-address
    /// bit above MAXPHYADDR), so the access completes where the architecture
    /// raises #PF with RSVD. The hook skips the reserved-bit test in
    /// `guestLeaf` (sync and INVLPG share it).
    case syncSkipsReservedBits = "sync-skips-reserved-bits"

    /// Before "KVM: X86: Synchronize the shadow pagetable before link it"
    /// (65855ed8b034): the guest changes an entry of an unsync page table
    /// from not present to present (no flush needed) and then links that
    /// table at a new place; the fault path links the existing shadow page
    /// without syncing it, and the access through the new link uses the
    /// stale, not-present spte: a spurious #PF. The hook skips the sync of a
    /// child with unsync children in `fetch`.
    case linkWithoutSync = "link-without-sync"

    /// Before "KVM: X86: Fix missed remote tlb flush in rmap_write_protect()"
    /// (Lai Jiangshan, 2021): when a flush makes KVM sync unsync pages, it
    /// write-protects their guest tables first (`mmu_sync_children`), but the
    /// flush of the other vCPUs' TLBs could be skipped (sptes already dropped
    /// by an earlier sync left `tlbs_dirty` behind and `rmap_write_protect`
    /// reported nothing to flush). Another vCPU keeps a writable translation
    /// of the table it can write without a trap, and the page just synced
    /// goes stale. The hook skips the flush after the write-protection in
    /// `syncChildren` (the model has no `tlbs_dirty`: it approximates the
    /// lost flush by dropping it).
    case syncWriteProtectWithoutFlush = "sync-write-protect-without-flush"

    /// Before `FNAME(get_level1_sp_gpa)` added the quadrant offset to the guest
    /// table address that sync and INVLPG read (Xiao Guangrong, 2010; the exact
    /// commit is not confirmed): syncing a level-1 shadow
    /// page of a 32-bit guest reads the guest entries from the start of the
    /// guest table, whatever the page's quadrant, so the upper half of a
    /// 1024-entry table is resynchronized from its lower half. The hook drops
    /// the quadrant offset in `guestEntryAddress`.
    case syncIgnoresQuadrant = "sync-ignores-quadrant"

    // MARK: Write protection and write emulation

    /// Before `get_written_sptes` zapped both shadow PDEs behind a 4-byte
    /// guest PDE (the `PT32_ROOT_LEVEL` case, "KVM: MMU: Respect nonpae
    /// pagetable quadrant when zapping ptes", fce0657ff9f1, and its
    /// predecessors in `kvm_mmu_pte_write`): a 32-bit PDE maps 4 MiB, two
    /// 2 MiB shadow PDEs; an emulated write to it zaps only the first, and the
    /// upper 2 MiB keep the old page table. The hook zaps one spte.
    case pde32WriteZapsOneHalf = "pde32-write-zaps-one-half"

    /// Before "KVM: Flush remote tlbs when reducing shadow pte permissions"
    /// (kvm-28, 2007): write-protecting a guest table that becomes shadowed
    /// (`account_shadowed` → `kvm_mmu_slot_gfn_write_protect`) without
    /// `kvm_flush_remote_tlbs`: the hardware TLB of a vCPU keeps
    /// a writable translation of the frame, so the guest writes its page table
    /// without a trap and the new shadow page goes stale. The hook skips the
    /// flush in `accountShadowed`.
    case noFlushAfterWriteProtect = "no-flush-after-write-protect"

    /// Before "KVM: x86/mmu: Reconstruct shadow page root if the guest PDPTEs
    /// is changed" (Lai Jiangshan, 2021; the PDPTE comparison in `load_pdptrs`
    /// that frees the current root under shadow paging): a PAE guest's CR0 or CR4 write reloads
    /// the PDPTE registers with new values, but the PAE root keeps the old
    /// page directories. The hook keeps the root in `registersWritten`.
    case pdptrChangeKeepsRoot = "pdptr-change-keeps-root"

    // MARK: Permissions of shadow pages

    /// Before "KVM: X86: MMU: Use the correct inherited permissions to get
    /// shadow page" (Lai Jiangshan, 2021): `FNAME(fetch)` gets every indirect shadow
    /// page of the chain with the rights of the whole walk (`gw->pt_access`)
    /// instead of those of the entries above that table. Two guest paths that
    /// reach one page directory through entries with different rights then
    /// share a shadow page, and a write through the read-only path completes
    /// (kvm-unit-tests `check_effective_sp_permissions`).
    case inheritedPermissionsOfWalk = "inherited-permissions-of-walk"

    /// Before "KVM: MMU: fix conflict access permissions in direct sp"
    /// (5fd5387c89ec): the direct pages that map a guest huge page with
    /// 4 KiB sptes take their role's rights from the entries above the huge
    /// page only, not from the huge page's own entry. Two guest PDEs with
    /// different rights mapping one huge page share one direct page, whose
    /// sptes grant what the last fault asked for. The hook leaves the leaf's
    /// rights out of the direct role in `fetch`.
    case directRoleWithoutLeafRights = "direct-role-without-leaf-rights"

    /// Before "KVM: MMU: fix direct sp's access corrupted" (9e7b0e7fba45, Xiao
    /// Guangrong, 2010; `validate_direct_spte` today): a present link to a direct page built
    /// for other rights (the guest set D on its huge page since, or the
    /// page was built read-only) is reused as it is, so the new leaf spte is
    /// written into a page whose role promises fewer rights; another mapping
    /// that shares that page then writes without #PF. The hook reuses the
    /// existing direct page in `fetch`.
    case directSPAccessReused = "direct-sp-access-reused"

    /// Before "KVM: MMU: fix Dirty bit missed if CR0.WP = 0" (c22885050e65,
    /// Xiao Guangrong, 2012; kvm-unit-tests x86/access.c
    /// check_large_pte_dirty_for_nowp): CR0.WP=0 emulation made the rights
    /// writable only when the leaf spte was built, after the direct page for a
    /// guest huge page had been found with the guest's read-only rights. The
    /// writable spte then sits in the read-only direct page that another PDE
    /// mapping the same huge page shares, and a write through that PDE never
    /// exits: its dirty flag is never set. The hook keys the direct page by
    /// the rights before the emulation (`fetch`).
    case cr0WP0DirtyBitMissed = "cr0-wp0-dirty-bit-missed"

    // MARK: Large pages and dirty logging

    /// Before `kvm_mmu_max_mapping_level` returned 4 KiB for a slot with dirty
    /// logging (the `kvm_slot_dirty_track_enabled` test; the commit that
    /// introduced it is not confirmed): a TDP fault
    /// after dirty logging starts maps a 2 MiB or 1 GiB page, and writes to
    /// its other frames are never logged. The hook skips the check in
    /// `hugePageLevel`.
    case hugePageWhileDirtyLogging = "huge-page-while-dirty-logging"

    // MARK: Nested

    /// Before "KVM: nVMX: fix EPT permissions as reported in exit
    /// qualification" (0780516a18f8): the EPT violation L0 reflects to L1
    /// reports the entry's rights in bits 3–5 in KVM's `ACC_*` order (exec,
    /// write, user=read) rather than EPT's (read, write, exec): readable and
    /// executable swap. The hook swaps bits 3 and 5 of the reflected
    /// qualification in `nestedPageFault`.
    case eptQualificationRightsSwapped = "ept-qualification-rights-swapped"
}

/// What one entry of the bug zoo is: the upstream fix and what went wrong.
public struct RegressionMetadata: Sendable, Hashable {
    /// The title of the upstream commit that fixed the bug.
    public let fixTitle: String
    /// The fix's commit id (abbreviated), when known.
    public let commit: String?
    /// One sentence on what went wrong.
    public let summary: String
}

extension Regression {
    public var metadata: RegressionMetadata {
        switch self {
        case .staleNPTPDPTE:
            RegressionMetadata(
                fixTitle: "KVM: X86/MMU: Move the verifying of NPT's PDPTE in FNAME(fetch) (local shadow pages series, patch 9)", commit: nil,
                summary: "after L1 re-points an nPDPTE, L0 fills the old page directory's shadow with the new one's translations")
        case .cr0WPNotInRole:
            RegressionMetadata(
                fixTitle: "KVM: MMU: Segregate shadow pages with different cr0.wp", commit: nil,
                summary: "a page made writable by CR0.WP=0 emulation still serves after CR0.WP=1: the supervisor write does not fault")
        case .smepAndNotWPNotInRole:
            RegressionMetadata(
                fixTitle: "the commit that adds role.smep_andnot_wp and NX on CR0.WP=0-emulated sptes (Avi Kivity, 2012)", commit: "411c588dfb86",
                summary: "a user page made supervisor-only by CR0.WP=0 emulation without SMEP stays executable once SMEP is on")
        case .smapAndNotWPNotInRole:
            RegressionMetadata(
                fixTitle: "KVM: MMU: fix SMAP virtualization", commit: nil,
                summary: "a user page made supervisor-only by CR0.WP=0 emulation hides from SMAP once SMAP is on")
        case .adDisabledNotInRole:
            RegressionMetadata(
                fixTitle: "kvm: x86: mmu: allow A/D bits to be disabled in an mmu", commit: "ac8d57e57343",
                summary: "shadow EPT pages built with L1's A/D flags off serve after L1 turns them on: L2 writes leave L1's dirty flags clear")
        case .syncSkipsReservedBits:
            RegressionMetadata(
                fixTitle: "(title not confirmed) the reserved-bit test of FNAME(prefetch_invalid_gpte) on the sync path, Xiao Guangrong, 2010", commit: nil,
                summary: "syncing an unsync page keeps sptes whose guest entries now set reserved bits: no #PF with RSVD")
        case .linkWithoutSync:
            RegressionMetadata(
                fixTitle: "KVM: X86: Synchronize the shadow pagetable before link it", commit: "65855ed8b034",
                summary: "an unsync page table linked at a new place is used unsynced: an entry made present without a flush faults")
        case .syncWriteProtectWithoutFlush:
            RegressionMetadata(
                fixTitle: "KVM: X86: Fix missed remote tlb flush in rmap_write_protect()", commit: nil,
                summary: "tables write-protected to be synced stay writable in another vCPU's TLB, which then writes them untrapped")
        case .syncIgnoresQuadrant:
            RegressionMetadata(
                fixTitle: "(title not confirmed) the quadrant offset of FNAME(get_level1_sp_gpa) in sync_page and invlpg, Xiao Guangrong, 2010", commit: nil,
                summary: "sync of a 32-bit guest's upper half page table reads the lower half's entries")
        case .pde32WriteZapsOneHalf:
            RegressionMetadata(
                fixTitle: "KVM: MMU: Respect nonpae pagetable quadrant when zapping ptes", commit: "fce0657ff9f1",
                summary: "an emulated write to a 4-byte guest PDE zaps one of its two shadow PDEs: the upper 2 MiB keep the old table")
        case .noFlushAfterWriteProtect:
            RegressionMetadata(
                fixTitle: "KVM: Flush remote tlbs when reducing shadow pte permissions (kvm-28)", commit: nil,
                summary: "a guest table write-protected for a new shadow page is still writable through a vCPU's TLB")
        case .pdptrChangeKeepsRoot:
            RegressionMetadata(
                fixTitle: "KVM: x86/mmu: Reconstruct shadow page root if the guest PDPTEs is changed", commit: nil,
                summary: "new PDPTE values loaded by a CR0/CR4 write leave the PAE root on the old page directories")
        case .inheritedPermissionsOfWalk:
            RegressionMetadata(
                fixTitle: "KVM: X86: MMU: Use the correct inherited permissions to get shadow page", commit: nil,
                summary: "shadow pages of one guest table reached with different rights are shared: a read-only path writes")
        case .directRoleWithoutLeafRights:
            RegressionMetadata(
                fixTitle: "KVM: MMU: fix conflict access permissions in direct sp", commit: "5fd5387c89ec",
                summary: "two guest huge-page entries with different rights share one direct page: one path gets the other's rights")
        case .directSPAccessReused:
            RegressionMetadata(
                fixTitle: "KVM: MMU: fix direct sp's access corrupted", commit: "9e7b0e7fba45",
                summary: "a direct page built for fewer rights is reused for a write: another mapping sharing it writes without #PF")
        case .cr0WP0DirtyBitMissed:
            RegressionMetadata(
                fixTitle: "KVM: MMU: fix Dirty bit missed if CR0.WP = 0", commit: "c22885050e65",
                summary: "a CR0.WP=0-emulated write leaves a writable spte in a read-only direct page: another PDE's dirty flag is never set")
        case .hugePageWhileDirtyLogging:
            RegressionMetadata(
                fixTitle: "(title not confirmed) 4 KiB mappings in dirty-logged slots, the kvm_slot_dirty_track_enabled test of kvm_mmu_max_mapping_level", commit: nil,
                summary: "a TDP fault under dirty logging maps a huge page: writes to its other frames are never logged")
        case .eptQualificationRightsSwapped:
            RegressionMetadata(
                fixTitle: "KVM: nVMX: fix EPT permissions as reported in exit qualification", commit: "0780516a18f8",
                summary: "the EPT violation reflected to L1 reports the entry's readable and executable rights swapped")
        }
    }
}
