import HostPlatform
import ShadowMMU
import X86Paging

/// A simulated machine running a guest under the shadow MMU: host memory,
/// guest memory in memslots, vCPUs whose paging hardware walks the roots the
/// hypervisor built, and the hypervisor's MMU, shared by every vCPU.
///
/// Every access runs until it completes or a fault is delivered to the guest;
/// faults the hypervisor handles (exits) are counted, not reported.
public final class VirtualMachine {
    public let host: HostMemory
    public let memory: GuestMemory
    public let mmu: ShadowMMU
    /// The host flavour of KVM with the PVM vendor module: CPL-0 code of a
    /// guest that is not PVM-aware is emulated instruction by instruction, so
    /// its accesses go through KVM's software walk of the guest's tables and
    /// never build or use sptes. Off by default (VT-x/AMD-V: the hardware
    /// walks the sptes at every CPL); `conform` turns it on to model a PVM host.
    @exclusivity(unchecked) public var emulatesSupervisorAccesses = false
    public let vcpus: [VCPU]
    /// The hardware the hypervisor runs on (its paging registers at VM entry).
    public let hostModel = CPUModel(maxPhysicalAddressBits: HostMemory.maxPhysicalAddressBits)
    /// The host's paging: on a 32-bit PAE host every root has three levels,
    /// which the MMU's roles already say (`mmu tdp` is then given 3 levels,
    /// and only guests with at most three run), so nothing here depends on it.
    public let hostPaging: HostPaging
    // Driven by one thread at a time: no dynamic exclusivity checks on the hot path.
    @exclusivity(unchecked) public internal(set) var counters = Counters()
    /// Things that must never happen (a guest reaching memory it does not own,
    /// an access that never completes); tests and the checker require none.
    public internal(set) var violations: [String] = []

    public struct Counters: Hashable, Sendable {
        public var accesses = 0
        public var guestPageFaults = 0
        public var guestGeneralProtectionFaults = 0
        public var rejectedRegisterWrites = 0
        public var stores = 0
        public var hardwareTLBHits = 0
        public var hardwareWalks = 0
        public var vmEntries = 0
        /// Memory references made by two-dimensional walks (TDP).
        public var walkReferences = 0
        /// L2 accesses that ended in a nested fault delivered to L1, and L2
        /// accesses L0 emulated in software.
        public var nestedFaultsToL1 = 0
        public var nestedEmulations = 0
        /// CPL-0 accesses emulated by the host flavour (``VirtualMachine/emulatesSupervisorAccesses``).
        public var emulatedSupervisorAccesses = 0
    }

    /// Raised for a machine that cannot exist.
    /// The guest CPU a configuration presents: under NPT the guest runs as on
    /// an AMD processor with nested paging (a PAE guest's PDPTEs are read from
    /// memory on every walk, never latched).
    public static func guestModel(maxPhysicalAddressBits: Int, mode: MMUMode) -> CPUModel {
        if case .tdp(.x86, _) = mode {
            return CPUModel(maxPhysicalAddressBits: maxPhysicalAddressBits, vendor: .amd, latchesPDPTEs: false)
        }
        return CPUModel(maxPhysicalAddressBits: maxPhysicalAddressBits)
    }

    public init(
        memorySize: UInt64, maxPhysicalAddressBits: Int = 52, vcpuCount: Int = 1, hostPaging: HostPaging = .bits64,
        mode: MMUMode = .shadow, rootDesign: RootDesign = .local
    ) {
        host = HostMemory()
        memory = GuestMemory(host: host, size: memorySize)
        let guestModel = Self.guestModel(maxPhysicalAddressBits: maxPhysicalAddressBits, mode: mode)
        self.hostPaging = hostPaging
        mmu = ShadowMMU(host: host, memory: memory, vcpuCount: vcpuCount, guestModel: guestModel, mode: mode, rootDesign: rootDesign)
        vcpus = (0..<vcpuCount).map { VCPU(index: $0, model: guestModel) }
        mmu.remoteFlush = { [unowned self] in
            for vcpu in vcpus {
                vcpu.tlb.flushAll()
                vcpu.requestReentry()
            }
        }
    }

