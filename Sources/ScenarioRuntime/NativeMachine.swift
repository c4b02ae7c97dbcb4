import X86Paging
import ScenarioLanguage

/// `mmu native`: no hypervisor. Each vCPU is an `ArchitecturalCPU` walking the
/// guest's own tables with its own TLB; this is the reference every other
/// configuration is compared with. Its dirty log is exact: every frame the
/// guest wrote, and nothing else.
public final class NativeMachine: GuestMachine {
    public let memory: LoggedMemory
    public let cpus: [ArchitecturalCPU]
    /// Per vCPU, once its L1 hypervisor entered L2: L1's second stage. The
    /// vCPU's registers are then L2's and each access is the architectural
    /// two-dimensional walk over L2's and L1's tables.
    @exclusivity(unchecked) public private(set) var l1Paging: [NestedPaging?]

    public func l1Paging(vcpu: Int) -> NestedPaging? { l1Paging[vcpu] }
    @exclusivity(unchecked) private var counters = Counters()

    struct Counters {
        var accesses = 0
        var pageFaults = 0
        var generalProtectionFaults = 0
        var rejectedRegisterWrites = 0
        var stores = 0
        var invlpgs = 0
        var flushes = 0
        var nestedFaults = 0
    }

    public init(configuration: MachineConfiguration, model: CPUModel? = nil) {
        memory = LoggedMemory(size: configuration.memorySize)
        let cpuModel = model ?? CPUModel(maxPhysicalAddressBits: configuration.maxPhysicalAddressBits)
        cpus = (0..<configuration.vcpuCount).map { _ in ArchitecturalCPU(model: cpuModel) }
        l1Paging = Array(repeating: nil, count: configuration.vcpuCount)
    }

    public func access(vcpu: Int, _ command: AccessCommand) -> AccessOutcome {
        counters.accesses += 1
        if let paging = l1Paging[vcpu] {
            let outcome = NestedReference.access(command, registers: cpus[vcpu].registers, paging: paging, memory: memory)
            count(outcome)
            return outcome
        }
        let outcome = complete(command, cpus[vcpu].translate(command.address, command.memoryAccess, memory: memory))
        count(outcome)
        return outcome
    }

    public func explainAccess(vcpu: Int, _ command: AccessCommand) -> AccessExplanation {
        let cpu = cpus[vcpu]
        let registers = cpu.registers
        counters.accesses += 1
        let traced = cpu.translateTraced(command.address, command.memoryAccess, memory: memory)
        var stages: [AccessExplanation.Stage] = []
        if registers.mode != .none, registers.mode.isCanonical(command.address) {
            if let entry = traced.tlbEntry {
                stages.append(.tlbHit(entry))
            } else if let entry = traced.droppedTLBEntry {
                let reason = command.kind == .write && !entry.dirty && registers.permissionViolations(
                    entry.rights, protectionKey: Int(entry.protectionKey), command.memoryAccess).isEmpty
                    ? "a write through a translation cached with D=0 must walk again to set D"
                    : "the cached rights do not allow this access, so the CPU walks again before faulting"
                stages.append(.tlbEntryDropped(entry, reason: reason))
            } else {
                stages.append(.tlbMiss)
            }
            if let walk = traced.walk {
                stages.append(.walk(title: "guest page tables", mode: registers.mode, trace: walk))
            }
        }
        let outcome = complete(command, traced.result)
        count(outcome)
        return AccessExplanation(vcpu: vcpu, command: command, registers: registers, stages: stages, outcome: outcome)
    }

    /// Moves the data of a translated access.
    private func complete(_ command: AccessCommand, _ translation: AccessTranslation) -> AccessOutcome {
        switch translation {
        case .physical(let gpa):
            switch command.kind {
            case .read:
                return .ok(gpa: gpa, value: memory.load(gpa, width: command.width))
            case .write:
                memory.store(gpa, width: command.width, command.value ?? memory.load(gpa, width: command.width))
                return .ok(gpa: gpa, value: nil)
            case .fetch:
                return .ok(gpa: gpa, value: nil)
            }
        case .pageFault(let code):
            return .pageFault(errorCode: code.rawValue)
        case .generalProtection:
            return .generalProtection
        }
    }

