import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import X86Paging

/// One witness run command by command beside the architectural oracle
/// (the checker's `Lockstep`): what it produced at every observable line,
/// and the first line where the architecture does not allow what it
/// produced, after which it is no longer judged.
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
    /// is called before each judged access with the outcomes the
    /// architecture allows (the KVM witness names from them the
    /// guest-physical address it cannot observe); `after` after each command.
    static func run(
        _ scenario: Scenario, on machine: any GuestMachine, model: CPUModel,
        before: (AccessCommand, [AccessOutcome]) -> Void = { _, _ in },
        after: (Int) -> Void = { _ in }
    ) -> Track {
        let lockstep = Lockstep(scenario, machine: machine, model: model)
        var track = Track()
        for command in scenario.commands {
            let line = command.line
            defer { after(line) }
            guard track.departure == nil else {
                if let event = lockstep.performUnjudged(command) { track.events[line] = event }
                continue
            }
            let step = lockstep.step(command, before: before)
            if let event = step.event { track.events[line] = event }
            if let complaint = step.complaint { track.departure = (line, complaint) }
        }
        return track
    }
}
