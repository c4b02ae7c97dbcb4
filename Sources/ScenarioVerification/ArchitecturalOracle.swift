import X86Paging
import ScenarioLanguage
import ScenarioRuntime

/// The architecture as a judge rather than as one CPU: for every access it
/// knows the *set* of outcomes the architecture allows, and it follows the
/// choice the machine under test made.
///
/// A CPU may keep using a translation it cached until the guest invalidates
/// it (INVLPG, MOV CR3 for non-global translations, a flush, the CR4/EFER
/// writes that flush). So an access may complete through the current tables
/// (a walk, setting accessed/dirty flags) or through any translation that the
/// current tables gave for that page since its last invalidation on that vCPU
/// (no walk, no flags), judged against the registers of the moment; a cached
/// translation the access may not use can also fault (a "spurious" fault).
/// A CPU may also fill its TLB speculatively, from any translation the tables
/// give at any moment; so before each change to memory the oracle records,
/// for every linear page the scenario uses, the translation the tables give
/// then. When the guest invalidates after every change, exactly one outcome
/// remains.
final class ArchitecturalOracle {
    let memory: LoggedMemory
    var registers: [ControlRegisters]
    /// Translations each vCPU may still hold, by 4 KiB linear page.
    var cached: [[UInt64: [TLBEntry]]]
    /// The linear addresses the scenario accesses (the pages whose
    /// translations can matter).
    let addresses: [UInt64]
    /// Per vCPU, once its L1 entered L2: L1's second stage.
    var l1Paging: [NestedPaging?]

    init(configuration: MachineConfiguration, model: CPUModel, addresses: [UInt64]) {
        memory = LoggedMemory(size: configuration.memorySize)
        registers = Array(repeating: ControlRegisters(model: model), count: configuration.vcpuCount)
        cached = Array(repeating: [:], count: configuration.vcpuCount)
        self.addresses = addresses
        l1Paging = Array(repeating: nil, count: configuration.vcpuCount)
    }

    func enterNested(vcpu: Int, _ entry: NestedEntry) {
        let bits = registers[vcpu].model.maxPhysicalAddressBits
        l1Paging[vcpu] = entry.paging(maxPhysicalAddressBits: bits, previous: l1Paging[vcpu])
    }

    /// An L2 access, performed on the oracle's memory as the architecture does it.
    func nestedAccess(vcpu: Int, _ command: AccessCommand) -> AccessOutcome {
        NestedReference.access(command, registers: registers[vcpu], paging: l1Paging[vcpu]!, memory: memory)
    }

    /// Before memory changes: every translation the tables give now may be in
    /// some TLB afterwards (a speculative fill), until it is invalidated.
    func recordReachableTranslations() {
        for vcpu in registers.indices where registers[vcpu].mode != .none && l1Paging[vcpu] == nil {
            for address in addresses {
                if let translation = translation(vcpu: vcpu, address) { remember(vcpu: vcpu, translation) }
            }
        }
    }

    /// The translation the current tables give for `address`, whatever the
    /// permissions (which are judged when a cached translation is used).
    func translation(vcpu: Int, _ address: UInt64) -> Translation? {
        let registers = self.registers[vcpu]
        guard registers.mode.isCanonical(address) else { return nil }
        var trace = WalkTrace()
        switch Walker.walk(address, .read, registers: registers, memory: ScratchMemory(memory), tracer: &trace) {
        case .translated(let translation):
            return translation
        case .pageFault, .generalProtection:
            guard let rights = trace.rights, let leaf = trace.steps.last, case .page(let base, let shift) = leaf.decision else { return nil }
            let linear = registers.linearAddress(address)
            let key = registers.mode.isLongMode ? Int(leaf.entry >> 59 & 0xf) : 0
            return Translation(
                linearAddress: linear, physicalAddress: base | linear & ((1 << UInt64(shift)) - 1), pageShift: shift,
                rights: rights, protectionKey: key, global: registers.cr4.contains(.pge) && leaf.entry & 0x100 != 0,
                dirty: leaf.entry & 0x40 != 0, leafLevel: leaf.level)
        }
    }

    /// What an access may do.
    struct Verdict {
        /// The result of walking the current tables.
        var fresh: AccessOutcome
        /// Accessed/dirty flags that walk sets: (address, width, old, new).
        var updates: [AccessedDirtyUpdate]
        /// What the walk would cache.
        var translation: Translation?
        /// Results reachable through cached translations.
        var stale: [AccessOutcome]

        func allows(_ outcome: AccessOutcome) -> Bool { outcome == fresh || stale.contains(outcome) }
    }

