import RealKVM
import ScenarioLanguage
import ScenarioRuntime
import X86Paging

/// A scenario's commands done by what a guest or a host really does, on a VM
/// on the host's /dev/kvm, behind the same `GuestMachine` interface as the
/// model's machines.
///
/// - `poke`/`peek` are host writes/reads of guest memory between steps.
/// - `read`/`write`/`fetch` are one guest instruction at CPL 0, or CPL 3
///   with `user`, run by the runner's dispatcher; its handlers report the
///   outcome.
/// - `cr0`/`cr3`/`cr4`/`efer`/`invlpg`/`flush`/`rflags.ac` are the guest's
///   own MOV CR, WRMSR, INVLPG, INVPCID (KVM's real intercept paths). Until
///   a vCPU's registers first describe 4-level paging, its register writes
///   are judged by the architecture alone and kept; then the vCPU enters
///   long mode directly with those registers (KVM_SET_SREGS).
/// - `store` is a guest store through the runner's direct map, so KVM's
///   write tracking sees it.
/// - Host events: dirty logging with KVM_MEM_LOG_DIRTY_PAGES and
///   KVM_GET_DIRTY_LOG, `host invalidate` as madvise(MADV_DONTNEED) of the
///   backing (KVM's MMU notifier), `host zap-all` as a memslot delete and
///   re-add, `host max-shadow-pages` as KVM_SET_NR_MMU_PAGES.
///
/// KVM cannot show the guest-physical address an access reached. The
/// witness names it from the outcomes the architecture allows (set by the
/// comparison before each access): the one whose data matches what a read
/// returned, or where a write's bytes landed; otherwise the first allowed
/// one, or all ones when the architecture allows no completion.
final class KVMWitness: GuestMachine {
    let kvm: KVMMachine
    /// Per vCPU: the registers before it entered long mode, and whether it has.
    private var pending: [ControlRegisters]
    private var started: [Bool]
    /// Guest-physical addresses of the runner's PML4 slots installed so far:
    /// the scenario sees 0 there.
    private(set) var runnerSlots: Set<UInt64> = []
    /// Allowed outcomes of the next access (set by the comparison).
    var candidates: [AccessOutcome] = []
    /// What went wrong on the KVM side, by the order it happened; the
    /// comparison reads it after each command.
    var problems: [String] = []
    /// Host flavours that explain an access's result, in order (the
    /// comparison reads them after each command).
    var flavours: [HostFlavour] = []
    private var alignmentCheck: [Bool]
    private let memorySize: UInt64

    init(_ scenario: Scenario, maxPhysicalAddressBits: Int, host: KVMHost) throws(KVMError) {
        let configuration = scenario.machine
        kvm = try KVMMachine(memorySize: configuration.memorySize, vcpuCount: configuration.vcpuCount, maxPhysicalAddressBits: maxPhysicalAddressBits, host: host)
        let model = CPUModel(maxPhysicalAddressBits: maxPhysicalAddressBits)
        pending = Array(repeating: ControlRegisters(model: model), count: configuration.vcpuCount)
        started = Array(repeating: false, count: configuration.vcpuCount)
        alignmentCheck = Array(repeating: false, count: configuration.vcpuCount)
        memorySize = configuration.memorySize
    }

    /// Why `command` cannot run on `vcpu` now, if it cannot.
    func notReady(vcpu: Int) -> String? {
        started[vcpu] ? nil : "vCPU \(vcpu) is not in 4-level paging yet (the runner enters long mode directly; the host's KVM runs 64-bit guests only)"
    }

    private func record(_ problem: String) { problems.append(problem) }

    // MARK: Accesses

    func access(vcpu: Int, _ command: AccessCommand) -> AccessOutcome {
        if let reason = notReady(vcpu: vcpu) {
            record(reason)
            return .generalProtection
        }
        let kind: AccessKind = switch command.kind {
        case .read: .read
        case .write: .write
        case .fetch: .fetch
        }
        let result: GuestOutcome
        do {
            result = try kvm.access(vcpu: vcpu, kind, gva: command.address, width: command.width, user: command.user, value: command.value, implicitSupervisor: command.implicit)
        } catch let error where command.kind == .fetch && "\(error)".contains("unexpected port I/O") {
            // The fetched instruction ran and was an OUT (the runner lets the
            // first instruction at the target execute): the fetch completed.
            return .ok(gpa: resolvedAddress(command, value: 0), value: nil)
        } catch {
            record("\(command.kind.rawValue) \(command.address.hex): \(error)")
            return .generalProtection
        }
        switch result {
        case .ok(let value):
            return .ok(gpa: resolvedAddress(command, value: value), value: command.kind == .read ? value : nil)
        case .pageFault(let errorCode, let cr2):
            if errorCode & 0x8 != 0, mapsOneGiBPage(command.address) { flavours.append(.noOneGiBPages) }
            if cr2 != command.address, command.kind != .fetch || cr2 >> 12 != command.address >> 12 {
                record("\(command.kind.rawValue) \(command.address.hex): #PF with CR2 \(cr2.hex)")
            }
            return .pageFault(errorCode: errorCode)
        case .generalProtection:
            return .generalProtection
        case .exception(let vector, let errorCode):
            record("\(command.kind.rawValue) \(command.address.hex): exception \(vector)" + (errorCode.map { " error code \($0.hex)" } ?? ""))
            return .generalProtection
        case .hung:
            record("\(command.kind.rawValue) \(command.address.hex): the guest did not report (hung)")
            return .generalProtection
        }
    }

