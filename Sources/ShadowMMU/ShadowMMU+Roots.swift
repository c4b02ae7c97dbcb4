import MMUEncoding
import X86Paging

extension ShadowMMU {
    /// Before `vcpu` enters the guest (`kvm_mmu_reload`): returns its root,
    /// building a new one if it has none or its root became obsolete (zapped,
    /// or from before a fast zap).
    @discardableResult
    public func loadRoot(vcpu: Int) -> ShadowPage { loadRoot(contexts[vcpu]) }

    /// The same for the vCPU's nested context, while it runs L2.
    @discardableResult
    public func loadNestedRoot(vcpu: Int) -> ShadowPage {
        guard let context = nestedContexts[vcpu] else { preconditionFailure("vCPU \(vcpu) has not entered L2") }
        return loadRoot(context)
    }

    /// The root `vcpu` runs on at its next entry unless something changes it
    /// first: nil when it has no root or must rebuild it (a new root, told
    /// apart by ``ShadowPage/serial``, is entered with a flushed TLB).
    public func rootKeptAtEntry(vcpu: Int) -> ShadowPage? {
        guard let root = contexts[vcpu].root, !isObsoleteRoot(root) else { return nil }
        return root
    }

    func loadRoot(_ context: Context) -> ShadowPage {
        freeObsoleteRoots(context)
        if let root = context.root { return root }
        makeMMUPagesAvailable()
        let role = context.rootRole
        let gfn = role.direct || context.usingLocalRootPage ? 0 : context.pgd >> 12
        let root = usesSpecialRoots(context) ? loadSpecialRoot(context) : shadowPage(context, gfn: gfn, role: role, trace: nil)
        if root.isSpecialRoot {
            // Its four children are roots, counted as such (ShadowMMU+SpecialRoots).
        } else if root.isLocal {
            statistics.localRootsCreated += 1
            if rootDesign == .localEager { fillLocalRootEagerly(context, root) }
        } else {
            root.rootCount += 1
        }
        context.root = root
        context.rootPGD = context.pgd
        statistics.rootsLoaded += 1
        syncRoots(context)
        return root
    }

    /// The guest wrote a control register and the architecture accepted it:
    /// the MMU's part of the write (x86.c's post-write hooks).
    public func registersWritten(
        vcpu: Int, _ register: ControlRegister, value: UInt64, old: ControlRegisters, new: ControlRegisters,
        effects: RegisterWriteEffects
    ) {
        let context = contexts[vcpu]
        context.registers = new
        let cpuRole = CPURole(new)
        if mode.isTDP {
            // The hardware walks the guest's tables itself: TDP pages do not depend
            // on the guest's paging state, and its TLB flushes are the hardware's.
            context.cpuRole = cpuRole
            return
        }
        if cpuRole != context.cpuRole {
            // kvm_mmu_reset_context: unload every root, derive the roles again.
            freeRoots(context, current: true, previous: true)
            context.cpuRole = cpuRole
            context.rootRole = shadowRootRole(for: cpuRole)
        }
        if effects.contains(.pdptesLoaded), new.pdptes != old.pdptes, !regressed(.pdptrChangeKeepsRoot) {
            // The PAE root mirrors the PDPTE registers: new values drop it (load_pdptrs).
            freeRoots(context, current: true, previous: false)
        }
        switch register {
        case .cr3:
            // A MOV CR3 of the value already there keeps the root (KVM's kvm_set_cr3
            // switches roots only when CR3 changes; PAE reloads judged the PDPTEs above).
            if new.cr3 != old.cr3 { newPGD(context) }
            let noFlush = new.cr4.contains(.pcide) && value >> 63 == 1
            if !noFlush { syncRoots(context) }
        case .cr4:
            let toggled = CR4(rawValue: old.cr4.rawValue ^ new.cr4.rawValue)
            if toggled.contains(.pge) || (old.cr4.contains(.pcide) && !new.cr4.contains(.pcide)) {
                flushGuestTLB(vcpu: vcpu)
            }
        default:
            break
        }
    }

    /// EFLAGS.AC and WRPKRU change no role; the MMU just keeps the guest's state.
    public func guestStateChanged(vcpu: Int, _ registers: ControlRegisters) {
        contexts[vcpu].registers = registers
    }

