import HostPlatform
import ShadowMMU
import X86Paging

/// Guest memory that remembers the stores made through it (an emulated
/// walk's accessed/dirty updates), so that the MMU can see them.
final class TrackedGuestMemory: PhysicalMemory {
    let base: GuestMemory
    var stores: [(UInt64, Int)] = []
    init(_ base: GuestMemory) { self.base = base }
    var size: UInt64 { base.size }
    func load(_ address: UInt64, width: Int) -> UInt64 { base.load(address, width: width) }
    func store(_ address: UInt64, width: Int, _ value: UInt64) {
        base.store(address, width: width, value)
        stores.append((address, width))
    }
}

/// The guest-visible end of one access.
public enum GuestAccessResult: Hashable, Sendable {
    /// Completed at guest physical address `gpa`; a read reports `value`.
    case completed(gpa: UInt64, value: UInt64?)
    /// A page fault delivered to the guest.
    case pageFault(PageFaultErrorCode)
    /// A #GP delivered to the guest (non-canonical address).
    case generalProtection
    /// An L2 access that L1's nested tables deny: a nested page fault or EPT
    /// violation/misconfiguration delivered to the L1 hypervisor.
    case nestedFault(NestedFault)
}

/// What happened inside one access, for explanations.
public enum HardwareEvent: Sendable {
    /// VM entry loaded this root (host frame, levels, local or not).
    case entry(rootFrame: UInt64, levels: Int, local: Bool)
    /// The hardware TLB held a usable translation.
    case tlbHit(hostAddress: UInt64)
    /// The hardware walked the hypervisor's tables.
    case walk(WalkTrace, mode: PagingMode)
    /// The walk faulted: an exit to the hypervisor, what it did step by step, and its outcome.
    case exit(errorCode: PageFaultErrorCode, outcome: FaultOutcome, steps: [MMUEvent])
    /// A two-dimensional walk, with the memory references it made.
    case twoDimensionalWalk(guest: WalkTrace, mode: PagingMode, secondStage: [SecondStageTranslation], references: Int)
    /// A second-stage fault: an exit to the hypervisor, and what it did.
    case nestedExit(NestedFault, outcome: FaultOutcome, steps: [MMUEvent])
}

extension VirtualMachine {
    /// The most exits one access may take before the machine declares that it
    /// never completes (a hypervisor bug, recorded in `violations`).
    static let exitLimit = 64

    /// Performs a read, write or fetch on `vcpu` until it completes or a fault
    /// is delivered to the guest. A write without `value` stores the bytes
    /// already there.
    public func access(vcpu index: Int, _ address: UInt64, _ access: MemoryAccess, width: Int, value: UInt64? = nil) -> GuestAccessResult {
        if emulatesSupervisorAccesses, access.mode != .user, !mmu.mode.isTDP, vcpus[index].l1Paging == nil {
            return emulateSupervisorAccess(index, address, access, width: width, value: value)
        }
        if let result = tlbHit(index, address, access, width: width, value: value) { return result }
        var events: [HardwareEvent]? = nil
        return perform(index, address, access, width: width, value: value, events: &events)
    }

    /// The common case under shadow paging, first: the vCPU is in the guest and
    /// its hardware TLB holds a translation the access may use. The hardware's
    /// paging mode accepts and truncates addresses exactly as the guest's does
    /// (a PAE root for guests without long mode), so its registers decide alone.
    @inline(__always)
    func tlbHit(_ index: Int, _ address: UInt64, _ access: MemoryAccess, width: Int, value: UInt64?) -> GuestAccessResult? {
        guard !mmu.mode.isTDP,
              let hpa = Unmanaged.passUnretained(vcpus[index])._withUnsafeGuaranteedRef({ hardwareTLBHit($0, address, access) })
        else { return nil }
        guard let gpa = memory.guestAddress(ofHost: hpa) else { return nil }
        counters.accesses += 1
        counters.hardwareTLBHits += 1
        return complete(access, gpa: gpa, hpa: hpa, width: width, value: value)
    }

