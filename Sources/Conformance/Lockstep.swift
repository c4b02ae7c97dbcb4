import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ShadowMMU
import X86Paging

/// One witness run command by command beside the architectural oracle: what
/// it produced at every observable line, and the first line where the
/// architecture does not allow what it produced (after which the oracle,
/// which can follow only allowed choices, no longer judges it).
struct Track {
    var events: [Int: Observation.Event] = [:]
    var departure: (line: Int, message: String)?

    /// Whether the architecture allowed the witness's result at `line`
    /// (nil: no longer judged, the witness departed earlier).
    func allowed(at line: Int) -> Bool? {
        guard let departure else { return true }
        if line < departure.line { return true }
        return line == departure.line ? false : nil
    }

    /// Runs `scenario` on `machine` beside an oracle of `model`. `before`
    /// is called before each access with the outcomes the architecture
    /// allows (the KVM witness uses them to name the guest-physical address
    /// it cannot observe).
    static func run(
        _ scenario: Scenario, on machine: any GuestMachine, model: CPUModel,
        before: (AccessCommand, [AccessOutcome]) -> Void = { _, _ in },
        after: (Int) -> Void = { _ in }
    ) -> Track {
        let addresses = scenario.commands.compactMap { command -> UInt64? in
            switch command.action {
            case .access(let access): access.address & ~0xfff
            case .invlpg(let address): address & ~0xfff
            default: nil
            }
        }
        let oracle = ArchitecturalOracle(configuration: scenario.machine, model: model, addresses: Array(Set(addresses)).sorted())
        var track = Track()
        var vcpu = 0
        func depart(_ line: Int, _ message: String) {
            if track.departure == nil { track.departure = (line, message) }
        }
        for command in scenario.commands {
            let line = command.line
            defer { after(line) }
            if case .selectVCPU(let index) = command.action { vcpu = index; continue }
            if track.departure != nil {
                if let event = machine.perform(command.action, vcpu: vcpu) { track.events[line] = event }
                continue
            }
            switch command.action {
            case .poke(let address, let value, let width):
                oracle.recordReachableTranslations()
                oracle.memory.backing.store(address, width: width, value)
            case .store(let address, let value, let width):
                oracle.recordReachableTranslations()
                oracle.memory.store(address, width: width, value)
            case .hostDirtyLog(.start): oracle.memory.startLogging()
            case .hostDirtyLog(.stop): oracle.memory.stopLogging()
            case .setAlignmentCheck(let value): oracle.registers[vcpu].alignmentCheck = value
            case .invlpg(let address): oracle.invalidatePage(vcpu: vcpu, address)
            case .flush: oracle.flush(vcpu: vcpu)
            case .enterNested(let entry): oracle.enterNested(vcpu: vcpu, entry)
            default: break
            }
            switch command.action {
            case .peek(let address, let width):
                let expected = oracle.memory.load(address, width: width)
                let event = machine.perform(command.action, vcpu: vcpu)
                track.events[line] = event
                if case .peek(_, let actual)? = event, actual != expected {
                    depart(line, "peek \(address.hex): the architecture holds \(expected.hex), this witness \(actual.hex)")
                }
            case .hostDirtyLog(.read):
                let written = Set(oracle.memory.takeWrittenFrames())
                let event = machine.perform(command.action, vcpu: vcpu)
                track.events[line] = event
                if case .dirtyLog(let gfns)? = event, !written.isSubset(of: gfns) {
                    depart(line, "the dirty log misses written frames \(written.subtracting(gfns).sorted().map(\.hex))")
                }
            case .writeRegister(let name, let value):
                let expected = oracle.write(vcpu: vcpu, name.controlRegister, value)
                let event = machine.perform(command.action, vcpu: vcpu)
                track.events[line] = event
                if case .registerWrite(_, let accepted)? = event, accepted != expected {
                    depart(line, "\(name.rawValue) \(value.hex): the architecture \(expected ? "accepts" : "rejects") it, this witness \(accepted ? "accepts" : "rejects") it")
                }
            case .access(let command) where oracle.l1Paging[vcpu] != nil:
                let expected = oracle.nestedAccess(vcpu: vcpu, command)
                before(command, [expected])
                let outcome = machine.access(vcpu: vcpu, command)
                track.events[line] = .access(command, outcome)
                if outcome != expected { depart(line, "the architecture gives \(expected.summary)") }
            case .access(let command):
                let verdict = oracle.judge(vcpu: vcpu, command)
                before(command, [verdict.fresh] + verdict.stale)
                let outcome = machine.access(vcpu: vcpu, command)
                track.events[line] = .access(command, outcome)
                guard verdict.allows(outcome) else {
                    let allowed = Set(([verdict.fresh] + verdict.stale).map(\.summary)).sorted()
                    depart(line, "the architecture allows \(allowed.joined(separator: " | "))")
                    continue
                }
                if let complaint = oracle.follow(vcpu: vcpu, command, outcome, verdict: verdict, peek: machine.peek) {
                    depart(line, complaint)
                }
            default:
                if let event = machine.perform(command.action, vcpu: vcpu) { track.events[line] = event }
            }
        }
        return track
    }
}
