import Conformance
import Foundation
import RealKVM
import ScenarioLanguage
import ShadowMMU
import TestSupport
import Testing

/// The host's KVM, when it can be used; otherwise why not. Tests that need
/// it are disabled with that reason, so the run says they did not run.
let kvmHost: Result<KVMHost, KVMError> = KVMHost.probe()
let kvmUsable: Bool = {
    if case .failure(let error) = kvmHost {
        print("ConformanceTests: /dev/kvm not usable (\(error)); the tests that need it did not run")
        return false
    }
    return true
}()

func conformance(_ path: String) throws -> ScenarioConformance {
    let host = try kvmHost.get()
    let text = try String(contentsOf: repositoryFile(path), encoding: .utf8)
    return try ConformanceRunner(host: host).run(try ScenarioParser.parse(text, fileName: path))
}

@Suite("Conformance with the host's KVM")
struct ConformanceTests {
    // MARK: Without KVM: what conform refuses and what it cannot run

    static func parse(_ text: String) throws -> Scenario { try ScenarioParser.parse(text, fileName: "conform.scenario") }

    @Test("a scenario that writes the runner's PML4 slot is refused with its line")
    func runnerSlotIsRefused() throws {
        let scenario = try Self.parse("""
            machine memory=16M
            poke 0x1ff8 0x5007
            cr4 0x20
            cr3 0x1000
            """)
        #expect {
            try ConformanceRunner.checkRunnerRegion(scenario)
        } throws: { error in
            guard let error = error as? ScenarioError else { return false }
            return error.line == 2 && error.message.contains("PML4 slot 511")
        }
    }

    @Test("an access in the runner's linear range is refused with its line")
    func runnerRangeIsRefused() throws {
        let scenario = try Self.parse("machine memory=16M\nread 0xffffff8000001000\n")
        #expect(throws: ScenarioError.self) { try ConformanceRunner.checkRunnerRegion(scenario) }
    }

    @Test("the deviation's class names it")
    func classWords() {
        #expect(LineClass.deviation(.eferNXForced).description == "deviation efer-nx-forced")
        #expect(LineClass.hostFlavour(.pvmEmulatedCPL0).description == "host-flavour pvm-emulated-cpl0")
        #expect(LineClass.modelDiffers.isFailure && LineClass.unexplained.isFailure)
        #expect(!LineClass.allowed.isFailure && !LineClass.deviation(.eferNXForced).isFailure)
    }

    // MARK: On the host's KVM

    @Test("a PAE guest is reported as not run on a host that runs 64-bit guests only", .enabled(if: kvmUsable, "needs /dev/kvm"))
    func paeIsNotRun() throws {
        let host = try kvmHost.get()
        let result = try conformance("examples/pae.scenario")
        if host.flavour == .pvm {
            #expect(result.notRun?.contains("64-bit guests only") == true, "\(result.notRun ?? "ran")")
            #expect(result.lines.isEmpty)
        }
    }

    @Test("efer-nx-forced: KVM and the model agree, the architecture differs, the deviation explains it", .enabled(if: kvmUsable, "needs /dev/kvm"))
    func eferNXForcedIsADeviation() throws {
        let result = try conformance("Tests/ShadowMMUTests/Deviations/efer-nx-forced.scenario")
        #expect(result.notRun == nil)
        #expect(!result.failed, "\(result.lines.filter { $0.lineClass.isFailure }.map { "\($0.line): \($0.lineClass) kvm \($0.kvm)" })")
        let deviation = result.lines.first { $0.lineClass == .deviation(.eferNXForced) }
        #expect(deviation?.architecture == "fault ec=0xd")
        #expect(deviation?.kvm == deviation?.model)
    }

    @Test("the 4-level examples agree with KVM", .enabled(if: kvmUsable, "needs /dev/kvm"),
          arguments: ["examples/4-level.scenario", "examples/tour.scenario", "examples/tlb.scenario", "examples/dirty-log.scenario", "examples/tdp-ept.scenario"])
    func examplesConform(_ path: String) throws {
        let result = try conformance(path)
        #expect(result.notRun == nil, "\(result.notRun ?? "")")
        #expect(!result.failed, "\(result.lines.filter { $0.lineClass.isFailure }.map { "\($0.line): \($0.lineClass) \($0.command): kvm \($0.kvm), model \($0.model)" })")
        #expect(result.lines.count > 3)
    }

    @Test("the host flavours found by fuzz --kvm, and the witness's own bugs, stay classified", .enabled(if: kvmUsable, "needs /dev/kvm"),
          arguments: [
            ("no-1g-pages.scenario", LineClass.hostFlavour(.noOneGiBPages)),
            ("pvm-smap-on-mmio-fetch.scenario", .hostFlavour(.pvmSMAPOnMMIOFetch)),
            ("witness-dirty-log-across-zap.scenario", .agree),
            ("witness-noncanonical-fetch.scenario", .agree),
            ("witness-fetch-runs-the-target.scenario", .agree),
            ("pvm-cpl0-builds-no-sptes.scenario", .agree),
            ("pvm-emulated-store-does-not-unsync.scenario", .deviation(.eferNXForced)),
          ])
    func namedScenarios(_ name: String, _ expected: LineClass) throws {
        let host = try kvmHost.get()
        let result = try conformance("Tests/ConformanceTests/Scenarios/" + name)
        #expect(!result.failed, "\(result.lines.filter { $0.lineClass.isFailure }.map { "\($0.line): \($0.lineClass) kvm \($0.kvm)" })")
        // The flavours are this host's (PVM, no TDP); elsewhere the lines agree.
        if host.flavour == .pvm || expected == .agree || expected == .deviation(.eferNXForced) {
            #expect(result.lines.contains { $0.lineClass == expected }, "\(result.counts)")
        }
    }
}

// The quick starts of the RealKVM and Conformance catalogues, compiled, and
// run when /dev/kvm can be used.
@Suite struct ConformanceQuickStarts {
    @Test(.enabled(if: kvmUsable, "needs /dev/kvm")) func realKVMQuickStart() throws {
        let host = try KVMHost.probe().get()
        let vm = try KVMMachine(memorySize: 16 << 20, maxPhysicalAddressBits: host.physicalAddressBits, host: host)
        vm.write(0x1000, 0x2007)        // PML4E[0] -> PDPT 0x2000
        vm.write(0x2000, 0x3007)
        vm.write(0x3000, 0x4007)
        vm.write(0x4008, 0x100007)      // linear 0x1000 -> 0x100000
        vm.write(0x100000, 0x1234)
        try vm.start(vcpu: 0, cr0: 0x8001_0011, cr3: 0x1000, cr4: 0x20, efer: 0x900)
        let outcome = try vm.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true, value: nil)

        #expect(outcome == .ok(value: 0x1234))
    }

    @Test(.enabled(if: kvmUsable, "needs /dev/kvm")) func conformanceQuickStart() throws {
        let kvm = try KVMHost.probe().get()
        let guest = try ScenarioParser.parse("""
            machine memory=16M
            poke 0x1000 0x2007
            poke 0x2000 0x3007
            poke 0x3000 0x4007
            poke 0x4008 0x100007
            cr4 0x20
            cr3 0x1000
            efer 0x900
            cr0 0x80010011
            read 0x1000 user
            """, fileName: "conform.scenario")
        let conformance = try ConformanceRunner(host: kvm).run(guest)

        let reads = conformance.lines.filter { $0.command.hasPrefix("read") }
        #expect(reads.count == 1)
        #expect(reads.first?.lineClass == .agree)
        #expect(!conformance.failed)
    }
}
