/// The second stage of a two-dimensional walk: Intel EPT, or AMD NPT (the
/// host's own paging format, with nCR3 as its root, walked as user accesses).
public enum NestedPaging: Hashable, Sendable {
    case ept(EPTPointer, maxPhysicalAddressBits: Int)
    /// `host` holds the hypervisor's paging mode (CR0/CR4/EFER) and nCR3 in CR3.
    case npt(host: ControlRegisters)

    /// Translates a guest-physical address.
    @inlinable
    public func translate<Memory: PhysicalMemory, Tracer: WalkTracer>(
        _ gpa: UInt64, _ access: NestedAccess, memory: Memory, tracer: inout Tracer
    ) -> NestedTranslation {
        switch self {
        case .ept(let eptp, let bits):
            return EPTWalker.translate(gpa, access, eptp: eptp, memory: memory, maxPhysicalAddressBits: bits, tracer: &tracer)
        case .npt(let host):
            // Every NPT access is a user access; guest paging-structure accesses are writes.
            let kind = judgedKind(access)
            let stage: UInt64 = access.pagingStructure ? 1 << 33 : 1 << 32
            // Nested tables translate 32 (legacy modes), 48 (4-level) or 57 (5-level)
            // bits of guest-physical address: nothing above is mapped (not present).
            let width: UInt64 = host.mode == .level5 ? 57 : host.mode.isLongMode ? 48 : 32
            if gpa >> width != 0 {
                let code: UInt64 = (kind == .write ? 2 : 0) | 4 | (kind == .fetch && host.executeDisableEnabled ? 0x10 : 0)
                return .fault(NestedFault(guestPhysicalAddress: gpa, kind: .nestedPageFault(exitInfo1: code | stage)))
            }
            switch Walker.walkPhysical(gpa, MemoryAccess(kind, .user), registers: host, memory: memory, tracer: &tracer) {
            case .translated(let translation):
                return .translated(
                    hostPhysicalAddress: translation.physicalAddress, pageShift: translation.pageShift, writable: translation.rights.writable)
            case .pageFault(let code):
                return .fault(NestedFault(guestPhysicalAddress: gpa, kind: .nestedPageFault(exitInfo1: code.rawValue | stage)))
            case .generalProtection:
                // A physical walk has no canonical check; never taken.
                return .fault(NestedFault(guestPhysicalAddress: gpa, kind: .nestedPageFault(exitInfo1: 4 | stage)))
            }
        }
    }
}

/// The outcome of a two-dimensional walk.
public enum TwoDimensionalResult: Hashable, Sendable {
    /// `translation.physicalAddress` is the guest-physical address;
    /// `hostPhysicalAddress` where it lives; `nestedPageShift` the size of the
    /// second-stage page and `nestedWritable` whether it allows writes.
    case translated(Translation, hostPhysicalAddress: UInt64, nestedPageShift: Int, nestedWritable: Bool)
    /// The guest's own page fault.
    case guestPageFault(PageFaultErrorCode)
    /// A second-stage fault, on a guest paging-structure entry or on the final address.
    case nestedFault(NestedFault)
    case generalProtection
}

/// The two-dimensional walk of hardware with EPT or NPT (semantics reference
/// §11): every guest paging-structure access and the final guest-physical
/// address are translated through the second stage. Counts every memory
/// reference, so a cold walk of a 4-level guest over 4-level tables makes 24.
public enum TwoDimensionalWalker {
    @inlinable
    public static func walk<Memory: PhysicalMemory>(
        _ address: UInt64, _ access: MemoryAccess, guest registers: ControlRegisters, nested: NestedPaging,
        memory: Memory, guestMemorySize: UInt64, references: inout Int
    ) -> TwoDimensionalResult {
        let view = NestedGuestMemory(host: memory, nested: nested, size: guestMemorySize)
        defer { references += view.references }
        var trace = NoWalkTrace()
        return walk(address, access, guest: registers, through: view, tracer: &trace)
    }

