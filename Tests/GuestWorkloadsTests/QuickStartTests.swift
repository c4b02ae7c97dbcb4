import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime
import TestSupport
import Testing

// The quick start of the GuestWorkloads catalogue, compiled and run.
@Suite struct GuestWorkloadsQuickStart {
    @Test func theGuestKernelBootsAndIsRecorded() throws {
        let boot = Workload.run(.boot, options: WorkloadOptions(mode: .level4, mmu: .shadow(host: .bits64)))
        let recorded = boot.scenario ?? ""

        #expect(boot.failure == nil)
        #expect(recorded.contains("\nmachine memory="))
        #expect(try printedRun(recorded, name: "boot.scenario").failures.isEmpty)
    }
}