    func judge(vcpu: Int, _ command: AccessCommand) -> Verdict {
        let registers = self.registers[vcpu]
        let access = command.memoryAccess
        guard registers.mode.isCanonical(command.address) else {
            return Verdict(fresh: .generalProtection, updates: [], translation: nil, stale: [])
        }
        let linear = registers.linearAddress(command.address)
        var trace = WalkTrace()
        let scratch = ScratchMemory(memory)
        var translation: Translation?
        let fresh: AccessOutcome
        switch Walker.walk(command.address, access, registers: registers, memory: scratch, tracer: &trace) {
        case .translated(let result):
            translation = result
            fresh = outcome(command, gpa: result.physicalAddress)
        case .pageFault(let code):
            fresh = .pageFault(errorCode: code.rawValue)
        case .generalProtection:
            fresh = .generalProtection
        }
        var stale: [AccessOutcome] = []
        if registers.mode != .none {
            for entry in cached[vcpu][linear >> 12] ?? [] where entry.global || Int(entry.pcid) == registers.pcid {
                let violations = registers.permissionViolations(entry.rights, protectionKey: Int(entry.protectionKey), access)
                if violations.isEmpty {
                    // A write through a clean cached translation must walk (to set D).
                    if access.kind == .write, !entry.dirty { continue }
                    stale.append(outcome(command, gpa: entry.physicalAddress(of: linear)))
                } else {
                    stale.append(.pageFault(errorCode: registers.permissionFaultCode(violations, access).rawValue))
                }
            }
        }
        return Verdict(fresh: fresh, updates: trace.updates, translation: translation, stale: stale)
    }

    func outcome(_ command: AccessCommand, gpa: UInt64) -> AccessOutcome {
        command.kind == .read ? .ok(gpa: gpa, value: memory.load(gpa, width: command.width)) : .ok(gpa: gpa, value: nil)
    }

    /// Records what the machine did (an allowed `outcome`), so the oracle's
    /// memory and caches follow it: the data it wrote, the accessed/dirty
    /// flags it set (read back from the machine with `peek`).
    /// Returns a complaint if the flags are not ones the access may set.
    func follow(
        vcpu: Int, _ command: AccessCommand, _ outcome: AccessOutcome, verdict: Verdict, peek: (UInt64, Int) -> UInt64
    ) -> String? {
        var complaint: String?
        let walked = outcome == verdict.fresh
        let usedCache = verdict.stale.contains(outcome)
        for update in verdict.updates {
            let now = peek(update.address, update.entrySize)
            let allowed = (walked ? [update.new] : []) + (usedCache || !walked ? [update.old] : [])
            if !allowed.contains(now) {
                complaint = "the entry at \(update.address.hex) holds \(now.hex) after the access; the architecture allows \(allowed.map(\.hex).joined(separator: " or "))"
            }
            if now != update.old { memory.store(update.address, width: update.entrySize, now) }
        }
        if case .ok(let gpa, _) = outcome, command.kind == .write {
            recordReachableTranslations()
            memory.store(gpa, width: command.width, command.value ?? memory.load(gpa, width: command.width))
        }
        if let translation = verdict.translation, registers[vcpu].mode != .none {
            remember(vcpu: vcpu, translation)
        }
        return complaint
    }

    func remember(vcpu: Int, _ translation: Translation) {
        let tlb = TLB(capacity: 1)
        tlb.insert(translation, pcid: registers[vcpu].pcid)
        guard let entry = tlb.lookup(translation.linearAddress, pcid: registers[vcpu].pcid) else { return }
        let page = translation.linearAddress >> 12
        var list = cached[vcpu][page] ?? []
        if !list.contains(entry) { list.append(entry) }
        cached[vcpu][page] = list
    }

    // MARK: - Invalidations

    func write(vcpu: Int, _ register: ControlRegister, _ value: UInt64) -> Bool {
        let result = if let paging = l1Paging[vcpu] {
            registers[vcpu].write(register, value, memory: NestedGuestMemory(host: memory, nested: paging, size: NestedReference.l2PhysicalSpace, loadsPDPTEs: true))
        } else {
            registers[vcpu].write(register, value, memory: memory)
        }
        guard case .accepted(let effects) = result else { return false }
        if effects.contains(.flushAll) {
            cached[vcpu] = [:]
        } else if effects.contains(.flushNonGlobal) {
            let pcid = registers[vcpu].pcid
            cached[vcpu] = cached[vcpu].compactMapValues { entries in
                let kept = entries.filter { $0.global || Int($0.pcid) != pcid }
                return kept.isEmpty ? nil : kept
            }
        }
        return true
    }

    /// INVLPG: every translation of the page for the current PCID, and global
    /// ones, whatever the page size.
    func invalidatePage(vcpu: Int, _ address: UInt64) {
        let registers = self.registers[vcpu]
        guard registers.mode != .none, registers.mode.isCanonical(address) else { return }
        let linear = registers.linearAddress(address)
        cached[vcpu] = cached[vcpu].compactMapValues { entries in
            let kept = entries.filter { entry in
                let covers = (entry.virtualPage << 12) >> UInt64(entry.pageShift) == linear >> UInt64(entry.pageShift)
                return !(covers && (entry.global || Int(entry.pcid) == registers.pcid))
            }
            return kept.isEmpty ? nil : kept
        }
    }

    func flush(vcpu: Int) { cached[vcpu] = [:] }
}

/// Guest memory seen through a walk that must not change it: loads read the
/// real memory, stores are dropped (the walk's trace records them).
final class ScratchMemory: PhysicalMemory {
    let base: LoggedMemory
    init(_ base: LoggedMemory) { self.base = base }
    var size: UInt64 { base.size }
    func load(_ address: UInt64, width: Int) -> UInt64 { base.load(address, width: width) }
    func store(_ address: UInt64, width: Int, _ value: UInt64) {}
}