    /// The same walk, recorded for explanations: the guest's own walk (its
    /// entries at guest-physical addresses) and every second-stage
    /// translation it needed, in order.
    public static func tracedWalk<Memory: PhysicalMemory>(
        _ address: UInt64, _ access: MemoryAccess, guest registers: ControlRegisters, nested: NestedPaging,
        memory: Memory, guestMemorySize: UInt64
    ) -> (result: TwoDimensionalResult, guest: WalkTrace, secondStage: [SecondStageTranslation], references: Int) {
        let view = NestedGuestMemory(host: memory, nested: nested, size: guestMemorySize)
        view.recorded = []
        var guestTrace = WalkTrace()
        let result = walk(address, access, guest: registers, through: view, tracer: &guestTrace)
        return (result, guestTrace, view.recorded ?? [], view.references)
    }

    /// The walk both entry points share: the guest's walk through `view`,
    /// then the second-stage translation of the final guest-physical address.
    @inlinable
    static func walk<Memory: PhysicalMemory, Tracer: WalkTracer>(
        _ address: UInt64, _ access: MemoryAccess, guest registers: ControlRegisters, through view: NestedGuestMemory<Memory>,
        tracer: inout Tracer
    ) -> TwoDimensionalResult {
        let guestResult = Walker.walk(address, access, registers: registers, memory: view, tracer: &tracer)
        if let fault = view.fault { return .nestedFault(fault) }
        switch guestResult {
        case .generalProtection:
            return .generalProtection
        case .pageFault(let code):
            return .guestPageFault(code)
        case .translated(let translation):
            switch view.translate(translation.physicalAddress, NestedAccess(access.kind)) {
            case .translated(let hpa, let shift, let writable):
                return .translated(translation, hostPhysicalAddress: hpa, nestedPageShift: shift, nestedWritable: writable)
            case .fault(let fault):
                return .nestedFault(fault)
            }
        }
    }
}

/// One second-stage translation a two-dimensional walk made: of a guest
/// paging-structure entry's address, or of the final guest-physical address.
public struct SecondStageTranslation: Hashable, Sendable {
    public var guestPhysicalAddress: UInt64
    public var pagingStructure: Bool
    public var result: NestedTranslation
    /// Memory references of this translation (entries of the second-stage tables).
    public var references: Int

    @inlinable
    public init(guestPhysicalAddress: UInt64, pagingStructure: Bool, result: NestedTranslation, references: Int) {
        self.guestPhysicalAddress = guestPhysicalAddress
        self.pagingStructure = pagingStructure
        self.result = result
        self.references = references
    }
}

/// Guest-physical memory as a two-dimensional walk sees it: each load or
/// store of a guest paging-structure entry is first translated through the
/// second stage. The first second-stage fault stops the walk (the entry reads
/// as not present) and is kept in `fault`. An entry the second stage places
/// outside `host` memory reads as not present (as one outside guest memory
/// does); stores there are dropped.
///
/// Also the view through which an Intel CPU loads a nested guest's PDPTE
/// registers at MOV CR3 under EPT (`loadsPDPTEs`): those loads are reads.
public final class NestedGuestMemory<Host: PhysicalMemory>: PhysicalMemory {
    @usableFromInline let host: Host
    @usableFromInline let nested: NestedPaging
    public let size: UInt64
    /// The first second-stage fault, which stopped the walk.
    public var fault: NestedFault? { firstFault }
    /// Memory references made through this view (entries read and their translations).
    public var references: Int { referenceCount }
    @usableFromInline var firstFault: NestedFault?
    @usableFromInline var referenceCount = 0
    /// When set, every second-stage translation of a paging-structure access is appended.
    @usableFromInline var recorded: [SecondStageTranslation]?
    /// Loads through this view are PDPTE register loads, not a walk's reads.
    @usableFromInline let loadsPDPTEs: Bool