    /// MOV CR3 (`kvm_mmu_new_pgd` → `fast_pgd_switch`): keep the current root
    /// if it serves the new CR3, else swap in a cached root that does, else
    /// drop the least recently used. Local roots are never cached: they are
    /// freed, and the next entry builds a new one.
    func newPGD(_ context: Context) {
        let pgd = context.pgd
        if context.usingLocalRootPage {
            freeRoots(context, current: true, previous: false)
            return
        }
        if let root = context.root, isRootUsable(root, builtFor: context.rootPGD, pgd, context) { return }
        var current: (pgd: UInt64, page: ShadowPage)? = context.root.map { (context.rootPGD, $0) }
        for index in 0..<context.previousRoots.count {
            swap(&current, &context.previousRoots[index])
            if let candidate = current, isRootUsable(candidate.page, builtFor: candidate.pgd, pgd, context) {
                context.root = candidate.page
                context.rootPGD = candidate.pgd
                candidate.page.writeFloodingCount = 0
                statistics.cachedRootHits += 1
                return
            }
        }
        statistics.cachedRootMisses += 1
        if let evicted = current { releaseRoot(context, evicted.page) }
        context.root = nil
    }

    func isRootUsable(_ page: ShadowPage, builtFor rootPGD: UInt64, _ pgd: UInt64, _ context: Context) -> Bool {
        !isObsolete(page) && page.role == context.rootRole && (page.role.direct || rootPGD == pgd)
    }

    /// Releases the current and/or cached roots of `context` (`kvm_mmu_free_roots`).
    func freeRoots(_ context: Context, current: Bool, previous: Bool) {
        if current, let root = context.root {
            context.root = nil
            releaseRoot(context, root)
        }
        if previous {
            for index in 0..<context.previousRoots.count {
                if let cached = context.previousRoots[index] {
                    context.previousRoots[index] = nil
                    releaseRoot(context, cached.page)
                }
            }
        }
    }

    /// Frees the current and cached roots that are obsolete
    /// (`kvm_mmu_free_obsolete_roots`).
    func freeObsoleteRoots(_ context: Context) {
        if let root = context.root, isObsoleteRoot(root) { freeRoots(context, current: true, previous: false) }
        for index in 0..<context.previousRoots.count {
            if let cached = context.previousRoots[index], isObsolete(cached.page) {
                context.previousRoots[index] = nil
                releaseRoot(context, cached.page)
            }
        }
    }

    /// Drops one reference to a root: a shared root stays in the hash (found
    /// again by the next root for the same guest table) unless it was zapped;
    /// a local root is freed.
    func releaseRoot(_ context: Context, _ root: ShadowPage) {
        statistics.rootsFreed += 1
        if root.isSpecialRoot {
            freeSpecialRoot(root)
            return
        }
        if root.isLocal {
            freeLocalRoot(context, root)
            return
        }
        root.rootCount -= 1
        if root.rootCount == 0, root.role.invalid { freePage(root) }
    }

    /// Brings the current root's unsync pages back in sync (`kvm_mmu_sync_roots`).
    func syncRoots(_ context: Context) {
        guard let root = context.root, !root.role.direct else { return }
        if root.isSpecialRoot {
            // kvm_mmu_sync_roots walks the four PAE entries: each child is a root.
            for child in specialRootChildren(root) where child.unsync || child.unsyncChildren > 0 {
                syncChildren(context, child, trace: nil)
            }
            return
        }
        if root.unsync || root.unsyncChildren > 0 { syncChildren(context, root, trace: nil) }
    }

    /// The guest flushed its TLB (`kvm_vcpu_flush_tlb_guest`): sync the current
    /// root and free cached roots that have unsync pages.
    public func flushGuestTLB(vcpu: Int) { flushGuestTLB(contexts[vcpu]) }

    func flushGuestTLB(_ context: Context) {
        statistics.guestTLBFlushes += 1
        guard !context.rootRole.direct else { return }
        syncRoots(context)
        for index in 0..<context.previousRoots.count {
            if let cached = context.previousRoots[index], cached.page.unsync || cached.page.unsyncChildren > 0 {
                context.previousRoots[index] = nil
                releaseRoot(context, cached.page)
            }
        }
    }
}