    /// The host address a hit in `vcpu`'s hardware TLB gives `address`, if the
    /// entry there permits `access`. Nothing here calls out, so the vCPU is
    /// only borrowed: the hit costs no reference counting.
    @inline(__always)
    func hardwareTLBHit(_ vcpu: VCPU, _ address: UInt64, _ access: MemoryAccess) -> UInt64? {
        guard let hardware = vcpu.hardware, hardware.mode.isCanonical(address) else { return nil }
        let linear = hardware.linearAddress(address)
        guard let entry = vcpu.tlb.lookup(linear, pcid: 0), entry.permits(access, under: hardware) else { return nil }
        return entry.physicalAddress(of: linear)
    }

    /// `access`, recording every entry, walk and exit.
    public func tracedAccess(
        vcpu index: Int, _ address: UInt64, _ access: MemoryAccess, width: Int, value: UInt64? = nil
    ) -> (GuestAccessResult, [HardwareEvent]) {
        var events: [HardwareEvent]? = []
        let result = perform(index, address, access, width: width, value: value, events: &events)
        return (result, events ?? [])
    }

    func perform(
        _ index: Int, _ address: UInt64, _ access: MemoryAccess, width: Int, value: UInt64?, events: inout [HardwareEvent]?
    ) -> GuestAccessResult {
        counters.accesses += 1
        let vcpu = vcpus[index]
        let guest = vcpu.registers
        guard guest.mode.isCanonical(address) else {
            counters.guestGeneralProtectionFaults += 1
            return .generalProtection
        }
        let linear = guest.linearAddress(address)
        if mmu.mode.isTDP { return performTwoDimensional(vcpu, address, linear, access, width: width, value: value, events: &events) }
        for _ in 0..<Self.exitLimit {
            let hardware = enter(vcpu)
            if events != nil, let root = mmu.contexts[index].root {
                events?.append(.entry(rootFrame: root.frame, levels: root.role.level, local: root.isLocal))
            }
            switch translate(vcpu, hardware, linear, access, events: &events) {
            case .success(let hpa):
                guard let gpa = memory.guestAddress(ofHost: hpa) else {
                    violations.append("vCPU \(index) reached host address \(hpa.hex) at \(address.hex), outside guest memory")
                    return .pageFault(PageFaultErrorCode(rawValue: 0xffff))
                }
                return complete(access, gpa: gpa, hpa: hpa, width: width, value: value)
            case .fault(let code):
                let trace = events != nil ? MMUTrace() : nil
                let outcome = mmu.pageFault(vcpu: index, address: address, access: access, hardwareErrorCode: code, trace: trace)
                events?.append(.exit(errorCode: code, outcome: outcome, steps: trace?.events ?? []))
                // A PAE root's entries are loaded into PDPTE registers at entry, and
                // the fault may have filled one; other roots are read on every walk.
                if mmu.rootIsLatchedAtEntry(vcpu: index) { vcpu.requestReentry() }
                switch outcome {
                case .fixed, .spurious:
                    continue
                case .injectPageFault(let guestCode):
                    counters.guestPageFaults += 1
                    return .pageFault(guestCode)
                case .emulate(let gpa, let mmio):
                    return emulate(access, gpa: gpa, mmio: mmio, width: width, value: value)
                case .reflectNestedFault:
                    preconditionFailure("shadow paging has no L1")
                case .kvmRunFails:
                    return kvmRunFailed(index, address)
                }
            }
        }
        violations.append("vCPU \(index): the access at \(address.hex) did not complete after \(Self.exitLimit) exits")
        return .pageFault(PageFaultErrorCode(rawValue: 0xffff))
    }