    @inlinable
    public init(host: Host, nested: NestedPaging, size: UInt64, loadsPDPTEs: Bool = false) {
        self.host = host
        self.nested = nested
        self.size = size
        self.loadsPDPTEs = loadsPDPTEs
    }

    /// One second-stage translation, counted (and recorded when recording).
    @inlinable
    func translate(_ gpa: UInt64, _ access: NestedAccess) -> NestedTranslation {
        var tracer = ReferenceCounter()
        let result = nested.translate(gpa, access, memory: host, tracer: &tracer)
        referenceCount += tracer.references
        recorded?.append(SecondStageTranslation(
            guestPhysicalAddress: gpa, pagingStructure: access.pagingStructure, result: result, references: tracer.references))
        return result
    }

    @inlinable
    func hostAddress(_ gpa: UInt64, write: Bool) -> UInt64? {
        guard firstFault == nil else { return nil }
        let access = write ? NestedAccess(.write, pagingStructure: true) : loadsPDPTEs ? .pdpteRegisterLoad : NestedAccess(.read, pagingStructure: true)
        switch translate(gpa, access) {
        case .translated(let hpa, _, _): return hpa
        case .fault(let nestedFault):
            firstFault = nestedFault
            return nil
        }
    }

    @inlinable
    public func load(_ address: UInt64, width: Int) -> UInt64 {
        guard let hpa = hostAddress(address, write: false), host.contains(hpa, width: width) else { return 0 }
        referenceCount += 1
        return host.load(hpa, width: width)
    }

    @inlinable
    public func store(_ address: UInt64, width: Int, _ value: UInt64) {
        guard let hpa = hostAddress(address, write: true), host.contains(hpa, width: width) else { return }
        host.store(hpa, width: width, value)
    }
}

/// Counts the memory references of a walk.
@usableFromInline
struct ReferenceCounter: WalkTracer {
    @usableFromInline var references = 0
    @inlinable init() {}
    @inlinable mutating func record(_ step: WalkStep) {
        if case .memory = step.source { references += 1 }
    }
    @inlinable mutating func record(_ update: AccessedDirtyUpdate) {}
    @inlinable mutating func record(rights: EffectiveRights, violations: PermissionViolations) {}
}

extension NestedFault {
    /// The second-stage access that faulted, as the exit information tells it
    /// (EXITINFO1 bits 1, 4, 32–33; the EPT exit qualification's bits 0–2, 7–8);
    /// nil for an EPT misconfiguration, which does not say.
    public var faultingAccess: NestedAccess? {
        switch kind {
        case .nestedPageFault(let info):
            let kind: MemoryAccess.Kind = info & 0x10 != 0 ? .fetch : (info & 2 != 0 ? .write : .read)
            return NestedAccess(kind, pagingStructure: info & 1 << 33 != 0)
        case .eptViolation(let qualification):
            let kind: MemoryAccess.Kind = qualification & 4 != 0 ? .fetch : (qualification & 2 != 0 ? .write : .read)
            return NestedAccess(kind, pagingStructure: qualification & 1 << 7 != 0 && qualification & 1 << 8 == 0)
        case .eptMisconfiguration:
            return nil
        }
    }
}

extension NestedPaging {
    /// The kind of access the second stage judges `access` as: NPT treats
    /// accesses to the guest's paging structures as writes; EPT does when its
    /// accessed/dirty flags are on (it may set them).
    @inlinable
    public func judgedKind(_ access: NestedAccess) -> MemoryAccess.Kind {
        switch self {
        case .npt: access.pagingStructure ? .write : access.kind
        case .ept(let eptp, _): access.isReadWriteUnderEPT(accessedDirtyEnabled: eptp.accessedDirtyEnabled) ? .write : access.kind
        }
    }

    /// The paging-structure root this second stage starts from (nCR3's table, or the EPTP's).
    public var rootAddress: UInt64 {
        switch self {
        case .ept(let eptp, let bits): eptp.root(maxPhysicalAddressBits: bits)
        case .npt(let host): host.rootTableAddress
        }
    }
}
