import ScenarioLanguage
import ScenarioRuntime
import X86Paging

/// A machine run command by command beside the architectural oracle: the
/// one loop the differential checker and `conform` share. Each step
/// performs a command on both, says what the machine produced, and
/// complains where the architecture does not allow it; the oracle follows
/// the machine's allowed choices, and says when it no longer can.
package final class Lockstep {
    package let machine: any GuestMachine
    let oracle: ArchitecturalOracle
    /// The vCPU the scenario's commands apply to now.
    package private(set) var vcpu = 0

    /// What one command did.
    package struct Step {
        /// The observable result, if the command has one.
        package var event: Observation.Event?
        /// Where the architecture differs, in words (no line number).
        package var complaint: String?
        /// False once the machine did what the architecture forbids and the
        /// oracle cannot follow it (an access it does not allow).
        package var oracleFollows = true
    }

    /// `model`: the CPU the architecture is judged for (MAXPHYADDR, vendor).
    package init(_ scenario: Scenario, machine: any GuestMachine, model: CPUModel) {
        self.machine = machine
        let pages = scenario.commands.compactMap { command -> UInt64? in
            switch command.action {
            case .access(let access): access.address & ~0xfff
            case .invlpg(let address): address & ~0xfff
            default: nil
            }
        }
        oracle = ArchitecturalOracle(configuration: scenario.machine, model: model, addresses: Array(Set(pages)).sorted())
    }

    /// The command on the machine alone (once the oracle has stopped following).
    package func performUnjudged(_ command: Command) -> Observation.Event? {
        if case .selectVCPU(let index) = command.action { vcpu = index }
        return machine.perform(command.action, vcpu: vcpu)
    }

    /// The command on the oracle and the machine. `before` is told, before
    /// an access, the outcomes the architecture allows it.
    package func step(_ command: Command, before: (AccessCommand, [AccessOutcome]) -> Void = { _, _ in }) -> Step {
        var step = Step()
        switch command.action {
        case .poke(let address, let value, let width):
            oracle.recordReachableTranslations()
            oracle.memory.backing.store(address, width: width, value)
        case .store(let address, let value, let width):
            oracle.recordReachableTranslations()
            oracle.memory.store(address, width: width, value)
        case .peek(let address, let width):
            let expected = oracle.memory.load(address, width: width)
            step.event = machine.perform(command.action, vcpu: vcpu)
            if case .peek(_, let actual)? = step.event, actual != expected {
                step.complaint = "peek \(address.hex): the reference holds \(expected.hex), this configuration \(actual.hex)"
            }
            return step
        case .hostDirtyLog(.start): oracle.memory.startLogging()
        case .hostDirtyLog(.stop): oracle.memory.stopLogging()
        case .hostDirtyLog(.read):
            let written = Set(oracle.memory.takeWrittenFrames())
            step.event = machine.perform(command.action, vcpu: vcpu)
            if case .dirtyLog(let gfns)? = step.event, !written.isSubset(of: gfns) {
                step.complaint = "the dirty log misses written frames \(written.subtracting(gfns).sorted().map(\.hex))"
            }
            return step
        case .writeRegister(let name, let value):
            let expected = oracle.write(vcpu: vcpu, name.controlRegister, value)
            step.event = machine.perform(command.action, vcpu: vcpu)
            if case .registerWrite(_, let actual)? = step.event, actual != expected {
                step.complaint = "\(name.rawValue) \(value.hex): the reference \(expected ? "accepts" : "rejects") it, this configuration \(actual ? "accepts" : "rejects") it"
            }
            return step
        case .setAlignmentCheck(let value): oracle.registers[vcpu].alignmentCheck = value
        case .invlpg(let address): oracle.invalidatePage(vcpu: vcpu, address)
        case .flush: oracle.flush(vcpu: vcpu)
        case .selectVCPU(let index): vcpu = index
        case .enterNested(let entry): oracle.enterNested(vcpu: vcpu, entry)
        case .access(let access) where oracle.l1Paging[vcpu] != nil:
            // L2 translations are walked afresh on every access by every
            // configuration here: one outcome, compared exactly.
            let expected = oracle.nestedAccess(vcpu: vcpu, access)
            before(access, [expected])
            let outcome = machine.access(vcpu: vcpu, access)
            step.event = .access(access, outcome)
            if outcome != expected {
                step.complaint = "\(access.kind.rawValue) \(access.address.hex) in L2: the architecture gives \(expected.summary); this configuration gave \(outcome.summary)"
                step.oracleFollows = false
            }
            return step
        case .access(let access):
            let verdict = oracle.judge(vcpu: vcpu, access)
            before(access, [verdict.fresh] + verdict.stale)
            let outcome = machine.access(vcpu: vcpu, access)
            step.event = .access(access, outcome)
            guard verdict.allows(outcome) else {
                let allowed = ([verdict.fresh] + verdict.stale).map(\.summary)
                step.complaint = "\(access.kind.rawValue) \(access.address.hex): the architecture allows \(Set(allowed).sorted().joined(separator: " | ")); this configuration gave \(outcome.summary)"
                step.oracleFollows = false
                return step
            }
            step.complaint = oracle.follow(vcpu: vcpu, access, outcome, verdict: verdict, peek: machine.peek)
            return step
        case .hostZapAll, .hostInvalidate, .hostMaxShadowPages, .expect:
            break
        }
        step.event = machine.perform(command.action, vcpu: vcpu)
        return step
    }
}