    /// An access under two-dimensional paging: the hardware walks the guest's
    /// tables and translates every guest-physical address through the
    /// hypervisor's TDP tables; a guest page fault goes straight to the guest,
    /// a second-stage fault exits to the hypervisor.
    func performTwoDimensional(
        _ vcpu: VCPU, _ address: UInt64, _ linear: UInt64, _ access: MemoryAccess, width: Int, value: UInt64?,
        events: inout [HardwareEvent]?
    ) -> GuestAccessResult {
        let nestedSpace = vcpu.l1Paging != nil
        for _ in 0..<Self.exitLimit {
            let guest = enter(vcpu)
            // An L2's translations are not cached: each access walks (a CPU may always do so).
            if !nestedSpace, let entry = vcpu.tlb.lookup(linear, pcid: guest.pcid) {
                if entry.permits(access, under: guest) {
                    counters.hardwareTLBHits += 1
                    let hpa = entry.physicalAddress(of: linear)
                    events?.append(.tlbHit(hostAddress: hpa))
                    return finishTwoDimensional(access, hpa: hpa, width: width, value: value)
                }
                vcpu.tlb.drop(linear)
            }
            counters.hardwareWalks += 1
            vcpu.hardwareWalks += 1
            var references = 0
            let guestSpace = nestedSpace ? Self.l2PhysicalSpace : memory.size
            let result: TwoDimensionalResult
            if events != nil {
                // The same walk, recorded step by step for the explanation.
                let traced = TwoDimensionalWalker.tracedWalk(
                    address, access, guest: guest, nested: vcpu.nested!, memory: host, guestMemorySize: guestSpace)
                result = traced.result
                references = traced.references
                events?.append(.twoDimensionalWalk(guest: traced.guest, mode: guest.mode, secondStage: traced.secondStage, references: references))
            } else {
                result = TwoDimensionalWalker.walk(
                    address, access, guest: guest, nested: vcpu.nested!, memory: host, guestMemorySize: guestSpace, references: &references)
            }
            counters.walkReferences += references
            switch result {
            case .generalProtection:
                counters.guestGeneralProtectionFaults += 1
                return .generalProtection
            case .guestPageFault(let code):
                counters.guestPageFaults += 1
                return .pageFault(code)
            case .translated(var translation, let hpa, let nestedShift, let nestedWritable):
                if nestedSpace {
                    return finishNested(access, l2Address: translation.physicalAddress, hpa: hpa, width: width, value: value)
                }
                // The combined translation: the smaller page, and a write must walk
                // again (and meet the second stage) unless both stages allow it.
                translation.physicalAddress = hpa
                translation.dirty = translation.dirty && nestedWritable
                // A guest page fractured into smaller second-stage pages is not
                // cached: INVLPG must drop the whole guest page, which the TLB only
                // finds by the page size it was cached with.
                if nestedShift >= translation.pageShift { vcpu.tlb.insert(translation, pcid: guest.pcid) }
                return finishTwoDimensional(access, hpa: hpa, width: width, value: value)
            case .nestedFault(let fault) where nestedSpace:
                let faulting = fault.faultingAccess ?? NestedAccess(access.kind)
                let trace = events != nil ? MMUTrace() : nil
                let outcome = mmu.nestedPageFault(vcpu: vcpu.index, address: fault.guestPhysicalAddress, access: faulting, trace: trace)
                events?.append(.nestedExit(fault, outcome: outcome, steps: trace?.events ?? []))
                vcpu.requestReentry()
                switch outcome {
                case .fixed, .spurious:
                    continue
                case .reflectNestedFault(let l1Fault):
                    counters.nestedFaultsToL1 += 1
                    return .nestedFault(l1Fault)
                case .emulate:
                    return emulateNested(vcpu, address, access, width: width, value: value)
                case .injectPageFault(let code):
                    return .pageFault(code)
                case .kvmRunFails:
                    return kvmRunFailed(vcpu.index, address)
                }
            case .nestedFault(let fault):
                let write = switch fault.kind {
                case .eptViolation(let qualification): qualification & 2 != 0
                case .eptMisconfiguration: access.kind == .write
                case .nestedPageFault(let info): info & 2 != 0
                }
                let outcome = mmu.tdpPageFault(vcpu: vcpu.index, gpa: fault.guestPhysicalAddress, write: write)
                events?.append(.nestedExit(fault, outcome: outcome, steps: []))
                vcpu.requestReentry()
                switch outcome {
                case .fixed, .spurious:
                    continue
                case .emulate(let gpa, _):
                    return emulate(access, gpa: gpa, mmio: true, width: width, value: value)
                case .injectPageFault(let code):
                    return .pageFault(code)
                case .reflectNestedFault:
                    preconditionFailure("a TDP fault is never L1's")
                case .kvmRunFails:
                    return kvmRunFailed(vcpu.index, address)
                }
            }
        }
        violations.append("vCPU \(vcpu.index): the access at \(address.hex) did not complete after \(Self.exitLimit) exits")
        return .pageFault(PageFaultErrorCode(rawValue: 0xffff))
    }

