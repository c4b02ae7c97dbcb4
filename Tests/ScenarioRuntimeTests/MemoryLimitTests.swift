import HostPlatform
import ScenarioLanguage
import ScenarioRuntime
import ShadowMMU
import Testing

/// Issue 13: the largest guest memory the parser accepts is memory the
/// hypervisor's host really backs, to its last page, under every MMU.
@Suite struct GuestMemoryLimit {
    @Test func theHostBacksTheLargestGuest() {
        #expect(HostMemory().size - HostMemory.guestRAMBase >= MachineConfiguration.maximumMemorySize)
    }

    @Test(arguments: ["mmu native", "mmu shadow", "mmu tdp format=ept", "mmu tdp format=npt levels=5"])
    func theLastPageOfTheLargestGuestHoldsWhatWasWritten(_ mmu: String) throws {
        let text = """
            machine memory=63T
            \(mmu)
            poke 0x1000 0x2007
            poke 0x2000 0x3007
            poke 0x3000 0x4007
            poke 0x4008 0x3efffffff007      # linear 0x1000 -> the last page below 63 TiB
            poke 0x3efffffff010 0x1234
            cr4 0x20
            cr3 0x1000
            efer 0x100
            cr0 0x80000001
            write 0x1018 value=0x5678
            read 0x1010
            expect ok gpa=0x3efffffff010 value=0x1234
            peek 0x3efffffff018
            expect value=0x5678
            """
        var failures: [String] = []
        try ScenarioRunner(try ScenarioParser.parse(text, fileName: "top.scenario")).run(expectationFailed: { failures.append($0.description) })
        #expect(failures.isEmpty, "under \(mmu): \(failures.joined(separator: "; "))")
    }
}
