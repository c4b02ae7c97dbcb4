import KVMCatalogue
import ShadowMMU
import X86Paging
import ScenarioLanguage

/// An `expect` line that did not hold.
public struct ExpectationFailure: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var expected: String
    public var actual: String

    public var description: String { "\(file):\(line): expectation failed: expected \(expected), got \(actual)" }
}

/// Executes a parsed scenario on the machine its `mmu` line asks for.
///
/// Construction is the single choke point for configurations: it throws a
/// `ScenarioError` (exit status 2, nothing executed) for a configuration this
/// version cannot run.
public final class ScenarioRunner {
    public let scenario: Scenario
    public let machine: any GuestMachine
    private var currentVCPU = 0
    private var lastObservation: Observation?
    /// Index of the next command to execute.
    private var next = 0

    /// `regressions`: known bugs to switch back on in the hypervisor's MMU;
    /// `fixes`: KVM's departures from the architecture to make architectural.
    /// `emulatedSupervisor`: model a host whose KVM emulates the guest's
    /// CPL-0 code (PVM; `VirtualMachine.emulatesSupervisorAccesses`).
    public init(
        _ scenario: Scenario, regressions: Set<Regression> = [], fixes: Set<Deviation> = [], emulatedSupervisor: Bool = false
    ) throws(ScenarioError) {
        self.scenario = scenario
        self.machine = try Self.makeMachine(for: scenario)
        machine.hypervisor?.configure(regressions: regressions, fixes: fixes, emulatedSupervisor: emulatedSupervisor)
    }

    package static func makeMachine(for scenario: Scenario) throws(ScenarioError) -> any GuestMachine {
        try checkNested(scenario)
        switch scenario.mmu {
        case .native:
            // An L2 under AMD nested paging runs on an AMD CPU (PDPTEs never latched).
            let amd = scenario.nestedFormat == .npt
            let model = CPUModel(maxPhysicalAddressBits: scenario.machine.maxPhysicalAddressBits, vendor: amd ? .amd : .intel, latchesPDPTEs: !amd)
            return NativeMachine(configuration: scenario.machine, model: model)
        case .shadow(let host, _), .tdp(_, _, let host, _):
            if host == .pae32, let line = scenario.commands.first(where: { $0.action.entersLongMode }) {
                throw ScenarioError(
                    file: scenario.fileName, line: line.line, column: 1,
                    message: "expected a guest a 32-bit PAE host can run (at most 3 paging levels), found an 'efer' write setting LME under '\(scenario.mmu)'")
            }
            if case .tdp = scenario.mmu, host == .pae32, scenario.machine.memorySize > 1 << 32 {
                throw ScenarioError(
                    file: scenario.fileName, line: max(scenario.mmuLine, 1), column: 1,
                    message: "expected at most 4G of guest memory under '\(scenario.mmu)' (3-level nested tables map 4 GiB), found memory=\(scenario.machine.memorySize >> 20)M")
            }
            return HypervisorMachine(
                configuration: scenario.machine, host: host, mode: HypervisorMachine.mode(for: scenario.mmu)!,
                rootDesign: HypervisorMachine.rootDesign(for: scenario.mmu))
        }
    }

    /// A nested scenario needs an L0 that can run its L1: TDP of the same
    /// vendor (L0 offers nested paging only with TDP of its own) and paging
    /// hardware with at least L1's levels.
    static func checkNested(_ scenario: Scenario) throws(ScenarioError) {
        var format: TDPFormat?
        for command in scenario.commands {
            guard case .enterNested(let entry) = command.action, let stage = entry.secondStage else { continue }
            func refuse(_ message: String) -> ScenarioError {
                ScenarioError(file: scenario.fileName, line: command.line, column: 1, message: message)
            }
            let (kind, levels): (TDPFormat, Int) = switch stage {
            case .npt(_, let mode): (.npt, mode.levels)
            case .ept(let eptp): (.ept, EPTPointer(rawValue: eptp).levels)
            }
            if let format, format != kind {
                throw refuse("expected 'nested \(format)' like the scenario's earlier nested lines, found 'nested \(kind)' (an L1 runs on an AMD or an Intel CPU, not both)")
            }
            format = kind
            switch scenario.mmu {
            case .native:
                break
            case .shadow:
                throw refuse("expected 'mmu tdp format=\(kind) …' for a nested scenario, found '\(scenario.mmu)' (L0 offers nested paging to L1 only when it uses TDP itself)")
            case .tdp(let l0Format, let l0Levels, let host, _):
                if l0Format != kind {
                    throw refuse("expected 'mmu tdp format=\(kind)' for an L1 using \(kind == .npt ? "AMD nested paging" : "Intel EPT"), found '\(scenario.mmu)'")
                }
                let hostLevels = host == .pae32 ? 3 : l0Levels
                let supported = kind == .npt ? (hostLevels == 3 ? 3 : hostLevels) : l0Levels
                if levels > supported {
                    throw refuse("expected an L1 whose nested tables have at most \(supported) levels under '\(scenario.mmu)', found \(levels) (the L0 host cannot offer them)")
                }
            }
        }
    }

