import X86Paging

/// What the hypervisor did with a page fault the hardware raised on its
/// tables (KVM's `RET_PF_*`).
public enum FaultOutcome: Hashable, Sendable {
    /// sptes were built or updated: the vCPU re-enters and retries.
    case fixed
    /// Nothing needed changing (the fault came from state already fixed): retry.
    case spurious
    /// The guest's own tables deny the access: deliver #PF with this code.
    case injectPageFault(PageFaultErrorCode)
    /// The hypervisor performs the access itself at `gpa`: MMIO (`mmio`), or a
    /// write to a guest page table it write-protects (the caller writes guest
    /// memory and reports it with `trackWrite`).
    case emulate(gpa: UInt64, mmio: Bool)
    /// L1's own nested tables deny an L2 access: reflect the #NPF or EPT
    /// violation/misconfiguration to L1 (a nested VM exit).
    case reflectNestedFault(NestedFault)
}

/// How installing a leaf spte ended (`mmu_set_spte`).
enum SetSPTEResult {
    case fixed, spurious, writeProtected, mmio
}

extension ShadowMMU {
    /// Handles a page fault the hardware raised for `access` at `address` on
    /// `vcpu` (KVM's `kvm_mmu_page_fault` → `FNAME(page_fault)`): walk the
    /// guest's tables (setting their accessed/dirty flags as the hardware
    /// would), then either reflect the guest's fault, emulate, or build the
    /// shadow chain and the leaf spte.
    public func pageFault(vcpu: Int, address: UInt64, access: MemoryAccess, hardwareErrorCode: PageFaultErrorCode) -> FaultOutcome {
        statistics.exits += 1
        let context = contexts[vcpu]
        let registers = context.registers
        var walk = GuestWalk(guestMode: registers.mode)
        let gpa: UInt64
        var pageAccess = AccessRights.all
        var protectionKey = 0
        var dirty = true
        if registers.mode == .none {
            gpa = registers.linearAddress(address)
            walk.leafLevel = 6  // no guest level: every shadow level is direct
        } else {
            let result: WalkResult
            if events != nil {
                // Traced in full for the explanation; the per-level record is derived from the trace.
                var trace = WalkTrace()
                result = Walker.walk(address, access, registers: registers, memory: memory, tracer: &trace)
                for step in trace.steps { walk.record(step) }
                events?.append(.guestWalk(trace, mode: registers.mode))
            } else {
                result = Walker.walk(address, access, registers: registers, memory: memory, tracer: &walk)
            }
            switch result {
            case .pageFault(let code):
                events?.append(.note("the guest's own tables deny the access: #PF \(code) is injected into the guest"))
                statistics.guestFaultsInjected += 1
                return .injectPageFault(code)
            case .generalProtection:
                preconditionFailure("the machine checks canonical addresses before the hardware walk")
            case .translated(let translation):
                gpa = translation.physicalAddress
                pageAccess = walk.pageAccess
                protectionKey = context.rootRole.level >= 4 ? translation.protectionKey : 0
                dirty = translation.dirty
            }
        }
        let gfn = gpa >> 12
        let write = access.kind == .write
        guard let slot = memory.slot(for: gfn) else {
            makeMMUPagesAvailable()
            _ = fetch(context, address, walk: walk, gfn: gfn, slot: nil, access: pageAccess, protectionKey: 0, write: write)
            statistics.mmioExits += 1
            statistics.emulatedAccesses += 1
            return .emulate(gpa: gpa, mmio: true)
        }
        // A write the hardware saw as a protection fault on a write-tracked
        // guest table: emulate it; the sptes stay (`page_fault_handle_page_track`).
        if write, hardwareErrorCode.contains(.present), !hardwareErrorCode.contains(.reservedBit), writeTrack[gfn] != nil {
            clearFloodCounters(context, address)
            statistics.emulatedAccesses += 1
            return .emulate(gpa: gpa, mmio: false)
        }
        // A clean page is mapped read-only so that the first write faults and
        // the guest's dirty flag is set (`protect_clean_gpte`).
        if !dirty, !write { pageAccess.remove(.write) }
        if write, !pageAccess.contains(.write), registers.mode != .none, !registers.cr0.wp, access.mode != .user {
            // CR0.WP=0: a supervisor write to a read-only page is allowed. KVM keeps
            // the hardware's WP=1 and maps the page writable but supervisor-only
            // (and, with SMEP, not executable). With SMAP or protection keys that
            // would hide a user page from the checks a later supervisor access must
            // pass, so there we emulate the write instead.
            if pageAccess.contains(.user), registers.cr4.contains(.smap) || context.cpuRole.cr4PKE {
                statistics.emulatedAccesses += 1
                return .emulate(gpa: gpa, mmio: false)
            }
            pageAccess.insert(.write)
            pageAccess.remove(.user)
            if registers.cr4.contains(.smep) { pageAccess.remove(.execute) }
        }
        makeMMUPagesAvailable()
        let result = fetch(context, address, walk: walk, gfn: gfn, slot: slot, access: pageAccess, protectionKey: protectionKey, write: write)
        // Only a guest with CR0.WP=0 sees rules the hardware (always WP=1) does not share.
        if result == .fixed || result == .spurious, !registers.cr0.wp, hardwareRefuses(context, address, access) {
            // The sptes grant what the guest's tables grant, yet the hardware
            // would refuse: its forced state differs from the guest's (CR0.WP is
            // always 1 in hardware, so a protection key's write-disable binds a
            // supervisor write the guest's CR0.WP=0 lets through). Emulate.
            statistics.emulatedAccesses += 1
            return .emulate(gpa: gpa, mmio: false)
        }
        return outcome(of: result, gpa: gpa)
    }

