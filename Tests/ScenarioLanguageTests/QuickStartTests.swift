import ScenarioLanguage
import Testing

// The quick start of the ScenarioLanguage catalogue, compiled and run; the
// documentation tests require its code here line for line.
@Suite struct ScenarioLanguageQuickStart {
    @Test func aScenarioParsesAndPrintsBack() throws {
        let source = """
            machine memory=16M
            mmu tdp format=npt host=pae32
            cr3 0x1000
            read 0x1000 user
            """
        let parsed = try ScenarioParser.parse(source, fileName: "language.scenario")
        let printed = parsed.scenarioText
        let reparsed = try ScenarioParser.parse(printed, fileName: "printed.scenario")

        #expect(parsed.mmu == .tdp(format: .npt, levels: 3, host: .pae32))
        #expect(printed.hasPrefix("machine memory=16M\nmmu tdp format=npt host=pae32\n"))
        #expect(reparsed.machine == parsed.machine && reparsed.mmu == parsed.mmu)
        #expect(reparsed.commands.map(\.action) == parsed.commands.map(\.action))
    }
}