    /// The hypervisor could not handle a fault of the access at `address`
    /// (`KVM_RUN` returned -EFAULT): the VMM would stop the VM. Recorded in
    /// `violations`, like every way an access can fail to complete.
    func kvmRunFailed(_ index: Int, _ address: UInt64) -> GuestAccessResult {
        violations.append("vCPU \(index): KVM_RUN fails with EFAULT on the access at \(address.hex): the special root's PAE entry for its GiB is empty")
        return .pageFault(PageFaultErrorCode(rawValue: 0xffff))
    }

    /// An L2 access the hardware translated: L2-physical `l2Address`, living at `hpa`.
    func finishNested(_ access: MemoryAccess, l2Address: UInt64, hpa: UInt64, width: Int, value: UInt64?) -> GuestAccessResult {
        guard let l1Address = memory.guestAddress(ofHost: hpa) else {
            violations.append("an L2 walk reached host address \(hpa.hex), outside guest memory")
            return .pageFault(PageFaultErrorCode(rawValue: 0xffff))
        }
        guard case .completed(_, let read) = complete(access, gpa: l1Address, hpa: hpa, width: width, value: value) else {
            preconditionFailure("a translated access completes")
        }
        return .completed(gpa: l2Address, value: read)
    }

    /// L0 performs an L2 access itself (its instruction emulator): the
    /// two-dimensional walk in software over L2's and L1's tables in guest
    /// memory, then the data access at the L1-physical address it reaches
    /// (MMIO there reads all ones and drops writes). Every store it makes —
    /// accessed/dirty flags and the data — is a guest write the MMU tracks.
    func emulateNested(_ vcpu: VCPU, _ address: UInt64, _ access: MemoryAccess, width: Int, value: UInt64?) -> GuestAccessResult {
        counters.nestedEmulations += 1
        let tracked = TrackedGuestMemory(memory)
        var references = 0
        let result = TwoDimensionalWalker.walk(
            address, access, guest: vcpu.registers, nested: vcpu.l1Paging!, memory: tracked, guestMemorySize: Self.l2PhysicalSpace,
            references: &references)
        for (gpa, width) in tracked.stores { mmu.trackWrite(gpa, width: width) }
        switch result {
        case .generalProtection:
            counters.guestGeneralProtectionFaults += 1
            return .generalProtection
        case .guestPageFault(let code):
            counters.guestPageFaults += 1
            return .pageFault(code)
        case .nestedFault(let fault):
            counters.nestedFaultsToL1 += 1
            return .nestedFault(fault)
        case .translated(let translation, let l1Address, _, _):
            switch access.kind {
            case .read:
                return .completed(gpa: translation.physicalAddress, value: memory.load(l1Address, width: width))
            case .write:
                if memory.contains(l1Address, width: width) {
                    memory.store(l1Address, width: width, value ?? memory.load(l1Address, width: width))
                    mmu.trackWrite(l1Address, width: width)
                }
                return .completed(gpa: translation.physicalAddress, value: nil)
            case .fetch:
                return .completed(gpa: translation.physicalAddress, value: nil)
            }
        }
    }

    func finishTwoDimensional(_ access: MemoryAccess, hpa: UInt64, width: Int, value: UInt64?) -> GuestAccessResult {
        guard let gpa = memory.guestAddress(ofHost: hpa) else {
            violations.append("a two-dimensional walk reached host address \(hpa.hex), outside guest memory")
            return .pageFault(PageFaultErrorCode(rawValue: 0xffff))
        }
        return complete(access, gpa: gpa, hpa: hpa, width: width, value: value)
    }

    enum HardwareTranslation {
        case success(UInt64)
        case fault(PageFaultErrorCode)
    }

