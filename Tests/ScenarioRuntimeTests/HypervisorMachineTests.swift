import ScenarioLanguage
import ScenarioRuntime
import TestSupport
import Testing

/// What `HypervisorMachine` adds for users: explain's story of an exit, and
/// the dirty log's false-positive count.
@Suite("Hypervisor machine")
struct HypervisorMachineTests {
    static let pae = """
        machine memory=64M
        mmu shadow
        poke 0x1000 0x2001
        poke 0x2000 0x4007
        poke 0x4008 0x100047
        cr4 0x20
        cr3 0x1000
        cr0 0x80010001
        read 0x1000
        """

    @Test func explainTellsWhatTheHypervisorDidAtAnExit() throws {
        let runner = try ScenarioRunner(try ScenarioParser.parse(Self.pae, fileName: "pae.scenario"))
        let explanation = try runner.explain(line: 9)
        var guestWalks = 0
        var notes: [String] = []
        for stage in explanation.stages {
            switch stage {
            case .walk(let title, _, _) where title.hasPrefix("guest's own tables"): guestWalks += 1
            case .hypervisor(let step): notes.append(step.text)
            case .note(let text): Issue.record("an untyped stage: \(text)")
            default: break
            }
        }
        #expect(guestWalks == 1, "the exit shows the hypervisor's walk of the guest's tables once")
        #expect(notes.contains { $0.hasPrefix("created a level-2 shadow page for gfn 0x2") })
        #expect(notes.contains { $0.hasPrefix("created a level-1 shadow page for gfn 0x4") })
        #expect(notes.contains { $0.hasPrefix("wrote entry 0 of the level-3 shadow table") }, "the local root's PDPTE is written on demand")
        #expect(notes.contains { $0.hasPrefix("wrote entry 1 of the level-1 shadow table") })
        #expect(explanation.outcome == .ok(gpa: 0x100000, value: 0))
    }

    @Test func aFrameLoggedButNotWrittenCountsAsAFalsePositive() throws {
        // The guest page is dirty (D=1), so a read fault maps it writable and
        // logs it, though nothing was written.
        let text = Self.pae.replacingOccurrences(of: "read 0x1000", with: "host dirty-log start\nread 0x1000\nhost dirty-log read\n")
        let runner = try ScenarioRunner(try ScenarioParser.parse(text, fileName: "log.scenario"))
        var logged: [UInt64] = []
        runner.run(observe: { if case .dirtyLog(let gfns) = $0.event { logged = gfns } })
        let statistics = runner.machine.statistics
        #expect(logged.contains(0x100), "the frame mapped writable is logged")
        // The walk set A in the PDE (frame 2) and the PTE (frame 4): written, not false positives.
        #expect(statistics[.dirtyLogFalsePositives] == 1, "\(statistics[.dirtyLogFalsePositives])")
    }
}