    /// What the vCPU does after the leaf spte was (or was not) installed for
    /// the guest frame at `gpa`, counted: retry, or emulate the access — MMIO
    /// when no memslot holds the frame (an MMIO spte), a write when the frame
    /// stays write-protected.
    func outcome(of result: SetSPTEResult, gpa: UInt64) -> FaultOutcome {
        switch result {
        case .fixed:
            statistics.shadowFaultsFixed += 1
            return .fixed
        case .spurious:
            statistics.spuriousFaults += 1
            return .spurious
        case .mmio:
            statistics.mmioExits += 1
            statistics.emulatedAccesses += 1
            return .emulate(gpa: gpa, mmio: true)
        case .writeProtected:
            statistics.emulatedAccesses += 1
            return .emulate(gpa: gpa, mmio: false)
        }
    }

    /// Builds the shadow chain from the root down to the leaf for `address`
    /// (`FNAME(fetch)`): indirect pages for the guest's tables down to the
    /// guest's leaf level, direct pages below it (a guest huge page is mapped
    /// with 4 KiB sptes), then the leaf spte.
    func fetch(
        _ context: Context, _ address: UInt64, walk: GuestWalk, gfn: UInt64, slot: Memslot?,
        access: AccessRights, protectionKey: Int, write: Bool, goalLevel: Int = 1
    ) -> SetSPTEResult {
        guard var page = context.root else { preconditionFailure("fault on vCPU \(context.vcpu) with no root loaded") }
        // Shadow tables are indexed by the guest's linear address, TDP tables by the guest-physical one.
        let linear = context.tableIndex(address, tdp: mode.isTDP)
        var level = page.role.level
        while level > goalLevel {
            page.writeFloodingCount = 0
            let index = Int(linear >> UInt64(12 + 9 * (level - 1)) & 511)
            let sptep = page.spteAddress(index)
            let spte = SPTE(rawValue: host.entry(sptep))
            let childLevel = level - 1
            let indirect = childLevel >= walk.leafLevel
            if spte.isShadowPresent, spte.isLeaf(atLevel: level) {
                // A huge mapping where a table is now wanted (dirty logging maps 4 KiB pages).
                dropLeaf(page, index)
                flushRemoteTLBs()
            } else if spte.isShadowPresent, let existing = child(of: spte) {
                if repointStaleLocalPDPTE(context, page, level: level, sptep: sptep, linked: existing, walk: walk) {
                    // Unlinked: the shadow of the page directory L1 now names is linked below.
                } else if indirect || existing.role.access == access {
                    page = existing
                    level = childLevel
                    continue
                } else {
                    // A direct page built for other rights (the guest has since set
                    // D on its huge page): unlink it so a correct one is built
                    // (`validate_direct_spte`).
                    unlinkChild(existing, from: sptep)
                    flushRemoteTLBs()
                }
            }
            let child: ShadowPage
            if indirect {
                let role = childRole(of: page.role, address: linear, direct: false, access: walk.tableAccess(childLevel))
                child = shadowPage(context, gfn: walk.tableGFN[childLevel], role: role)
                // The guest may have made a not-present entry present without a
                // flush: sync before the page is used again.
                if child.unsyncChildren > 0 { syncChildren(context, child) }
            } else {
                let role = childRole(of: page.role, address: linear, direct: true, access: access)
                let span = UInt64(1) << UInt64(9 * childLevel)
                child = shadowPage(context, gfn: gfn & ~(span - 1), role: role)
            }
            link(page, index, to: child, context: context)
            page = child
            level = childLevel
        }
        page.writeFloodingCount = 0
        let index = Int(linear >> UInt64(12 + 9 * (level - 1)) & 511)
        let span = UInt64(1) << UInt64(9 * (level - 1))
        let existing = SPTE(rawValue: host.entry(page.spteAddress(index)))
        if level > 1, existing.isShadowPresent, !existing.isLeaf(atLevel: level) {
            // A table already sits where the huge page would go: map this 4 KiB page below it.
            return fetch(context, address, walk: walk, gfn: gfn, slot: slot, access: access, protectionKey: protectionKey, write: write, goalLevel: level - 1)
        }
        return setSPTE(context, page, index, gfn: gfn & ~(span - 1), slot: slot, access: access, protectionKey: protectionKey, write: write)
    }

