import ScenarioLanguage
import ScenarioVerification
import Testing

/// One configuration type, one printed form: what the tools print is what
/// the parser reads back.
@Suite("Printed forms parse back")
struct PrintedFormTests {
    static func parsedMMU(_ line: String) throws -> MMUConfiguration {
        try ScenarioParser.parse("machine memory=16M\n\(line)\n", fileName: "mmu.scenario").mmu
    }

    @Test("every configuration the checker runs prints an mmu line that parses back to it",
          arguments: [MMUConfiguration.native] + DifferentialChecker.configurations)
    func configurationRoundTrips(_ configuration: MMUConfiguration) throws {
        #expect(try Self.parsedMMU(configuration.scenarioText) == configuration, "\(configuration.scenarioText)")
        #expect(configuration.description == configuration.scenarioText)
    }

    @Test("a generated guest printed by the one printer parses back to the same commands",
          arguments: ScenarioGenerator.GuestMode.allCases)
    func generatedGuestRoundTrips(_ mode: ScenarioGenerator.GuestMode) throws {
        let text = ScenarioGenerator(mode: mode, seed: 7, length: 80).generate()
        let scenario = try ScenarioParser.parse(text, fileName: "generated.scenario")
        let reprinted = try ScenarioParser.parse(scenario.scenarioText, fileName: "reprinted.scenario")
        #expect(reprinted.machine == scenario.machine)
        #expect(reprinted.mmu == scenario.mmu)
        #expect(reprinted.commands.map(\.action) == scenario.commands.map(\.action))
    }
}
