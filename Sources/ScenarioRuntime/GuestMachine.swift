import KVMCatalogue
import ShadowMMU
import X86Paging
import ScenarioLanguage

/// The machine a scenario drives: guest memory, vCPUs and whatever MMU the
/// configuration puts between them. The runner is written against this
/// protocol; each `mmu` configuration supplies one conforming type.
public protocol GuestMachine: AnyObject {
    /// Performs a `read`/`write`/`fetch` on `vcpu` until it completes or a
    /// fault reaches the guest.
    func access(vcpu: Int, _ command: AccessCommand) -> AccessOutcome
    /// The same access, recording how the result was reached (for `explain`).
    func explainAccess(vcpu: Int, _ command: AccessCommand) -> AccessExplanation
    /// MOV CR*/WRMSR EFER/WRPKRU; `false` when the architecture rejects it (#GP).
    func writeRegister(vcpu: Int, _ register: RegisterName, _ value: UInt64) -> Bool
    func setAlignmentCheck(vcpu: Int, _ value: Bool)
    func invalidatePage(vcpu: Int, _ address: UInt64)
    func flush(vcpu: Int)
    /// The L1 hypervisor (re)enters L2 on `vcpu` (`nested …`).
    func enterNested(vcpu: Int, _ entry: NestedEntry)

    /// Loader write: bypasses every MMU hook.
    func poke(_ address: UInt64, width: Int, _ value: UInt64)
    /// A guest CPU store to guest physical memory through a mapping not under test.
    func store(_ address: UInt64, width: Int, _ value: UInt64)
    func peek(_ address: UInt64, width: Int) -> UInt64

    func zapAll()
    func invalidate(_ address: UInt64, size: UInt64)
    func setMaxShadowPages(_ count: Int)
    func startDirtyLog()
    func stopDirtyLog()
    /// Frames written since logging started or since the previous read, sorted;
    /// then the log starts afresh.
    func readDirtyLog() -> [UInt64]

    /// The architectural registers of `vcpu` (for explanations and checks).
    func registers(vcpu: Int) -> ControlRegisters
    /// Counters for `--stats`, in a stable order.
    var statistics: MachineStatistics { get }
    /// The hypervisor's current root of `vcpu` as the contract's tree, or
    /// `.null` when there is no hypervisor.
    func shadowRoot(vcpu: Int) -> JSONValue

    /// The hypervisor inside the machine, for the tools that look at it or
    /// configure it; nil when there is none (`mmu native`, a real VM).
    var hypervisor: (any HypervisorView)? { get }
    /// The second stage `vcpu`'s L1 hypervisor gives L2, once it entered L2.
    func l1Paging(vcpu: Int) -> NestedPaging?
}

/// What the tools above the runtime may see and set of the hypervisor in a
/// machine — the checker's audits, the matrix's root shapes, the drawings'
/// shadow tables — instead of reaching into the machine's type.
public protocol HypervisorView: AnyObject {
    /// The hypervisor's MMU: its roots, shadow pages and host memory.
    var mmu: ShadowMMU { get }
    /// The root `vcpu`'s hardware uses now (the nested root while it runs L2).
    func currentRoot(vcpu: Int) -> ShadowTableDump?
    /// When set, the MMU's audit runs after every command.
    var auditLevel: AuditLevel? { get set }
    /// What the audits found.
    var auditFailures: [String] { get }
    /// Known bugs switched back on, deviations fixed, and whether CPL-0 code
    /// is emulated (a PVM host).
    func configure(regressions: Set<Regression>, fixes: Set<Deviation>, emulatedSupervisor: Bool)
}

extension GuestMachine {
    public var hypervisor: (any HypervisorView)? { nil }
    public func l1Paging(vcpu: Int) -> NestedPaging? { nil }
}

