import HostPlatform
import MMUEncoding
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
    /// The hypervisor cannot handle the fault: `KVM_RUN` returns -EFAULT to
    /// the VMM and the vCPU does not run on (only upstream's special roots,
    /// on an nPDPTE L1 made present after the root was loaded).
    case kvmRunFails
}

/// How installing a leaf spte ended (`mmu_set_spte`).
enum SetSPTEResult {
    case fixed, spurious, writeProtected, mmio
    /// The shadow walk had nowhere to start (an empty special PAE entry).
    case kvmRunFails
}

extension ShadowMMU {
    /// Handles a page fault the hardware raised for `access` at `address` on
    /// `vcpu` (KVM's `kvm_mmu_page_fault` → `FNAME(page_fault)`): walk the
    /// guest's tables (setting their accessed/dirty flags as the hardware
    /// would), then either reflect the guest's fault, emulate, or build the
    /// shadow chain and the leaf spte. `trace`, when given, records each step.
    public func pageFault(
        vcpu: Int, address: UInt64, access: MemoryAccess, hardwareErrorCode: PageFaultErrorCode, trace: MMUTrace? = nil
    ) -> FaultOutcome {
        statistics.exits += 1
        let context = contexts[vcpu]
        let registers = context.registers
        var fault = PageFault(
            context: context, address: address, access: access, errorCode: hardwareErrorCode,
            walk: GuestWalk(guestMode: registers.mode), trace: trace)
        if registers.mode == .none {
            fault.gpa = registers.linearAddress(address)
            fault.walk.leafLevel = 6  // no guest level: every shadow level is direct
        } else {
            let result: WalkResult
            if let trace {
                // Traced in full for the explanation; the per-level record is derived from the trace.
                var walkTrace = WalkTrace()
                result = Walker.walk(address, access, registers: walkRegisters(registers), memory: memory, tracer: &walkTrace)
                for step in walkTrace.steps { fault.walk.record(step) }
                trace.record(.guestWalk(walkTrace, mode: registers.mode))
            } else {
                result = Walker.walk(address, access, registers: walkRegisters(registers), memory: memory, tracer: &fault.walk)
            }
            switch result {
            case .pageFault(let code):
                trace?.record(.note("the guest's own tables deny the access: #PF \(code) is injected into the guest"))
                statistics.guestFaultsInjected += 1
                return .injectPageFault(code)
            case .generalProtection:
                preconditionFailure("the machine checks canonical addresses before the hardware walk")
            case .translated(let translation):
                fault.gpa = translation.physicalAddress
                fault.pageAccess = fault.walk.pageAccess
                fault.protectionKey = context.rootRole.level >= 4 ? translation.protectionKey : 0
                fault.dirty = translation.dirty
            }
        }
        fault.slot = memory.slot(for: fault.gfn)
        guard fault.slot != nil else { return handleNoSlotFault(&fault) }
        // A write the hardware saw as a protection fault on a write-tracked
        // guest table: emulate it; the sptes stay (`page_fault_handle_page_track`).
        if fault.write, hardwareErrorCode.contains(.present), !hardwareErrorCode.contains(.reservedBit), writeTrack[fault.gfn] != nil {
            clearFloodCounters(context, address)
            statistics.emulatedAccesses += 1
            return .emulate(gpa: fault.gpa, mmio: false)
        }
        // A clean page is mapped read-only so that the first write faults and
        // the guest's dirty flag is set (`protect_clean_gpte`).
        if !fault.dirty, !fault.write { fault.pageAccess.remove(.write) }
        if fault.write, !fault.pageAccess.contains(.write), registers.mode != .none, !registers.cr0.wp, !fault.user {
            // CR0.WP=0: a supervisor write to a read-only page is allowed. KVM keeps
            // the hardware's WP=1 and maps the page writable but supervisor-only
            // (and, with SMEP, not executable). With SMAP or protection keys that
            // hides a user page from the checks a later supervisor access must
            // pass. KVM does it anyway under SMAP (deviation cr0-wp-emulation-smap);
            // the fix, and protection keys (which KVM's shadow MMU does not offer),
            // emulate the write instead.
            let smapChecksLater = registers.cr4.contains(.smap) && fixed(.cr0WPEmulationSMAP)
            if fault.pageAccess.contains(.user), smapChecksLater || context.cpuRole.cr4PKE {
                statistics.emulatedAccesses += 1
                return .emulate(gpa: fault.gpa, mmio: false)
            }
            fault.accessBeforeWPEmulation = fault.pageAccess
            fault.pageAccess.insert(.write)
            fault.pageAccess.remove(.user)
            if registers.cr4.contains(.smep) { fault.pageAccess.remove(.execute) }
        }
        makeMMUPagesAvailable()
        let result = fetch(&fault)
        // Only a guest with CR0.WP=0 sees rules the hardware (always WP=1) does not share.
        if result == .fixed || result == .spurious, !registers.cr0.wp, hardwareRefuses(context, address, access) {
            // The sptes grant what the guest's tables grant, yet the hardware
            // would refuse: its forced state differs from the guest's (CR0.WP is
            // always 1 in hardware, so a protection key's write-disable binds a
            // supervisor write the guest's CR0.WP=0 lets through). Emulate.
            statistics.emulatedAccesses += 1
            return .emulate(gpa: fault.gpa, mmio: false)
        }
        return outcome(of: result, gpa: fault.gpa)
    }