    /// The paging hardware: TLB, else a walk of the loaded root in host memory.
    /// A cached translation is judged against the current hardware registers;
    /// one that fails (or a write through a clean entry) is dropped and the
    /// tables are walked again, as the CPU does before it faults.
    func translate(_ vcpu: VCPU, _ hardware: ControlRegisters, _ linear: UInt64, _ access: MemoryAccess, events: inout [HardwareEvent]?) -> HardwareTranslation {
        if let entry = vcpu.tlb.lookup(linear, pcid: 0) {
            if entry.permits(access, under: hardware) {
                counters.hardwareTLBHits += 1
                let hpa = entry.physicalAddress(of: linear)
                events?.append(.tlbHit(hostAddress: hpa))
                return .success(hpa)
            }
            vcpu.tlb.drop(linear)
        }
        counters.hardwareWalks += 1
        vcpu.hardwareWalks += 1
        let result: WalkResult
        if events != nil {
            var trace = WalkTrace()
            result = Walker.walk(linear, access, registers: hardware, memory: host, tracer: &trace)
            events?.append(.walk(trace, mode: hardware.mode))
        } else {
            result = Walker.walk(linear, access, registers: hardware, memory: host)
        }
        switch result {
        case .translated(let translation):
            vcpu.tlb.insert(translation, pcid: 0)
            return .success(translation.physicalAddress)
        case .pageFault(let code):
            return .fault(code)
        case .generalProtection:
            // The guest's canonical check came first; the hardware's mode is at least as wide.
            return .fault(PageFaultErrorCode(rawValue: 0))
        }
    }

    /// Moves the data of an access the hardware translated to `hpa`.
    @inline(__always)
    func complete(_ access: MemoryAccess, gpa: UInt64, hpa: UInt64, width: Int, value: UInt64?) -> GuestAccessResult {
        switch access.kind {
        case .read:
            return .completed(gpa: gpa, value: host.load(hpa, width: width))
        case .write:
            host.store(hpa, width: width, value ?? host.load(hpa, width: width))
            memory.noteWritten(gpa >> 12)
            return .completed(gpa: gpa, value: nil)
        case .fetch:
            return .completed(gpa: gpa, value: nil)
        }
    }

    /// The hypervisor performs the access (KVM's instruction emulation): MMIO
    /// reads return all ones and writes vanish; a write to a write-protected
    /// guest page table is made in guest memory and its shadows updated.
    /// A CPL-0 access of a host flavour that emulates a guest's supervisor
    /// code (``emulatesSupervisorAccesses``): KVM's software walk of the
    /// guest's tables with the guest's registers (accessed/dirty flags set in
    /// guest memory, as the walker of the fault path sets them), then the
    /// data access as the emulator does it. No spte is built or used, and no
    /// TLB entry.
    func emulateSupervisorAccess(_ index: Int, _ address: UInt64, _ access: MemoryAccess, width: Int, value: UInt64?) -> GuestAccessResult {
        counters.accesses += 1
        let guest = vcpus[index].registers
        guard guest.mode.isCanonical(address) else {
            counters.guestGeneralProtectionFaults += 1
            return .generalProtection
        }
        counters.emulatedSupervisorAccesses += 1
        var trace = WalkTrace()
        switch Walker.walk(address, access, registers: guest, memory: memory, tracer: &trace) {
        case .translated(let translation):
            let gpa = translation.physicalAddress
            return emulate(access, gpa: gpa, mmio: !memory.contains(gpa, width: width), width: width, value: value)
        case .pageFault(let code):
            counters.guestPageFaults += 1
            return .pageFault(code)
        case .generalProtection:
            counters.guestGeneralProtectionFaults += 1
            return .generalProtection
        }
    }

    func emulate(_ access: MemoryAccess, gpa: UInt64, mmio: Bool, width: Int, value: UInt64?) -> GuestAccessResult {
        switch access.kind {
        case .read:
            return .completed(gpa: gpa, value: memory.load(gpa, width: width))
        case .write:
            if !mmio {
                memory.store(gpa, width: width, value ?? memory.load(gpa, width: width))
                mmu.trackWrite(gpa, width: width)
            }
            return .completed(gpa: gpa, value: nil)
        case .fetch:
            return .completed(gpa: gpa, value: nil)
        }
    }
}