    /// VM entry: make sure the MMU has a valid root for the vCPU and load it
    /// into the hardware (for a PAE root, read its four entries into the PDPTE
    /// registers, as the CPU does at entry).
    func enter(_ vcpu: VCPU) -> ControlRegisters {
        // Every event that changes or obsoletes the root (register writes, zaps,
        // fast zaps, remote flushes) requests a re-entry first.
        if let hardware = vcpu.hardware { return hardware }
        let root = vcpu.l1Paging != nil ? mmu.loadNestedRoot(vcpu: vcpu.index) : mmu.loadRoot(vcpu: vcpu.index)
        if let hardware = vcpu.hardware, vcpu.loadedRoot == root.serial { return hardware }
        counters.vmEntries += 1
        vcpu.entries += 1
        if vcpu.loadedRoot != root.serial { vcpu.tlb.flushAll() }
        let guest = vcpu.registers
        let level = root.role.level
        if case .tdp(let format, _) = mmu.mode {
            // The guest's own paging state runs on the hardware; the root is the second stage.
            // EPT accessed/dirty flags are on, as KVM enables them when the CPU has them (for the
            // shadow of an L1's EPT, exactly when L1 enables them: role.ad_disabled).
            vcpu.nested = format == .ept
                ? .ept(EPTPointer(root: root.frame << 12, levels: level, accessedDirty: !root.role.adDisabled), maxPhysicalAddressBits: hostModel.maxPhysicalAddressBits)
                : .npt(host: nptHostRegisters(root: root.frame << 12, levels: level))
            vcpu.hardware = guest
            vcpu.loadedRoot = root.serial
            return guest
        }
        guard let hardware = shadowHardwareRegisters(root: root, guest: guest) else {
            violations.append("VM entry: the PAE root at \((root.frame << 12).hex) holds an invalid PDPTE")
            return vcpu.hardware ?? guest
        }
        vcpu.hardware = hardware
        vcpu.loadedRoot = root.serial
        return hardware
    }

    /// The paging registers the hardware runs a shadow root with: the root's
    /// paging mode (PAE for a 3-level root, whose PDPTE registers are read
    /// from it now), CR0.WP=1, EFER.NX=1, and the guest's SMEP, SMAP, PKE and
    /// PKRU (without them when `guestProtections` is false, for audits). Nil
    /// when a PAE root holds an invalid PDPTE.
    func shadowHardwareRegisters(root: ShadowPage, guest: ControlRegisters, guestProtections: Bool = true) -> ControlRegisters? {
        let level = root.role.level
        var cr4 = CR4(rawValue: CR4.pae.rawValue)
        if guestProtections {
            cr4.rawValue |= guest.cr4.rawValue & (CR4.smep.rawValue | CR4.smap.rawValue)
            if level >= 4 { cr4.rawValue |= guest.cr4.rawValue & CR4.pke.rawValue }
        }
        if level == 5 { cr4.rawValue |= CR4.la57.rawValue }
        var efer = EFER.nxe.rawValue
        if level >= 4 { efer |= EFER.lme.rawValue | EFER.lma.rawValue }
        let cr3 = root.frame << 12
        var pdptes = PDPTERegisters()
        if level == 3 {
            guard let loaded = PDPTERegisters.load(cr3: cr3, memory: host, maxPhysicalAddressBits: hostModel.maxPhysicalAddressBits) else {
                return nil
            }
            pdptes = loaded
        }
        return ControlRegisters(
            model: hostModel, cr0: CR0(rawValue: CR0.paging.rawValue | CR0.writeProtect.rawValue | CR0.protectionEnable.rawValue),
            cr3: cr3, cr4: cr4, efer: EFER(rawValue: efer), pkru: guest.pkru, alignmentCheck: guest.alignmentCheck,
            pdptes: pdptes)
    }

    /// The hypervisor's own paging mode, which NPT tables use: 4- or 5-level,
    /// or PAE on a 32-bit host (nested PDPTEs are then read from memory on
    /// every walk, never latched).
    func nptHostRegisters(root: UInt64, levels: Int) -> ControlRegisters {
        let model = CPUModel(maxPhysicalAddressBits: hostModel.maxPhysicalAddressBits, vendor: .amd, latchesPDPTEs: false)
        let cr4: UInt64 = levels == 5 ? 0x1020 : 0x20
        let efer: UInt64 = levels >= 4 ? 0xd00 : 0x800
        return ControlRegisters(
            model: model, cr0: CR0(rawValue: 0x8001_0001), cr3: root, cr4: CR4(rawValue: cr4), efer: EFER(rawValue: efer))
    }