    /// Whether the current 4-level tables of the guest map `address` with a
    /// 1 GiB page (a PDPTE with PS), which this host's KVM treats as reserved.
    private func mapsOneGiBPage(_ address: UInt64) -> Bool {
        let mask: UInt64 = 0x000f_ffff_ffff_f000
        guard let cr3 = try? kvm.registers(vcpu: 0).cr3 else { return false }
        let pml4e = peek((cr3 & mask) + ((address >> 39) & 0x1ff) * 8, width: 8)
        guard pml4e & 1 != 0, (pml4e & mask) < memorySize else { return false }
        let pdpte = peek((pml4e & mask) + ((address >> 30) & 0x1ff) * 8, width: 8)
        return pdpte & 0x81 == 0x81
    }

    /// The guest-physical address an access that completed reached, from the
    /// allowed outcomes: the first whose data agrees with what KVM did.
    private func resolvedAddress(_ command: AccessCommand, value: UInt64) -> UInt64 {
        let addresses = candidates.compactMap { outcome -> (UInt64, UInt64?)? in
            if case .ok(let gpa, let value) = outcome { return (gpa, value) }
            return nil
        }
        switch command.kind {
        case .read:
            if let match = addresses.first(where: { $0.1 == value }) { return match.0 }
        case .write:
            if let written = command.value,
               let match = addresses.first(where: { $0.0 < memorySize && kvm.read($0.0, width: command.width) == written }) {
                return match.0
            }
        case .fetch:
            break
        }
        return addresses.first?.0 ?? UInt64.max
    }

    func explainAccess(vcpu: Int, _ command: AccessCommand) -> AccessExplanation {
        let outcome = access(vcpu: vcpu, command)
        return AccessExplanation(vcpu: vcpu, command: command, registers: pending[vcpu], stages: [.note("run on the host's KVM")], outcome: outcome)
    }

    // MARK: Guest CPU state

    func writeRegister(vcpu: Int, _ register: RegisterName, _ value: UInt64) -> Bool {
        guard started[vcpu] else {
            guard case .accepted = pending[vcpu].write(register.controlRegister, value, memory: KVMMemory(kvm: kvm)) else { return false }
            let registers = pending[vcpu]
            if registers.mode == .level4 {
                do {
                    try kvm.start(vcpu: vcpu, cr0: registers.cr0.rawValue, cr3: registers.cr3, cr4: registers.cr4.rawValue, efer: registers.efer.rawValue)
                    started[vcpu] = true
                    noteRunnerSlot(cr3: registers.cr3)
                    if alignmentCheck[vcpu] { try kvm.setAlignmentCheck(vcpu: vcpu, true) }
                } catch {
                    record("entering long mode: \(error)")
                }
            }
            return true
        }
        do {
            let outcome: GuestOutcome = switch register {
            case .cr0: try kvm.writeControlRegister(vcpu: vcpu, .cr0, value)
            case .cr3: try kvm.writeControlRegister(vcpu: vcpu, .cr3, value)
            case .cr4: try kvm.writeControlRegister(vcpu: vcpu, .cr4, value)
            case .efer: try kvm.writeEFER(vcpu: vcpu, value)
            case .pkru: throw KVMError("WRPKRU: the host's KVM offers no PKU")
            }
            if register == .cr3, outcome == .ok(value: 0) { noteRunnerSlot(cr3: value) }
            switch outcome {
            case .ok: return true
            case .generalProtection: return false
            default:
                record("\(register.rawValue) \(value.hex): \(outcome)")
                return false
            }
        } catch {
            record("\(register.rawValue) \(value.hex): \(error)")
            return false
        }
    }