    /// A fault on a frame no memslot holds (KVM's `kvm_handle_noslot_fault`),
    /// the step every fault path shares: build the shadow chain down to an
    /// MMIO spte, so that the next access there faults as MMIO at once, and
    /// emulate the access.
    func handleNoSlotFault(_ fault: inout PageFault) -> FaultOutcome {
        makeMMUPagesAvailable()
        return outcome(of: fetch(&fault), gpa: fault.gpa)
    }

    /// The registers KVM's guest walker judges `registers` by. In 32-bit paging
    /// MAXPHYADDR matters only to PSE-36 4 MiB pages, and KVM's walker treats
    /// every guest as if it were 36 (deviation pse36-limited-to-36-bits):
    /// bits 21:17 of a 4 MiB PDE reserved, bits 16:13 the address above 4 GiB.
    func walkRegisters(_ registers: ControlRegisters) -> ControlRegisters {
        guard registers.mode == .bits32, registers.maxPhysicalAddressBits > 36, !fixed(.pse36LimitedTo36Bits) else {
            return registers
        }
        var model = registers.model
        model.maxPhysicalAddressBits = 36
        return ControlRegisters(
            model: model, cr0: registers.cr0, cr3: registers.cr3, cr4: registers.cr4, efer: registers.efer, pkru: registers.pkru,
            alignmentCheck: registers.alignmentCheck, pdptes: registers.pdptes)
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
        case .kvmRunFails:
            return .kvmRunFails
        }
    }

    /// Builds the shadow chain from the root down to the leaf for `fault`
    /// (`FNAME(fetch)`): indirect pages for the guest's tables down to the
    /// guest's leaf level, direct pages below it (a guest huge page is mapped
    /// with 4 KiB sptes), then the leaf spte at `fault.goalLevel`.
    func fetch(_ fault: inout PageFault) -> SetSPTEResult {
        let context = fault.context
        guard context.root != nil else { preconditionFailure("fault on vCPU \(context.vcpu) with no root loaded") }
        // Shadow tables are indexed by the guest's linear address, TDP tables by the guest-physical one.
        let linear = context.tableIndex(fault.address, tdp: mode.isTDP)
        guard var page = shadowWalkStart(context, linear) else {
            fault.trace?.record(.note("the special root's PAE entry for this GiB is empty: FNAME(fetch) warns and KVM_RUN fails with EFAULT"))
            return .kvmRunFails
        }
        var level = page.role.level
        // The rights of the direct pages that map a guest huge page with 4 KiB sptes.
        var directAccess = regressed(.directRoleWithoutLeafRights) ? upperLevelRights(fault) : fault.pageAccess
        if regressed(.cr0WP0DirtyBitMissed), let guestRights = fault.accessBeforeWPEmulation { directAccess = guestRights }
        while level > fault.goalLevel {
            page.writeFloodingCount = 0
            let index = page.index(of: linear)
            let sptep = page.spteAddress(index)
            let spte = SPTE(rawValue: host.entry(sptep))
            let childLevel = level - 1
            let indirect = childLevel >= fault.walk.leafLevel
            if spte.isShadowPresent, spte.isLeaf(atLevel: level) {
                // A huge mapping where a table is now wanted (dirty logging maps 4 KiB pages).
                dropLeaf(page, index)
                flushRemoteTLBs()
            } else if spte.isShadowPresent, let existing = child(of: spte) {
                if repointStaleLocalPDPTE(fault, page, sptep: sptep, linked: existing) {
                    // Unlinked: the shadow of the page directory L1 now names is linked below.
                } else if indirect || existing.role.access == directAccess || regressed(.directSPAccessReused) {
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
                // Before b1bd5cba3306 every page of the chain got the rights of the whole walk (`gw->pt_access`).
                let inherited = regressed(.inheritedPermissionsOfWalk) ? fault.walk.tableAccess(fault.walk.leafLevel) : fault.walk.tableAccess(childLevel)
                let role = childRole(of: page.role, address: linear, direct: false, access: inherited)
                child = shadowPage(context, gfn: fault.walk.tableGFN[childLevel], role: role, trace: fault.trace)
                // The guest may have made a not-present entry present without a
                // flush: sync before the page is used again.
                if child.unsyncChildren > 0, !regressed(.linkWithoutSync) { syncChildren(context, child, trace: fault.trace) }
            } else {
                let role = childRole(of: page.role, address: linear, direct: true, access: directAccess)
                let span = UInt64(1) << UInt64(9 * childLevel)
                child = shadowPage(context, gfn: fault.gfn & ~(span - 1), role: role, trace: fault.trace)
            }
            link(page, index, to: child, context: context, trace: fault.trace)
            page = child
            level = childLevel
        }
        page.writeFloodingCount = 0
        let index = page.index(of: linear)
        let existing = SPTE(rawValue: host.entry(page.spteAddress(index)))
        if level > 1, existing.isShadowPresent, !existing.isLeaf(atLevel: level) {
            // A table already sits where the huge page would go: map this 4 KiB page below it.
            fault.goalLevel = level - 1
            return fetch(&fault)
        }
        return setSPTE(&fault, page, index)
    }

    /// Installs the leaf spte for `fault` at entry `index` of `page` (`mmu_set_spte`).
    func setSPTE(_ fault: inout PageFault, _ page: ShadowPage, _ index: Int) -> SetSPTEResult {
        let sptep = page.spteAddress(index)
        let old = SPTE(rawValue: host.entry(sptep))
        let span = UInt64(1) << UInt64(9 * (page.role.level - 1))
        let gfn = fault.gfn & ~(span - 1)
        guard let slot = fault.slot else {
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
        let new: SPTE
        (new, fault.writeProtected) = makeSPTE(
            gfn: gfn, frame: frame, access: fault.pageAccess, protectionKey: fault.protectionKey,
            oldWritable: existing && old.isWritable, synchronizing: false, large: page.role.level > 1, trace: fault.trace)
        let withheld = fault.writeProtected && fault.write
        let hardwareBits = SPTE.accessed | SPTE.dirty
        if existing, new.rawValue & ~hardwareBits == old.rawValue & ~hardwareBits {
            return withheld ? .writeProtected : .spurious
        }
        host.setEntry(sptep, new.rawValue)
        fault.trace?.record(.spteWritten(level: page.role.level, index: index, address: sptep, old: old.rawValue, new: new.rawValue))
        if !existing {
            rmap[gfn, default: []].append(sptep)
        } else if old.isWritable, !new.isWritable {
            flushRemoteTLBs()
        }
        return withheld ? .writeProtected : .fixed
    }

    /// The leaf spte for `access` (`make_spte`). Write access is granted only
    /// if the frame is not a guest page table the hypervisor must see writes
    /// to; a leaf table may instead go unsync. Returns whether write access
    /// was withheld for that reason. Shared by the fault path and sync
    /// (`synchronizing`), which has no fault: like KVM's `make_spte`, it takes
    /// the decided rights rather than the fault.
    func makeSPTE(
        gfn: UInt64, frame: UInt64, access: AccessRights, protectionKey: Int, oldWritable: Bool, synchronizing: Bool,
        large: Bool = false, trace: MMUTrace?
    ) -> (SPTE, Bool) {
        var access = access
        var writeProtected = false
        if access.contains(.write), !oldWritable, !mmuTryToUnsyncPages(gfn, synchronizing: synchronizing, trace: trace) {
            access.remove(.write)
            writeProtected = true
            trace?.record(.writeProtected(gfn: gfn))
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
    public func tdpPageFault(vcpu: Int, gpa: UInt64, write: Bool, trace: MMUTrace? = nil) -> FaultOutcome {
        statistics.exits += 1
        let context = contexts[vcpu]
        var walk = GuestWalk(guestMode: .level4)
        walk.leafLevel = 6  // every level is direct
        var fault = PageFault(
            context: context, address: gpa, access: MemoryAccess(write ? .write : .read), errorCode: PageFaultErrorCode(rawValue: 0),
            walk: walk, trace: trace)
        fault.gpa = gpa
        fault.slot = memory.slot(for: fault.gfn)
        if gpa >> UInt64(context.rootRole.level == 3 ? 32 : 12 + 9 * context.rootRole.level) != 0 {
            // Beyond what the TDP tables can map (a PAE-format table maps 4 GiB, a
            // 4-level one 256 TiB): emulate without an spte (KVM emulates directly a
            // gfn beyond the host's reach).
            statistics.mmioExits += 1
            statistics.emulatedAccesses += 1
            return .emulate(gpa: gpa, mmio: true)
        }
        guard let slot = fault.slot else { return handleNoSlotFault(&fault) }
        makeMMUPagesAvailable()
        fault.goalLevel = hugePageLevel(gfn: fault.gfn, slot: slot, rootLevel: context.rootRole.level)
        let result = fetch(&fault)
        precondition(result != .writeProtected, "TDP tables never write-protect guest frames")
        return outcome(of: result, gpa: gpa)
    }

    /// The largest page that can map `gfn` (`kvm_mmu_max_mapping_level`): the
    /// memslot's backing is contiguous, so a 1 GiB or 2 MiB page whenever the
    /// aligned range lies wholly inside the slot — but 4 KiB pages while dirty
    /// logging, and at most 2 MiB under a PAE root.
    func hugePageLevel(gfn: UInt64, slot: Memslot, rootLevel: Int) -> Int {
        guard !memory.dirtyLogging || regressed(.hugePageWhileDirtyLogging) else { return 1 }
        for level in stride(from: rootLevel == 3 ? 2 : 3, to: 1, by: -1) {
            let span = UInt64(1) << UInt64(9 * (level - 1))
            let base = gfn & ~(span - 1)
            if slot.contains(gfn: base), slot.contains(gfn: base + span - 1) { return level }
        }
        return 1
    }

    /// The rights of a direct page's role before 5fd5387c89ec: those of the
    /// entries above the guest's huge page (`gw->pt_access`), less write when
    /// the huge page is clean — the huge page's own entry left out.
    func upperLevelRights(_ fault: PageFault) -> AccessRights {
        var rights = fault.walk.tableAccess(fault.walk.leafLevel)
        if !fault.dirty, !fault.write { rights.remove(.write) }
        return rights
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
        var page = shadowWalkStart(context, linear)
        while let current = page {
            let spte = SPTE(rawValue: host.entry(current.spteAddress(current.index(of: linear))))
            if spte.isLeaf(atLevel: current.role.level) { return spte }
            page = spte.isShadowPresent ? child(of: spte) : nil
        }
        return nil
    }

    /// Resets the write-flooding counters of the pages on `address`'s shadow path.
    func clearFloodCounters(_ context: Context, _ address: UInt64) {
        let linear = context.tableIndex(address, tdp: mode.isTDP)
        var page = shadowWalkStart(context, linear)
        while let current = page {
            current.writeFloodingCount = 0
            guard current.role.level > 1 else { break }
            let spte = SPTE(rawValue: host.entry(current.spteAddress(current.index(of: linear))))
            page = spte.isShadowPresent ? child(of: spte) : nil
        }
    }
}
