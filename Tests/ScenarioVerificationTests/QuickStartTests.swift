import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing

// The quick start of the ScenarioVerification catalogue (Sources/ScenarioVerification/ScenarioVerification.docc),
// compiled and run. The documentation tests require the catalogue's code to
// appear here line for line: change both together.

@Suite struct ScenariosQuickStart {
    @Test func aScenarioRunsAndIsCheckedAsTheCatalogueSays() throws {
        let text = """
            machine memory=16M
            mmu shadow
            poke 0x1000 0x2003          # 32-bit paging: PDE[0] -> page table at 0x2000
            poke 0x2004 0x5003          # PTE[1]: 0x1000 -> 0x5000, writable
            cr3 0x1000
            cr0 0x80000001
            write 0x1000 value=7
            expect ok gpa=0x5000
            peek 0x2004                 # the hypervisor set A and D in the guest's PTE
            expect value=0x5063
            """
        let scenario = try ScenarioParser.parse(text, fileName: "quick-start.scenario")

        // Run it under its own `mmu` line, printing what `shadowmmu run` prints.
        let runner = try ScenarioRunner(scenario)
        var lines: [String] = []
        var failures: [ExpectationFailure] = []
        runner.run(observe: { if $0.isPrinted { lines.append($0.json) } }, expectationFailed: { failures.append($0) })

        // Check it under every other MMU configuration against the reference.
        let reports = try DifferentialChecker.check(scenario)
        let failed = reports.filter { !$0.passed }.map(\.configuration)

        #expect(lines == [
            #"{"line":7,"vcpu":0,"op":"write","gva":"0x1000","user":false,"result":"ok","gpa":"0x5000"}"#,
            #"{"line":9,"vcpu":0,"op":"peek","addr":"0x2004","value":"0x5063"}"#,
        ])
        #expect(failures.isEmpty)
        #expect(reports.count == 10 && failed.isEmpty)
        #expect(reports.filter { $0.configuration.roots == .special }.count == 3)
    }
}