    /// Runs every remaining command, reporting each observation and each failed
    /// expectation as it happens.
    public func run(
        observe: (Observation) -> Void = { _ in },
        expectationFailed: (ExpectationFailure) -> Void = { _ in }
    ) {
        while next < scenario.commands.count {
            step(observe: observe, expectationFailed: expectationFailed)
        }
    }

    /// Runs the commands before `line`, then explains the access on `line`
    /// (running it). Throws if line `line` holds no access.
    public func explain(line: Int) throws(ScenarioError) -> AccessExplanation {
        guard let index = scenario.commands.firstIndex(where: { $0.line == line }),
              case .access(let command) = scenario.commands[index].action
        else {
            throw ScenarioError(
                file: scenario.fileName, line: line, column: 1,
                message: "expected a read, write or fetch on line \(line), found \(describeLine(line))")
        }
        while next < index { step(observe: { _ in }, expectationFailed: { _ in }) }
        next = index + 1
        return machine.explainAccess(vcpu: currentVCPU, command)
    }

    private func describeLine(_ line: Int) -> String {
        guard let command = scenario.commands.first(where: { $0.line == line }) else {
            return "no command (a blank, comment or setup line, or past the end)"
        }
        return "'\(command.action.name)'"
    }

    /// Executes one command.
    public func step(observe: (Observation) -> Void, expectationFailed: (ExpectationFailure) -> Void) {
        let command = scenario.commands[next]
        next += 1
        let vcpu = currentVCPU
        func observed(_ event: Observation.Event) {
            let observation = Observation(line: command.line, vcpu: vcpu, event: event)
            lastObservation = observation
            observe(observation)
        }
        switch command.action {
        case .selectVCPU(let index):
            currentVCPU = index
        case .expect(let expectation):
            if let failure = check(expectation, line: command.line) { expectationFailed(failure) }
        default:
            if let event = machine.perform(command.action, vcpu: vcpu) { observed(event) }
        }
    }

    /// `nil` when `expectation` holds for the previous observation.
    func check(_ expectation: Expectation, line: Int) -> ExpectationFailure? {
        let actual = lastObservation.map(Self.summary) ?? "nothing"
        func failure(_ expected: String) -> ExpectationFailure {
            ExpectationFailure(file: scenario.fileName, line: line, expected: expected, actual: actual)
        }
        let event = lastObservation?.event
        switch expectation {
        case .ok(let gpa, let value):
            let expected = "ok" + (gpa.map { " gpa=\($0.hex)" } ?? "") + (value.map { " value=\($0.hex)" } ?? "")
            switch event {
            case .access(_, .ok(let actualGPA, let actualValue)):
                if let gpa, gpa != actualGPA { return failure(expected) }
                if let value, value != actualValue { return failure(expected) }
                return nil
            case .registerWrite(_, accepted: true), .peek, .dirtyLog:
                return gpa == nil && value == nil ? nil : failure(expected)
            default:
                return failure(expected)
            }
        case .fault(let code):
            let expected = "fault" + (code.map { " ec=\($0.hex)" } ?? "")
            if case .access(_, .pageFault(let actualCode)) = event, code == nil || code == actualCode { return nil }
            return failure(expected)
        case .gp:
            switch event {
            case .access(_, .generalProtection), .registerWrite(_, accepted: false): return nil
            default: return failure("gp")
            }
        case .nestedFault(let kind, let gpa, let info):
            let expected = kind.rawValue + (gpa.map { " gpa=\($0.hex)" } ?? "") + (info.map { " \(kind.expectationKey ?? "info")=\($0.hex)" } ?? "")
            guard case .access(_, .nestedFault(let fault)) = event, fault.result == kind,
                  gpa == nil || gpa == fault.guestPhysicalAddress, info == nil || info == fault.information
            else { return failure(expected) }
            return nil
        case .value(let value):
            switch event {
            case .peek(_, let actualValue) where actualValue == value: return nil
            case .access(_, .ok(_, let actualValue?)) where actualValue == value: return nil
            default: return failure("value=\(value.hex)")
            }
        }
    }

    static func summary(_ observation: Observation) -> String {
        switch observation.event {
        case .access(let command, let outcome): "\(command.kind.rawValue) → \(outcome.summary)"
        case .peek(_, let value): "peek → value=\(value.hex)"
        case .registerWrite(let name, let accepted): "\(name.rawValue) write → \(accepted ? "ok" : "gp")"
        case .dirtyLog(let gfns): "dirty-log → \(gfns.count) frames"
        }
    }

    /// `{"stats":{…}}`
    public var statisticsJSON: String {
        JSONValue.object([("stats", .object(machine.statistics.printed.map { ($0.name, .number($0.value)) }))]).encoded
    }

    /// `{"shadow":{"vcpu":N,"root":…}}` for every vCPU.
    public var shadowDumpJSON: [String] {
        (0..<scenario.machine.vcpuCount).map { vcpu in
            JSONValue.object([("shadow", .object([("vcpu", .number(vcpu)), ("root", machine.shadowRoot(vcpu: vcpu))]))]).encoded
        }
    }
}

extension Action {
    /// An EFER write that sets LME: the guest is headed for long mode.
    var entersLongMode: Bool {
        if case .writeRegister(.efer, let value) = self { return value & EFER.lme.rawValue != 0 }
        return false
    }
}