    private func count(_ outcome: AccessOutcome) {
        switch outcome {
        case .ok: break
        case .pageFault: counters.pageFaults += 1
        case .generalProtection: counters.generalProtectionFaults += 1
        case .nestedFault: counters.nestedFaults += 1
        }
    }

    public func writeRegister(vcpu: Int, _ register: RegisterName, _ value: UInt64) -> Bool {
        let accepted = if let paging = l1Paging[vcpu] {
            cpus[vcpu].write(register.controlRegister, value, memory: NestedGuestMemory(host: memory, nested: paging, size: NestedReference.l2PhysicalSpace, loadsPDPTEs: true)).isAccepted
        } else {
            cpus[vcpu].write(register.controlRegister, value, memory: memory).isAccepted
        }
        if !accepted { counters.rejectedRegisterWrites += 1 }
        return accepted
    }

    public func setAlignmentCheck(vcpu: Int, _ value: Bool) { cpus[vcpu].setAlignmentCheck(value) }

    public func invalidatePage(vcpu: Int, _ address: UInt64) {
        counters.invlpgs += 1
        cpus[vcpu].invalidatePage(address)
    }

    public func flush(vcpu: Int) {
        counters.flushes += 1
        cpus[vcpu].flush()
    }

    public func enterNested(vcpu: Int, _ entry: NestedEntry) {
        let bits = cpus[vcpu].registers.model.maxPhysicalAddressBits
        l1Paging[vcpu] = entry.paging(maxPhysicalAddressBits: bits, previous: l1Paging[vcpu])
    }

    public func poke(_ address: UInt64, width: Int, _ value: UInt64) { memory.backing.store(address, width: width, value) }

    public func store(_ address: UInt64, width: Int, _ value: UInt64) {
        counters.stores += 1
        memory.store(address, width: width, value)
    }

    public func peek(_ address: UInt64, width: Int) -> UInt64 { memory.load(address, width: width) }

    // Host events: there is no hypervisor, so only dirty logging has meaning.
    public func zapAll() {}
    public func invalidate(_ address: UInt64, size: UInt64) {}
    public func setMaxShadowPages(_ count: Int) {}
    public func startDirtyLog() { memory.startLogging() }
    public func stopDirtyLog() { memory.stopLogging() }
    public func readDirtyLog() -> [UInt64] { memory.takeWrittenFrames() }

    public func registers(vcpu: Int) -> ControlRegisters { cpus[vcpu].registers }

    public var statistics: MachineStatistics {
        let cpu: [(Counter, Int)] = [
            (.accesses, counters.accesses),
            (.guestPageFaults, counters.pageFaults),
            (.guestGPFaults, counters.generalProtectionFaults),
            (.rejectedRegisterWrites, counters.rejectedRegisterWrites),
            (.walks, cpus.reduce(0) { $0 + $1.walks }),
            (.tlbHits, cpus.reduce(0) { $0 + $1.tlb.hits }),
            (.tlbMisses, cpus.reduce(0) { $0 + $1.tlb.misses }),
            (.stores, counters.stores),
            (.invlpg, counters.invlpgs),
            (.flushes, counters.flushes),
            (.guestPagesBacked, memory.backing.allocatedPages),
            (.dirtyLogFalsePositives, 0),  // the CPU's own log is exact
        ]
        return MachineStatistics(cpu + (l1Paging.contains { $0 != nil } ? [(.nestedFaultsToL1, counters.nestedFaults)] : []))
    }

    public func shadowRoot(vcpu: Int) -> JSONValue { .null }
}