    /// Installs the leaf spte (`mmu_set_spte`).
    func setSPTE(
        _ context: Context, _ page: ShadowPage, _ index: Int, gfn: UInt64, slot: Memslot?,
        access: AccessRights, protectionKey: Int, write: Bool
    ) -> SetSPTEResult {
        let sptep = page.spteAddress(index)
        let old = SPTE(rawValue: host.entry(sptep))
        guard let slot else {
            if old.isShadowPresent {
                dropLeaf(page, index)
                flushRemoteTLBs()
            }
            host.setEntry(sptep, SPTE.mmio(gfn: gfn, generation: memslotGeneration, format: spteFormat).rawValue)
            statistics.mmioSPTEsCreated += 1
            return .mmio
        }
        let frame = slot.hostFrame(of: gfn)
        var existing = false
        if old.isShadowPresent {
            if old.frame == frame {
                existing = true
            } else {
                dropLeaf(page, index)
                flushRemoteTLBs()
            }
        }
        let (new, writeProtected) = makeSPTE(
            gfn: gfn, frame: frame, access: access, protectionKey: protectionKey,
            oldWritable: existing && old.isWritable, synchronizing: false, large: page.role.level > 1)
        let hardwareBits = SPTE.accessed | SPTE.dirty
        if existing, new.rawValue & ~hardwareBits == old.rawValue & ~hardwareBits {
            return writeProtected && write ? .writeProtected : .spurious
        }
        host.setEntry(sptep, new.rawValue)
        events?.append(.spteWritten(level: page.role.level, index: index, address: sptep, old: old.rawValue, new: new.rawValue))
        if !existing {
            rmap[gfn, default: []].append(sptep)
            if !page.role.direct { page.leafGFNs[index] = gfn }  // indirect leaves are level 1
        } else if old.isWritable, !new.isWritable {
            flushRemoteTLBs()
        }
        return writeProtected && write ? .writeProtected : .fixed
    }

    /// The leaf spte for `access` (`make_spte`). Write access is granted only
    /// if the frame is not a guest page table the hypervisor must see writes
    /// to; a leaf table may instead go unsync. Returns whether write access
    /// was withheld for that reason.
    func makeSPTE(
        gfn: UInt64, frame: UInt64, access: AccessRights, protectionKey: Int, oldWritable: Bool, synchronizing: Bool,
        large: Bool = false
    ) -> (SPTE, Bool) {
        var access = access
        var writeProtected = false
        if access.contains(.write), !oldWritable, !mmuTryToUnsyncPages(gfn, synchronizing: synchronizing) {
            access.remove(.write)
            writeProtected = true
            events?.append(.writeProtected(gfn: gfn))
        }
        let writable = access.contains(.write)
        if writable { memory.markDirty(gfn) }
        let spte = SPTE.leaf(
            frame: frame, access: access, writable: writable, mmuWritable: writable, protectionKey: protectionKey, format: spteFormat,
            large: large)
        return (spte, writeProtected)
    }

