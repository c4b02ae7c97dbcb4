import MMUEncoding
import X86Paging

extension ShadowMMU {
    /// Lets the guest write the leaf tables at `gfn` without trapping, if it
    /// may (`mmu_try_to_unsync_pages`): not when the frame is also an
    /// upper-level table (write-tracked), and not while the hypervisor is
    /// synchronizing (it must finish emulating the guest's flush first).
    func mmuTryToUnsyncPages(_ gfn: UInt64, synchronizing: Bool, trace: MMUTrace?) -> Bool {
        if writeTrack[gfn] != nil { return false }
        for page in shadowedPages(of: gfn) {
            if synchronizing { return false }
            if page.unsync { continue }
            precondition(page.role.level == 1, "only leaf tables go unsync")
            statistics.unsyncs += 1
            trace?.record(.unsynced(gfn: gfn))
            page.unsync = true
            for parent in page.parentSPTEs { markUnsync(parent) }
        }
        return true
    }

    /// Brings every unsync page under `parent` back in sync (`mmu_sync_children`):
    /// write-protect them first so the guest cannot write while they are read,
    /// then resynchronize each spte from the guest's current entries.
    func syncChildren(_ context: Context, _ parent: ShadowPage, trace: MMUTrace?) {
        var leaves: [ShadowPage] = []
        gatherUnsync(parent, into: &leaves)
        if parent.unsync, !leaves.contains(where: { $0 === parent }) { leaves.append(parent) }
        guard !leaves.isEmpty else { return }
        var flush = false
        for leaf in leaves where writeProtect(gfn: leaf.gfn) { flush = true }
        if flush, !regressed(.syncWriteProtectWithoutFlush) { flushRemoteTLBs() }
        for leaf in leaves where leaf.unsync && pageByFrame[leaf.frame] === leaf {
            leaf.unsync = false
            statistics.syncs += 1
            if !syncPage(context, leaf, trace: trace) { zapPage(leaf) }
        }
        pruneUnsyncBits(parent)
    }

    /// The unsync pages reachable from `page` through unsync-child bits.
    func gatherUnsync(_ page: ShadowPage, into leaves: inout [ShadowPage]) {
        guard page.unsyncChildren > 0, page.role.level > 1 else { return }
        for index in 0..<512 where page.hasUnsyncChild(index) {
            let spte = SPTE(rawValue: host.entry(page.spteAddress(index)))
            guard spte.isShadowPresent, let child = child(of: spte) else {
                page.clearUnsyncChild(index)
                continue
            }
            if child.unsync {
                if !leaves.contains(where: { $0 === child }) { leaves.append(child) }
            } else if child.unsyncChildren > 0 {
                gatherUnsync(child, into: &leaves)
            } else {
                page.clearUnsyncChild(index)
            }
        }
    }

    /// Clears unsync-child bits that no longer lead to an unsync page.
    func pruneUnsyncBits(_ page: ShadowPage) {
        guard page.unsyncChildren > 0, page.role.level > 1 else { return }
        for index in 0..<512 where page.hasUnsyncChild(index) {
            let spte = SPTE(rawValue: host.entry(page.spteAddress(index)))
            guard spte.isShadowPresent, let child = child(of: spte) else {
                page.clearUnsyncChild(index)
                continue
            }
            if child.unsync { continue }
            pruneUnsyncBits(child)
            if child.unsyncChildren == 0 { page.clearUnsyncChild(index) }
        }
    }

    /// Resynchronizes every spte of a leaf page (`kvm_sync_page`); false if the
    /// page cannot be synced and must be zapped.
    func syncPage(_ context: Context, _ page: ShadowPage, trace: MMUTrace?) -> Bool {
        guard !page.role.direct, page.role.level == 1 else { return false }
        var flush = false
        for index in 0..<512 where host.entry(page.spteAddress(index)) != 0 {
            if syncSPTE(context, page, index, trace: trace) { flush = true }
        }
        if flush { flushRemoteTLBs() }
        return true
    }

    /// Guest address of the entry that spte `index` of leaf page `page` shadows.
    func guestEntryAddress(_ page: ShadowPage, _ index: Int) -> UInt64 {
        page.role.hasFourByteGPTE
            ? page.gfn << 12 + UInt64((regressed(.syncIgnoresQuadrant) ? 0 : page.role.quadrant * 2048) + index * 4)
            : page.gfn << 12 + UInt64(index * 8)
    }