    private func noteRunnerSlot(cr3: UInt64) {
        if let slot = kvm.runnerSlot(forTopLevelTableAt: cr3) { runnerSlots.insert(slot.gpa) }
    }

    func setAlignmentCheck(vcpu: Int, _ value: Bool) {
        alignmentCheck[vcpu] = value
        guard started[vcpu] else { return }
        do { try kvm.setAlignmentCheck(vcpu: vcpu, value) } catch { record("rflags.ac: \(error)") }
    }

    func invalidatePage(vcpu: Int, _ address: UInt64) {
        guard started[vcpu] else { return }  // nothing is cached before paging
        expectOK("invlpg \(address.hex)") { () throws(KVMError) in try kvm.invlpg(vcpu: vcpu, address) }
    }

    func flush(vcpu: Int) {
        guard started[vcpu] else { return }
        expectOK("flush") { () throws(KVMError) in try kvm.flushAll(vcpu: vcpu) }
    }

    private func expectOK(_ what: String, _ body: () throws(KVMError) -> GuestOutcome) {
        do {
            let outcome = try body()
            if case .ok = outcome { return }
            record("\(what): \(outcome)")
        } catch {
            record("\(what): \(error)")
        }
    }

    func enterNested(vcpu: Int, _ entry: NestedEntry) { record("nested: not run on the host's KVM") }

    // MARK: Guest memory

    // KVMMachine's host accesses drop writes outside guest memory and read
    // all ones there, as the contract's unclaimed memory does.
    func poke(_ address: UInt64, width: Int, _ value: UInt64) { kvm.write(address, value, width: width) }

    func store(_ address: UInt64, width: Int, _ value: UInt64) {
        guard address < memorySize else { return }
        guard let vcpu = started.firstIndex(of: true) else {
            kvm.write(address, value, width: width)  // no vCPU runs yet: nothing is shadowed
            return
        }
        expectOK("store \(address.hex)") { () throws(KVMError) in try kvm.store(vcpu: vcpu, gpa: address, value: value, width: width) }
    }

    func peek(_ address: UInt64, width: Int) -> UInt64 {
        if runnerSlots.contains(address & ~7) { return 0 }
        return kvm.read(address, width: width)
    }

    // MARK: Host events

    func zapAll() {
        // A memslot change drops the slot's dirty bitmap: a host reads it first.
        if logging { loggedBeforeStop.formUnion(readDirtyLog()) }
        host("host zap-all") { () throws(KVMError) in try kvm.zapAll() }
        if logging { host("host dirty-log start (after the memslot change)") { () throws(KVMError) in try kvm.startDirtyLog() } }
    }
    func invalidate(_ address: UInt64, size: UInt64) {
        host("host invalidate") { () throws(KVMError) in try kvm.invalidate(gpa: address, size: size) }
    }
    func setMaxShadowPages(_ count: Int) {
        host("host max-shadow-pages") { () throws(KVMError) in try kvm.setMaxShadowPages(count) }
    }
    /// Frames KVM logged before `host dirty-log stop`, for the next read.
    private var loggedBeforeStop: Set<UInt64> = []
    private var logging = false

    func startDirtyLog() {
        host("host dirty-log start") { () throws(KVMError) in try kvm.startDirtyLog() }
        logging = true
    }
    func stopDirtyLog() {
        // KVM forgets its log with the flag: take it first, as a host would.
        loggedBeforeStop.formUnion(readDirtyLog())
        host("host dirty-log stop") { () throws(KVMError) in try kvm.stopDirtyLog() }
        logging = false
    }
    func readDirtyLog() -> [UInt64] {
        var frames = loggedBeforeStop
        loggedBeforeStop = []
        if logging {
            do { frames.formUnion(try kvm.readDirtyLog()) } catch { record("host dirty-log read: \(error)") }
        }
        return frames.sorted()
    }

    private func host(_ what: String, _ body: () throws(KVMError) -> Void) {
        do { try body() } catch { record("\(what): \(error)") }
    }

    // MARK: Inspection

    func registers(vcpu: Int) -> ControlRegisters { pending[vcpu] }
    var statistics: MachineStatistics { MachineStatistics() }
    func shadowRoot(vcpu: Int) -> JSONValue { .null }
}

/// KVM's guest memory as the architecture's physical memory, for the PDPTE
/// loads of register writes judged before a vCPU runs.
private struct KVMMemory: PhysicalMemory {
    let kvm: KVMMachine
    var size: UInt64 { kvm.memorySize }
    func load(_ address: UInt64, width: Int) -> UInt64 { kvm.read(address, width: width) }
    func store(_ address: UInt64, width: Int, _ value: UInt64) { kvm.write(address, value, width: width) }
}
