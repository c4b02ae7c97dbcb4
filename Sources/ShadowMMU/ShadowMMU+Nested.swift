import MMUEncoding
import X86Paging

extension NestedPaging {
    /// Whether a nested leaf entry is dirty (always, for EPT without A/D flags).
    func isDirty(leaf entry: UInt64) -> Bool {
        switch self {
        case .npt: entry & 0x40 != 0
        case .ept(let eptp, _): !eptp.accessedDirtyEnabled || entry & EPTEntry.dirty.rawValue != 0
        }
    }
}

extension ShadowMMU {
    /// The TDP levels of L0's own hardware.
    var tdpLevels: Int { if case .tdp(_, let levels) = mode { levels } else { 4 } }

    /// An L1 hypervisor (re)enters L2 with nested paging `paging` (nested
    /// VMRUN with nCR3, or VM entry with an EPTP): L0 initialises the vCPU's
    /// nested context for L1's tables and switches to the root for them
    /// (`kvm_mmu_new_pgd`; a local root is rebuilt). `flush`: L1 asked for a
    /// TLB flush (TLB_CONTROL, INVEPT): unsync pages are synced.
    public func enterNested(vcpu: Int, paging: NestedPaging, flush: Bool) {
        let context: Context
        if let existing = nestedContexts[vcpu] {
            context = existing
        } else {
            context = Context(vcpu: vcpu, registers: ControlRegisters(model: CPUModel(maxPhysicalAddressBits: 52)), mode: mode)
            nestedContexts[vcpu] = context
        }
        let ept = if case .ept = paging { true } else { false }
        var cpuRole = CPURole(nested: paging)
        if regressed(.adDisabledNotInRole) { cpuRole.base.adDisabled = false }
        let rootRole = PageRole.nestedRoot(for: cpuRole, hostLevels: tdpLevels, ept: ept)
        if context.nested == nil || cpuRole != context.cpuRole || rootRole != context.rootRole {
            freeRoots(context, current: true, previous: true)
            context.cpuRole = cpuRole
            context.rootRole = rootRole
        }
        context.nested = paging
        if case .npt(let l1) = paging { context.registers = l1 }
        newPGD(context)
        if flush { flushGuestTLB(context) }
    }

    /// A second-stage fault while `vcpu` ran L2 on the shadow of L1's nested
    /// tables (`FNAME(page_fault)` of the nested MMU): walk L1's tables for
    /// the L2-physical `address` (setting their accessed/dirty flags), then
    /// reflect L1's own fault, emulate, or build the shadow chain and leaf.
    /// `trace`, when given, records each step.
    public func nestedPageFault(vcpu: Int, address: UInt64, access: NestedAccess, trace: MMUTrace? = nil) -> FaultOutcome {
        statistics.exits += 1
        statistics.nestedExits += 1
        guard let context = nestedContexts[vcpu], let paging = context.nested else {
            preconditionFailure("a nested fault on vCPU \(vcpu), which has not entered L2")
        }
        var fault = PageFault(
            context: context, address: address, access: MemoryAccess(paging.judgedKind(access)),
            errorCode: PageFaultErrorCode(rawValue: 0), walk: GuestWalk(nested: paging), trace: trace)
        let result: NestedTranslation
        if let trace {
            var walkTrace = WalkTrace()
            result = paging.translate(address, access, memory: memory, tracer: &walkTrace)
            for step in walkTrace.steps { fault.walk.record(step) }
            trace.record(.nestedWalk(walkTrace, paging: paging, address: address, access: access))
        } else {
            result = paging.translate(address, access, memory: memory, tracer: &fault.walk)
        }
        switch result {
        case .fault(let nestedFault):
            statistics.nestedFaultsReflected += 1
            trace?.record(.note("L1's own nested tables deny the access: the fault is reflected to L1"))
            if regressed(.eptQualificationRightsSwapped), case .eptViolation(let qualification) = nestedFault.kind {
                // The entry's rights in KVM's ACC_* order (exec, write, read) instead of EPT's (read, write, exec).
                let swapped = qualification & ~UInt64(0x28) | (qualification & 0x8) << 2 | (qualification & 0x20) >> 2
                return .reflectNestedFault(NestedFault(guestPhysicalAddress: nestedFault.guestPhysicalAddress, kind: .eptViolation(qualification: swapped)))
            }
            return .reflectNestedFault(nestedFault)
        case .translated(let l1Address, _, _):
            fault.gpa = l1Address
        }
        fault.pageAccess = fault.walk.pageAccess
        fault.slot = memory.slot(for: fault.gfn)
        guard fault.slot != nil else { return handleNoSlotFault(&fault) }
        if fault.write, writeTrack[fault.gfn] != nil {
            // A write to a frame L0 shadows as one of L1's nested tables — L2's
            // data, or L2's own page table (its accessed/dirty flags) living in
            // that frame. L0 emulates the access; unprotecting the frame instead
            // (`kvm_mmu_unprotect_page`) would livelock when the frame holds the
            // root's own table (a nested table that maps itself).
            statistics.emulatedAccesses += 1
            return .emulate(gpa: fault.gpa, mmio: false)
        }
        if freeSpecialRootForChangedNPDPTE(fault) { return .fixed }
        // A clean page maps read-only so that the first write sets L1's dirty flag.
        if !fault.write, !paging.isDirty(leaf: fault.walk.entries[fault.walk.leafLevel]) { fault.pageAccess.remove(.write) }
        makeMMUPagesAvailable()
        return outcome(of: fetch(&fault), gpa: fault.gpa)
    }
}