    /// Resynchronizes one spte of a leaf page from the guest entry it shadows
    /// (`FNAME(sync_spte)`). Returns whether a TLB flush is due.
    func syncSPTE(_ context: Context, _ page: ShadowPage, _ index: Int, trace: MMUTrace?) -> Bool {
        let sptep = page.spteAddress(index)
        let spte = SPTE(rawValue: host.entry(sptep))
        guard spte.rawValue != 0 else { return false }
        let fourByte = page.role.hasFourByteGPTE
        let gpte = memory.load(guestEntryAddress(page, index), width: fourByte ? 4 : 8)
        // Not present, never accessed, or reserved bits: drop (`prefetch_invalid_gpte`).
        guard let leaf = guestLeaf(context, gpte, fourByte: fourByte) else {
            zapSPTE(page, index)
            return true
        }
        let gfn = leaf.gfn
        if spte.isMMIO {
            if spte.mmioGFN == gfn, memory.slot(for: gfn) == nil { return false }
            host.setEntry(sptep, 0)
            return true
        }
        guard gfn == mappedGFN(page, index), let slot = memory.slot(for: gfn) else {
            zapSPTE(page, index)
            return true
        }
        var access = page.role.access.intersection(leaf.access)
        if !leaf.dirty { access.remove(.write) }
        let (new, _) = makeSPTE(
            gfn: gfn, frame: slot.hostFrame(of: gfn), access: access, protectionKey: leaf.protectionKey,
            oldWritable: spte.isWritable, synchronizing: true, trace: trace)
        let hardwareBits = SPTE.accessed | SPTE.dirty
        guard new.rawValue & ~hardwareBits != spte.rawValue & ~hardwareBits else { return false }
        host.setEntry(sptep, new.rawValue)
        return spte.isWritable && !new.isWritable || !spte.access(spteFormat).isSubset(of: new.access(spteFormat))
    }

    /// What a guest leaf entry (a 4 KiB page's) maps, as sync reads it; nil
    /// when it may not be prefetched: not present, never accessed, reserved
    /// bits (or, for EPT, a misconfiguration).
    func guestLeaf(_ context: Context, _ gpte: UInt64, fourByte: Bool) -> (gfn: UInt64, access: AccessRights, dirty: Bool, protectionKey: Int)? {
        if case .ept(let eptp, let bits) = context.nested {
            // The walker's rules for a 4 KiB EPT leaf (EPTWalker.translate): present,
            // not write-without-read, not execute-only, a valid memory type, no
            // reserved bit — and, with A/D flags on, accessed.
            let entry = EPTEntry(rawValue: gpte)
            let accessedDirty = eptp.accessedDirtyEnabled
            let writeWithoutRead = entry.contains(.write) && !entry.contains(.read)
            let executeOnly = gpte & 7 == EPTEntry.execute.rawValue
            guard entry.isPresent, !writeWithoutRead, !executeOnly, entry.memoryType != nil,
                  gpte & EPTWalker.reservedBits(level: 1, large: false, maxPhysicalAddressBits: bits) == 0,
                  !accessedDirty || entry.contains(.accessed)
            else { return nil }
            let dirty = !accessedDirty || entry.contains(.dirty)
            return (entry.frameAddress(maxPhysicalAddressBits: bits) >> 12, AccessRights(eptEntry: gpte), dirty, 0)
        }
        let registers = context.registers
        var reserved: UInt64 = 0
        if !fourByte {
            reserved = Walker.reservedBits(
                mode: registers.mode == .bits32 ? .pae : registers.mode, level: 1, large: false, model: registers.model,
                executeDisableEnabled: registers.executeDisableEnabled)
        }
        guard gpte & 1 != 0, gpte & 0x20 != 0, gpte & reserved == 0 || regressed(.syncSkipsReservedBits) else { return nil }
        let gfn = fourByte ? (gpte & 0xffff_f000) >> 12 : (gpte & bitRange(registers.maxPhysicalAddressBits - 1, 12)) >> 12
        // Protection keys are not part of nested tables.
        let key = context.rootRole.level >= 4 && context.nested == nil ? Int(gpte >> 59 & 0xf) : 0
        return (gfn, AccessRights(guestEntry: gpte, hasExecuteDisable: !fourByte), gpte & 0x40 != 0, key)
    }

    /// INVLPG (`kvm_mmu_invlpg`): in the current and cached roots, resync the
    /// sptes for `address` in unsync pages on its path.
    public func invalidatePage(vcpu: Int, address: UInt64) {
        statistics.invlpgs += 1
        let context = contexts[vcpu]
        let registers = context.registers
        guard !mode.isTDP, registers.mode.isCanonical(address) else { return }
        let linear = registers.linearAddress(address)
        // The current root's walk starts where the MMU's own walks do (below a special root's PAE entry).
        for root in [shadowWalkStart(context, linear)].compactMap({ $0 }) + context.cachedRoots where !root.role.direct {
            var page = root
            while true {
                let index = page.index(of: linear)
                if page.unsync, syncSPTE(context, page, index, trace: nil) { flushRemoteTLBs() }
                guard page.unsyncChildren > 0, page.role.level > 1 else { break }
                let spte = SPTE(rawValue: host.entry(page.spteAddress(index)))
                guard spte.isShadowPresent, let next = child(of: spte) else { break }
                page = next
            }
        }
    }
}