extension GuestMachine {
    /// Performs one command on `vcpu` and returns what it produced when it is
    /// observable — the one dispatch from the scenario language to a machine.
    /// Selecting a vCPU and checking an `expect` are the caller's (no machine
    /// state); they return nil here.
    @discardableResult
    public func perform(_ action: Action, vcpu: Int) -> Observation.Event? {
        switch action {
        case .poke(let address, let value, let width): poke(address, width: width, value)
        case .store(let address, let value, let width): store(address, width: width, value)
        case .peek(let address, let width): return .peek(address: address, value: peek(address, width: width))
        case .hostZapAll: zapAll()
        case .hostInvalidate(let address, let size): invalidate(address, size: size)
        case .hostMaxShadowPages(let count): setMaxShadowPages(count)
        case .hostDirtyLog(.start): startDirtyLog()
        case .hostDirtyLog(.stop): stopDirtyLog()
        case .hostDirtyLog(.read): return .dirtyLog(gfns: readDirtyLog())
        case .writeRegister(let name, let value): return .registerWrite(name, accepted: writeRegister(vcpu: vcpu, name, value))
        case .setAlignmentCheck(let value): setAlignmentCheck(vcpu: vcpu, value)
        case .invlpg(let address): invalidatePage(vcpu: vcpu, address)
        case .flush: flush(vcpu: vcpu)
        case .access(let command): return .access(command, access(vcpu: vcpu, command))
        case .enterNested(let entry): enterNested(vcpu: vcpu, entry)
        case .selectVCPU, .expect: break
        }
        return nil
    }
}

extension AccessCommand {
    /// The access as the paging hardware judges it.
    public var memoryAccess: MemoryAccess {
        let kind: MemoryAccess.Kind = switch self.kind {
        case .read: .read
        case .write: .write
        case .fetch: .fetch
        }
        let mode: MemoryAccess.Mode = implicit ? .supervisorImplicit : (user ? .user : .supervisor)
        return MemoryAccess(kind, mode)
    }
}

extension NestedEntry {
    /// The second stage L1 gives L2 after this entry: the one it names, or for
    /// `nested flush` the one before (`previous`).
    public func paging(maxPhysicalAddressBits bits: Int, previous: NestedPaging?) -> NestedPaging? {
        secondStage?.nestedPaging(maxPhysicalAddressBits: bits) ?? previous
    }
}

extension NestedEntry.SecondStage {
    /// The architectural second stage L1 sets up: for NPT, L1's registers in
    /// its paging mode (an AMD CPU: nested PDPTEs are never latched) with
    /// nCR3; for EPT, the EPT pointer.
    public func nestedPaging(maxPhysicalAddressBits bits: Int) -> NestedPaging {
        switch self {
        case .ept(let eptp):
            return .ept(EPTPointer(rawValue: eptp), maxPhysicalAddressBits: bits)
        case .npt(let ncr3, let mode):
            let model = CPUModel(maxPhysicalAddressBits: bits, vendor: .amd, latchesPDPTEs: false)
            let (cr4, efer): (UInt64, UInt64) = switch mode {
            case .bits32: (CR4.pse.rawValue, 0)
            case .pae: (CR4.pae.rawValue, EFER.nxe.rawValue)
            case .level4: (CR4.pae.rawValue, EFER.lme.rawValue | EFER.lma.rawValue | EFER.nxe.rawValue)
            case .level5: (CR4.pae.rawValue | CR4.la57.rawValue, EFER.lme.rawValue | EFER.lma.rawValue | EFER.nxe.rawValue)
            }
            let cr0 = CR0.paging.rawValue | CR0.writeProtect.rawValue | CR0.protectionEnable.rawValue
            return .npt(host: ControlRegisters(model: model, cr0: CR0(rawValue: cr0), cr3: ncr3, cr4: CR4(rawValue: cr4), efer: EFER(rawValue: efer)))
        }
    }
}

extension RegisterName {
    public var controlRegister: ControlRegister {
        switch self {
        case .cr0: .cr0
        case .cr3: .cr3
        case .cr4: .cr4
        case .efer: .efer
        case .pkru: .pkru
        }
    }
}
