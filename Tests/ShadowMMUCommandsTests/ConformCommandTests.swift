import Foundation
import RealKVM
import Testing

/// `shadowmmu conform` and `fuzz --kvm` as a user runs them. Without a usable
/// /dev/kvm the tool must say so and exit 2; with one, the results are real.
@Suite("conform and fuzz --kvm")
struct ConformCommandTests {
    static let kvm: Result<KVMHost, KVMError> = KVMHost.probe()
    static var usable: Bool { if case .success = kvm { true } else { false } }

    @Test("without /dev/kvm conform exits 2 and says why", .enabled(if: !usable, "this host has a usable /dev/kvm"))
    func noKVMIsExitTwo() throws {
        let result = try shadowmmu(["conform", "examples/tour.scenario"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("the host's KVM cannot be used"), "\(result.stderr)")
    }

    @Test("a scenario that writes the runner's PML4 slot is exit 2 with its line", .enabled(if: usable, "needs /dev/kvm"))
    func runnerSlotIsUnusableInput() throws {
        let result = try withScenarioFile("slot.scenario", """
            machine memory=16M
            poke 0x1000 0x2007
            poke 0x1ff8 0x3007
            cr4 0x20
            cr3 0x1000
            efer 0x900
            cr0 0x80010001
            read 0x1000
            """) { path in try shadowmmu(["conform", path]) }
        #expect(result.status == 2)
        #expect(result.stderr.contains("slot.scenario:3:1:") && result.stderr.contains("PML4 slot 511"), "\(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    @Test("--json: one object per scenario, the deviation named, exit 0", .enabled(if: usable, "needs /dev/kvm"))
    func jsonNamesTheDeviation() throws {
        let result = try shadowmmu(["conform", "--json", "Tests/ShadowMMUTests/Deviations/efer-nx-forced.scenario", "examples/pae.scenario"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let objects = try result.stdoutLines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] ?? [:] }
        #expect(objects.count == 2)
        let counts = objects.first?["counts"] as? [String: Int]
        #expect(counts?["deviation efer-nx-forced"] == 1, "\(result.stdout)")
        #expect(objects.first?["result"] as? String == "pass")
        #expect(objects.last?["result"] as? String == "not-run")
        #expect((objects.last?["reason"] as? String)?.isEmpty == false)
    }

    @Test("fuzz --kvm runs generated guests three ways and sums up the classes", .enabled(if: usable, "needs /dev/kvm"))
    func fuzzOnKVM() throws {
        let result = try shadowmmu(["fuzz", "--kvm", "--count", "3", "--length", "80", "--seed", "5000"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("fuzz --kvm: 3 guests (3 pass, 0 FAIL, 0 not run)"), "\(result.stdout)")
        #expect(result.stdout.contains("agree "))
    }
}