    // MARK: - Guest CPU state

    /// MOV CR*/WRMSR EFER/WRPKRU by the guest; false when the architecture rejects it.
    public func writeRegister(vcpu index: Int, _ register: ControlRegister, _ value: UInt64) -> Bool {
        let vcpu = vcpus[index]
        let old = vcpu.registers
        var new = old
        let outcome = if let l1Paging = vcpu.l1Paging {
            // An L2's PDPTEs load from L2-physical memory, through L1's nested tables.
            new.write(register, value, memory: NestedGuestMemory(host: memory, nested: l1Paging, size: Self.l2PhysicalSpace, loadsPDPTEs: true))
        } else {
            new.write(register, value, memory: memory)
        }
        guard case .accepted(let effects) = outcome else {
            counters.rejectedRegisterWrites += 1
            return false
        }
        vcpu.registers = new
        mmu.registersWritten(vcpu: index, register, value: value, old: old, new: new, effects: effects)
        if mmu.mode.isTDP {
            // The hardware runs the guest's paging itself: its TLB follows the architecture.
            if effects.contains(.flushAll) {
                vcpu.tlb.flushAll()
            } else if effects.contains(.flushNonGlobal) {
                vcpu.tlb.flushNonGlobal(pcid: new.pcid)
            }
        } else if register == .cr3 || !effects.isDisjoint(with: [.flushAll, .flushNonGlobal, .modeChanged]) {
            // KVM flushes the hardware's current context on these writes.
            vcpu.tlb.flushAll()
        }
        vcpu.requestReentry()
        return true
    }

    // MARK: - Nested virtualization

    /// L2-physical addresses span the whole physical-address width: only
    /// L1's nested tables say which are mapped.
    public static let l2PhysicalSpace: UInt64 = 1 << 52

    /// The L1 hypervisor (re)enters L2 on `vcpu` with second stage `paging`
    /// (VMRUN with nCR3 and L1's paging mode, or VM entry with an EPTP);
    /// `flush`: with a TLB flush request (TLB_CONTROL, or INVEPT before it).
    /// From here on the vCPU's registers and accesses are L2's.
    public func enterNested(vcpu index: Int, paging: NestedPaging, flush: Bool) {
        let vcpu = vcpus[index]
        vcpu.l1Paging = paging
        mmu.enterNested(vcpu: index, paging: paging, flush: flush)
        vcpu.tlb.flushAll()
        vcpu.requestReentry()
    }

    /// EFLAGS.AC.
    public func setAlignmentCheck(vcpu index: Int, _ value: Bool) {
        let vcpu = vcpus[index]
        vcpu.registers.alignmentCheck = value
        mmu.guestStateChanged(vcpu: index, vcpu.registers)
        vcpu.requestReentry()
    }

    /// INVLPG: KVM intercepts it under shadow paging, resyncs the address's
    /// unsync sptes and flushes it from the hardware TLB.
    public func invalidatePage(vcpu index: Int, _ address: UInt64) {
        let vcpu = vcpus[index]
        mmu.invalidatePage(vcpu: index, address: address)
        guard vcpu.registers.mode.isCanonical(address) else { return }
        vcpu.tlb.invalidatePage(vcpu.registers.linearAddress(address))
    }

    /// A full guest TLB flush (INVPCID all-contexts).
    public func flush(vcpu index: Int) {
        mmu.flushGuestTLB(vcpu: index)
        vcpus[index].tlb.flushAll()
    }

    // MARK: - Guest memory

    /// The loader's write: no hook, no dirty log.
    public func poke(_ gpa: UInt64, width: Int, _ value: UInt64) { memory.loaderWrite(gpa, width: width, value) }

    /// A guest store through a mapping not under test.
    public func store(_ gpa: UInt64, width: Int, _ value: UInt64) {
        counters.stores += 1
        if emulatesSupervisorAccesses {
            // The guest kernel's store is emulated: the write lands and the MMU
            // hears of it (kvm_page_track_write); an emulated write never
            // unsyncs a shadowed table, unlike a store through a writable spte.
            memory.store(gpa, width: width, value)
            mmu.trackWrite(gpa, width: width)
            return
        }
        if !mmu.guestStore(gpa, width: width, value) { memory.store(gpa, width: width, value) }
    }

    public func peek(_ gpa: UInt64, width: Int) -> UInt64 { memory.load(gpa, width: width) }
}
