import ScenarioLanguage
import ScenarioRuntime
import Testing

// The quick start of the ScenarioRuntime catalogue, compiled and run.
@Suite struct ScenarioRuntimeQuickStart {
    @Test func aScenarioRunsUnderItsOwnMMULine() throws {
        let guest = try ScenarioParser.parse("""
            machine memory=16M
            mmu shadow
            poke 0x1000 0x2003
            poke 0x2004 0x5003
            cr3 0x1000
            cr0 0x80000001
            read 0x1000
            expect ok gpa=0x5000
            """, fileName: "runtime.scenario")
        let run = try ScenarioRunner(guest)
        var printedLines: [String] = []
        run.run(observe: { if $0.isPrinted { printedLines.append($0.json) } }, expectationFailed: { _ in })

        #expect(printedLines.count == 1)
        #expect(printedLines.first?.contains(#""result":"ok","gpa":"0x5000""#) == true, "\(printedLines)")
    }
}
