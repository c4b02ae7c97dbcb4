import X86Paging
import ScenarioLanguage
import ScenarioRuntime

/// Runs commands on a machine one at a time, as `ScenarioRunner` runs a file,
/// and writes each one down as scenario text.
///
/// A workload cannot be written as a file first and run afterwards: its guest
/// kernel decides what to do next from the result of the previous access (a
/// page fault runs the fault handler). The recorder executes each command as
/// the kernel issues it and returns the result; the text it keeps, with an
/// `expect` line after every access, is a scenario that replays the same run
/// and checks every result.
public final class ScenarioRecorder {
    public let machine: any GuestMachine
    public let configuration: MachineConfiguration
    public let mmu: MMUConfiguration
    /// Whether commands are written down (off when only the counters are wanted).
    public let recording: Bool
    /// Every command executed, in order (kept only while recording).
    @exclusivity(unchecked) public private(set) var actions: [Action] = []
    /// Commands executed (recorded or not), `expect` lines excluded.
    @exclusivity(unchecked) public private(set) var commandCount = 0
    @exclusivity(unchecked) public private(set) var accessCount = 0
    @exclusivity(unchecked) private var lines: [String] = []
    @exclusivity(unchecked) private var currentVCPU = 0

    /// A recorder over a fresh machine of `configuration` under `mmu`;
    /// `header` lines become comments at the top of the text.
    public convenience init(configuration: MachineConfiguration, mmu: MMUConfiguration, header: [String], recording: Bool) throws(ScenarioError) {
        let empty = Scenario(fileName: "workload", machine: configuration, mmu: mmu, commands: [])
        self.init(machine: try ScenarioRunner.makeMachine(for: empty), configuration: configuration, mmu: mmu, header: header, recording: recording)
    }

    /// A recorder over a given machine (tests wrap one to see how the guest kernel reacts).
    public init(machine: any GuestMachine, configuration: MachineConfiguration, mmu: MMUConfiguration, header: [String], recording: Bool) {
        self.machine = machine
        self.configuration = configuration
        self.mmu = mmu
        self.recording = recording
        guard recording else { return }
        lines = header.map { "# " + $0 }
        lines += [configuration.scenarioText, mmu.scenarioText]
    }

    /// The scenario written so far.
    public var text: String { lines.joined(separator: "\n") + "\n" }

    /// A comment line in the scenario (ignored when not recording).
    public func comment(_ text: @autoclosure () -> String) {
        if recording { lines.append("# " + text()) }
    }

    /// Executes one command and returns what it produced, if it is observable.
    @discardableResult
    public func perform(_ action: Action) -> Observation.Event? {
        commandCount += 1
        if recording {
            actions.append(action)
            lines.append(action.scenarioText)
        }
        let vcpu = currentVCPU
        switch action {
        case .selectVCPU(let index):
            currentVCPU = index
        case .access(let access):
            accessCount += 1
            let outcome = machine.access(vcpu: vcpu, access)
            if recording { lines.append(Self.expectation(for: access, outcome).scenarioText) }
            return .access(access, outcome)
        case .expect:
            commandCount -= 1  // an expectation is not a command; keep it in the text only
        default:
            return machine.perform(action, vcpu: vcpu)
        }
        return nil
    }

    /// Performs a read, write or fetch and writes an `expect` line for its result.
    public func access(_ command: AccessCommand) -> AccessOutcome {
        guard case .access(_, let outcome) = perform(.access(command)) else { fatalError("an access always has an outcome") }
        return outcome
    }

    /// A MOV to a control register; `false` when the architecture rejected it.
    public func writeRegister(_ name: RegisterName, _ value: UInt64) -> Bool {
        guard case .registerWrite(_, let accepted) = perform(.writeRegister(name, value)) else { return false }
        return accepted
    }

    /// The `expect` line that pins `outcome`: the gpa, and the value of a read.
    static func expectation(for access: AccessCommand, _ outcome: AccessOutcome) -> Action {
        switch outcome {
        case .ok(let gpa, let value): .expect(.ok(gpa: gpa, value: access.kind == .read ? value : nil))
        case .pageFault(let code): .expect(.fault(errorCode: code))
        case .generalProtection: .expect(.gp)
        case .nestedFault(let fault): .expect(.nestedFault(kind: fault.result, gpa: fault.guestPhysicalAddress, info: fault.information))
        }
    }
}
