import X86Paging
import ScenarioLanguage

/// How one access reached its result, stage by stage, for `shadowmmu explain`.
public struct AccessExplanation: Sendable {
    /// One stage of the access: the CPU's TLB look-up, a walk of some set of
    /// tables, a hypervisor action. Later MMU configurations add stages.
    public enum Stage: Sendable {
        /// The TLB held a usable translation for the page.
        case tlbHit(TLBEntry)
        /// The TLB held a translation the access could not use (permission
        /// failure or a write with D=0), so the CPU walked again.
        case tlbEntryDropped(TLBEntry, reason: String)
        case tlbMiss
        /// A walk of the tables named by `title` (e.g. "guest page tables").
        case walk(title: String, mode: PagingMode, trace: WalkTrace)
        /// The hypervisor's walk of an L1's nested tables for an L2-physical
        /// `address`, as the second-stage `access` it is (NPT: a user access;
        /// EPT: entries in EPT format, `mode` gives only the levels).
        case nestedWalk(title: String, mode: PagingMode, ept: Bool, address: UInt64, access: MemoryAccess, trace: WalkTrace)
        /// A step of the hypervisor or of the hardware running its tables
        /// (`mmu shadow`, `mmu tdp`, nested guests), with typed fields.
        case hypervisor(HypervisorStep)
        /// Free-form commentary from a stage that has no structure yet.
        case note(String)
    }

    /// What the hypervisor (or the hardware walking its tables) did: a VM
    /// entry, an exit, a shadow page found or created, an spte written, an
    /// unsync, a write-protection, a second-stage translation, the outcome.
    /// `explain` prints `text`; `explain --json` prints `action` and `fields`.
    public struct HypervisorStep: Sendable {
        /// `vm-entry`, `hardware-tlb-hit`, `exit`, `second-stage-fault`,
        /// `two-dimensional-walk`, `second-stage`, `page-found`,
        /// `page-created`, `spte-written`, `unsync`, `write-protect`,
        /// `outcome`, `decision`.
        public var action: String
        /// The step's facts, in order (addresses as hex strings).
        public var fields: [(String, JSONValue)]
        /// The sentence `explain` prints.
        public var text: String

        public init(_ action: String, _ fields: [(String, JSONValue)], text: String) {
            self.action = action
            self.fields = fields
            self.text = text
        }
    }

    public var vcpu: Int
    public var command: AccessCommand
    /// The registers when the access began.
    public var registers: ControlRegisters
    public var stages: [Stage]
    public var outcome: AccessOutcome

    public init(vcpu: Int, command: AccessCommand, registers: ControlRegisters, stages: [Stage], outcome: AccessOutcome) {
        self.vcpu = vcpu
        self.command = command
        self.registers = registers
        self.stages = stages
        self.outcome = outcome
    }
}