    /// A second-stage fault of two-dimensional paging (an EPT violation or
    /// misconfiguration, or an #NPF) at guest-physical `gpa` (KVM's
    /// `kvm_tdp_page_fault` → `direct_map`): map the frame with full rights, or
    /// install an MMIO spte and emulate when no memslot holds it.
    public func tdpPageFault(vcpu: Int, gpa: UInt64, write: Bool) -> FaultOutcome {
        statistics.exits += 1
        let context = contexts[vcpu]
        var walk = GuestWalk(guestMode: .level4)
        walk.leafLevel = 6  // every level is direct
        let gfn = gpa >> 12
        let slot = memory.slot(for: gfn)
        if gpa >> UInt64(context.rootRole.level == 3 ? 32 : 12 + 9 * context.rootRole.level) != 0 {
            // Beyond what the TDP tables can map (a PAE-format table maps 4 GiB, a
            // 4-level one 256 TiB): emulate without an spte (KVM emulates directly a
            // gfn beyond the host's reach).
            statistics.mmioExits += 1
            statistics.emulatedAccesses += 1
            return .emulate(gpa: gpa, mmio: true)
        }
        makeMMUPagesAvailable()
        let goal = slot.map { hugePageLevel(gfn: gfn, slot: $0, rootLevel: context.rootRole.level) } ?? 1
        let result = fetch(context, gpa, walk: walk, gfn: gfn, slot: slot, access: .all, protectionKey: 0, write: write, goalLevel: goal)
        precondition(result != .writeProtected, "TDP tables never write-protect guest frames")
        return outcome(of: result, gpa: gpa)
    }

    /// The largest page that can map `gfn` (`kvm_mmu_max_mapping_level`): the
    /// memslot's backing is contiguous, so a 1 GiB or 2 MiB page whenever the
    /// aligned range lies wholly inside the slot — but 4 KiB pages while dirty
    /// logging, and at most 2 MiB under a PAE root.
    func hugePageLevel(gfn: UInt64, slot: Memslot, rootLevel: Int) -> Int {
        guard !memory.dirtyLogging else { return 1 }
        for level in stride(from: rootLevel == 3 ? 2 : 3, to: 1, by: -1) {
            let span = UInt64(1) << UInt64(9 * (level - 1))
            let base = gfn & ~(span - 1)
            if slot.contains(gfn: base), slot.contains(gfn: base + span - 1) { return level }
        }
        return 1
    }

    /// Whether the hardware, with the state the hypervisor loads at VM entry,
    /// would refuse `access` through the leaf spte now mapping `address`.
    func hardwareRefuses(_ context: Context, _ address: UInt64, _ access: MemoryAccess) -> Bool {
        guard let leaf = leafSPTE(context, address), leaf.isShadowPresent else { return false }
        var hardware = context.registers.withHardwareWriteProtect(longMode: context.rootRole.level >= 4)
        hardware.alignmentCheck = context.registers.alignmentCheck
        let rights = EffectiveRights(
            user: leaf.rawValue & SPTE.user != 0, writable: leaf.isWritable, executeDisable: leaf.rawValue & SPTE.executeDisable != 0)
        return !hardware.permissionViolations(rights, protectionKey: Int(leaf.rawValue >> 59 & 0xf), access).isEmpty
    }

    /// The spte that maps `address` at level 1, if the shadow path reaches one.
    func leafSPTE(_ context: Context, _ address: UInt64) -> SPTE? {
        let linear = context.tableIndex(address, tdp: mode.isTDP)
        var page = context.root
        while let current = page {
            let spte = SPTE(rawValue: host.entry(current.spteAddress(Int(linear >> UInt64(12 + 9 * (current.role.level - 1)) & 511))))
            if spte.isLeaf(atLevel: current.role.level) { return spte }
            page = spte.isShadowPresent ? child(of: spte) : nil
        }
        return nil
    }

    /// Resets the write-flooding counters of the pages on `address`'s shadow path.
    func clearFloodCounters(_ context: Context, _ address: UInt64) {
        let linear = context.tableIndex(address, tdp: mode.isTDP)
        var page = context.root
        while let current = page {
            current.writeFloodingCount = 0
            guard current.role.level > 1 else { break }
            let spte = SPTE(rawValue: host.entry(current.spteAddress(Int(linear >> UInt64(12 + 9 * (current.role.level - 1)) & 511))))
            page = spte.isShadowPresent ? child(of: spte) : nil
        }
    }
}
