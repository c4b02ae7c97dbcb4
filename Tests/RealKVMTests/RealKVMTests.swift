import Foundation
import Testing

@testable import RealKVM

/// Whether /dev/kvm can be used here. When it cannot, every test below is
/// disabled through `.enabled(if:)` — so the run reports it as skipped, not
/// passed — and the reason is printed once.
enum KVMAvailability {
    static let probe: Result<KVMHost, KVMError> = KVMHost.probe()
    static let usable: Bool = {
        switch probe {
        case .success: return true
        case .failure(let e):
            print("RealKVM: /dev/kvm not usable (\(e)); this test did not run")
            return false
        }
    }()
    static var host: KVMHost { try! probe.get() }
}

// Guest layout used by most tests (host writes):
//   PML4 0x1000 → PDPT 0x2000 → PD 0x3000 → PT 0x4000
//   PTE[1]: 0x1000 → 0x100000 (P RW US)           data page
//   PTE[2]: not present                              unmapped
//   PTE[3]: 0x3000 → 0x103000 (P US, read-only)
//   PTE[4]: 0x4000 → 0x104000 (P RW US XD)           no-execute
//   PTE[5]: 0x5000 → 0x105000 (P RW, supervisor)
let pml4: UInt64 = 0x1000
let dataValue: UInt64 = 0x1122_3344_5566_7788

func makeMachine(vcpus: Int = 1, maxPhysicalAddressBits: Int = 40) throws -> KVMMachine {
    let m = try KVMMachine(memorySize: 16 << 20, vcpuCount: vcpus, maxPhysicalAddressBits: maxPhysicalAddressBits, host: KVMAvailability.host)
    m.write(0x1000, 0x2007)
    m.write(0x2000, 0x3007)
    m.write(0x3000, 0x4007)
    m.write(0x4008, 0x10_0007)
    m.write(0x4018, 0x10_3005)
    m.write(0x4020, 0x8000_0000_0010_4007)
    m.write(0x4028, 0x10_5003)
    m.write(0x10_0000, dataValue)
    m.write(0x10_3000, 0xAAAA)
    m.write(0x10_5000, 0x5555)
    return m
}

func started(vcpus: Int = 1, cr0: UInt64 = 0x8001_0011, cr4: UInt64 = 0x20, efer: UInt64 = 0xD00, maxPhysicalAddressBits: Int = 40) throws -> KVMMachine {
    let m = try makeMachine(vcpus: vcpus, maxPhysicalAddressBits: maxPhysicalAddressBits)
    for n in 0..<vcpus { try m.start(vcpu: n, cr0: cr0, cr3: pml4, cr4: cr4, efer: efer) }
    return m
}

@Suite("RealKVM", .serialized, .enabled(if: KVMAvailability.usable, "needs a usable /dev/kvm"))
struct RealKVMTests {
    @Test func probeReportsTheHost() throws {
        let host = KVMAvailability.host
        print("RealKVM: \(host)")
        #expect(host.physicalAddressBits >= 36)
        #expect(!host.supportsLA57)
        // KVM offers no more physical-address bits than the processor has.
        if let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("address sizes") }),
           let bits = line.split(separator: ":").last?.split(separator: " ").first.flatMap({ Int($0) }) {
            #expect(host.physicalAddressBits <= bits, "KVM reports \(host.physicalAddressBits) bits, the processor \(bits)")
        }
        // PVM runs every guest on KVM's shadow MMU (PKU and PCID depend on the processor).
        if host.flavour == .pvm { #expect(host.tdpEnabled == false) }
    }

    @Test func unclaimedMMIOAndTheExitBound() throws {
        let m = try started()
        m.write(0x4038, 0x1_0000_0000 | 0x7)  // PTE[7]: 0x7000 -> 4 GiB, outside guest memory
        #expect(try m.access(vcpu: 0, .read, gva: 0x7000, width: 8, user: false) == .ok(value: UInt64.max))
        #expect(try m.access(vcpu: 0, .read, gva: 0x7000, width: 4, user: true) == .ok(value: 0xFFFF_FFFF))
        #expect(try m.access(vcpu: 0, .write, gva: 0x7000, width: 8, user: true, value: 1) == .ok(value: 0))
        // An MMIO read takes two exits; with a bound of one the operation is .hung,
        // and the vCPU (stopped at CPL 0) stays usable.
        m.maxExitsPerOperation = 1
        #expect(try m.access(vcpu: 0, .read, gva: 0x7000, width: 8, user: false) == .hung)
        m.maxExitsPerOperation = 64
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false) == .ok(value: dataValue))
    }

    @Test func theWatchdogInterruptsKVMRun() throws {
        let m = try started()
        m.write(0x10_0000, 0xFEEB)  // jmp $ at gva 0x1000 (a user page)
        #expect(m.watchdogArmedForTesting)
        m.operationTimeout = 0.2
        let t0 = Date()
        let report = try m.runForTesting(vcpu: 0, rip: 0x1000, user: true)
        let dt = Date().timeIntervalSince(t0)
        print("RealKVM: a CPL-3 `jmp $` ends as \(report) after \(String(format: "%.3f", dt)) s")
        guard case .hung = report else {
            Issue.record("expected .hung, got \(report)")
            return
        }
        #expect(dt < 2)
        m.operationTimeout = 1
        // The vCPU was stopped at CPL 3: it cannot run operations any more.
        #expect(throws: KVMError.self) { try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false) }
        // At CPL 0 (emulated), the same loop on a supervisor page.
        let k = try started()
        k.write(0x10_5000, 0xFEEB)
        k.operationTimeout = 0.2
        let t1 = Date()
        let cpl0 = try k.runForTesting(vcpu: 0, rip: 0x5000)
        print("RealKVM: a CPL-0 `jmp $` ends as \(cpl0) after \(String(format: "%.3f", Date().timeIntervalSince(t1))) s")
        #expect(cpl0 == .hung)
        k.operationTimeout = 1
        #expect(try k.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false) == .ok(value: dataValue))
    }

    @Test func runnerEntryIsInstalledAndDocumented() throws {
        let m = try started()
        #expect(m.read(pml4 + RunnerLayout.topLevelEntryOffset) == RunnerLayout.topLevelEntry)
        #expect(RunnerLayout.topLevelEntry == 0x7_FFE0_0027)
        // A table whose slot 511 is in use is refused.
        m.write(0x9000 + 511 * 8, 0x1234_5007)
        #expect(throws: KVMError.self) { try m.writeControlRegister(vcpu: 0, .cr3, 0x9000) }
    }

    @Test func readsAtCPL3AndCPL0() throws {
        let m = try started()
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false) == .ok(value: dataValue))
        #expect(try m.access(vcpu: 0, .read, gva: 0x1001, width: 1, user: true) == .ok(value: 0x77))
        #expect(try m.access(vcpu: 0, .read, gva: 0x1002, width: 2, user: false) == .ok(value: 0x5566))
        #expect(try m.access(vcpu: 0, .read, gva: 0x1004, width: 4, user: true) == .ok(value: 0x1122_3344))
        // The accessed flag is set in the guest PTE.
        #expect(m.read(0x4008) & 0x20 != 0)
    }

    @Test func writesAndTheirFaults() throws {
        let m = try started()
        #expect(try m.access(vcpu: 0, .write, gva: 0x1008, width: 8, user: true, value: 0xABCD) == .ok(value: 0))
        #expect(m.read(0x10_0008) == 0xABCD)
        #expect(m.read(0x4008) & 0x60 == 0x60)  // A and D
        #expect(try m.access(vcpu: 0, .write, gva: 0x1010, width: 4, user: false, value: 0xBEEF) == .ok(value: 0))
        #expect(m.read(0x10_0010) == 0xBEEF)
        // Unmapped page.
        #expect(try m.access(vcpu: 0, .write, gva: 0x2000, width: 8, user: false, value: 1) == .pageFault(errorCode: 0x2, cr2: 0x2000))
        #expect(try m.access(vcpu: 0, .write, gva: 0x2008, width: 8, user: true, value: 1) == .pageFault(errorCode: 0x6, cr2: 0x2008))
        // Read-only page with CR0.WP (CR0 0x80010011).
        #expect(try m.access(vcpu: 0, .write, gva: 0x3000, width: 8, user: true, value: 1) == .pageFault(errorCode: 0x7, cr2: 0x3000))
        #expect(try m.access(vcpu: 0, .write, gva: 0x3000, width: 8, user: false, value: 1) == .pageFault(errorCode: 0x3, cr2: 0x3000))
        // Store of the bytes already there (value nil): a write in every respect, memory unchanged.
        #expect(try m.access(vcpu: 0, .write, gva: 0x3000, width: 8, user: true) == .pageFault(errorCode: 0x7, cr2: 0x3000))
        #expect(try m.access(vcpu: 0, .write, gva: 0x1000, width: 8, user: true) == .ok(value: 0))
        #expect(try m.access(vcpu: 0, .write, gva: 0x1000, width: 2, user: false) == .ok(value: 0))
        #expect(m.read(0x10_0000) == dataValue)
        // User access to a supervisor page.
        #expect(try m.access(vcpu: 0, .read, gva: 0x5000, width: 8, user: true) == .pageFault(errorCode: 0x5, cr2: 0x5000))
        #expect(try m.access(vcpu: 0, .read, gva: 0x5000, width: 8, user: false) == .ok(value: 0x5555))
    }

    @Test func fetches() throws {
        let m = try started()
        // XD page with NXE: I/D set.
        #expect(try m.access(vcpu: 0, .fetch, gva: 0x4000, user: true, value: nil) == .pageFault(errorCode: 0x15, cr2: 0x4000))
        #expect(try m.access(vcpu: 0, .fetch, gva: 0x4000, user: false) == .pageFault(errorCode: 0x11, cr2: 0x4000))
        // Executable pages (memory there is zero: `add [rax], al` with a non-canonical RAX).
        #expect(try m.access(vcpu: 0, .fetch, gva: 0x1000, user: true) == .ok(value: 0))
        #expect(try m.access(vcpu: 0, .fetch, gva: 0x1000, user: false) == .ok(value: 0))
        #expect(try m.access(vcpu: 0, .fetch, gva: 0x2000, user: true) == .pageFault(errorCode: 0x14, cr2: 0x2000))
        #expect(try m.access(vcpu: 0, .fetch, gva: 0x5000, user: true) == .pageFault(errorCode: 0x15, cr2: 0x5000))
        #expect(m.read(0x10_0000) == dataValue)
    }

    @Test func nonCanonicalAddressesGiveGP() throws {
        let m = try started()
        #expect(try m.access(vcpu: 0, .read, gva: 0x8000_0000_0000_0000, width: 8, user: false) == .generalProtection(errorCode: 0))
        #expect(try m.access(vcpu: 0, .read, gva: 0x0000_8000_0000_0000, width: 8, user: true) == .generalProtection(errorCode: 0))
        #expect(try m.access(vcpu: 0, .write, gva: 0x0000_8000_0000_0000, width: 8, user: false, value: 0) == .generalProtection(errorCode: 0))
        #expect(try m.access(vcpu: 0, .fetch, gva: 0x0000_8000_0000_0000, user: true) == .generalProtection(errorCode: 0))
        #expect(try m.access(vcpu: 0, .fetch, gva: 0x0000_8000_0000_0000, user: false) == .generalProtection(errorCode: 0))
    }

    @Test func movCR3ToASecondTable() throws {
        let m = try started()
        m.write(0x9000, 0xA007)
        m.write(0xA000, 0xB007)
        m.write(0xB000, 0xC007)
        m.write(0xC008, 0x20_0007)
        m.write(0x20_0000, 0x4242)
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
        #expect(try m.writeControlRegister(vcpu: 0, .cr3, 0x9000) == .ok(value: 0))
        #expect(try m.registers(vcpu: 0).cr3 == 0x9000)
        #expect(m.read(0x9000 + RunnerLayout.topLevelEntryOffset) == RunnerLayout.topLevelEntry)
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: 0x4242))
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false) == .ok(value: 0x4242))
        // A reserved CR3 bit is rejected with #GP and CR3 keeps its value.
        #expect(try m.writeControlRegister(vcpu: 0, .cr3, 0x0010_0000_0000_1000) == .generalProtection(errorCode: 0))
        #expect(try m.registers(vcpu: 0).cr3 == 0x9000)
    }

    @Test func invlpgAfterAHostChangeOfAPTE() throws {
        let m = try started()
        m.write(0x20_0000, 0x4242)
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
        m.write(0x4008, 0x20_0067)
        #expect(try m.invlpg(vcpu: 0, 0x1000) == .ok(value: 0))
        let after = try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true)
        #expect(try m.flushAll(vcpu: 0) == .ok(value: 0))
        let afterFlush = try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true)
        print("RealKVM: user read after a host PTE change + INVLPG: \(after); after a flush too: \(afterFlush) (0x4242 = new mapping, 0x\(String(dataValue, radix: 16)) = stale: KVM never saw the host write to its write-protected page table)")
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false) == .ok(value: 0x4242))
        // A guest store to the PTE (through the runner's direct map) is seen by KVM.
        #expect(try m.store(vcpu: 0, gpa: 0x4008, value: 0x10_0067) == .ok(value: 0))
        #expect(try m.invlpg(vcpu: 0, 0x1000) == .ok(value: 0))
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
    }

    @Test func controlRegistersAndEFER() throws {
        let m = try started()
        #expect(try m.writeEFER(vcpu: 0, 0x500) == .ok(value: 0))
        #expect(try m.registers(vcpu: 0).efer == 0x500)
        #expect(try m.writeEFER(vcpu: 0, 0xD00) == .ok(value: 0))
        #expect(try m.registers(vcpu: 0).efer == 0xD00)
        // Clearing LME while paging is on is rejected.
        #expect(try m.writeEFER(vcpu: 0, 0x800) == .generalProtection(errorCode: 0))
        // Clearing CR0.PG in 64-bit mode is rejected.
        #expect(try m.writeControlRegister(vcpu: 0, .cr0, 0x0001_0011) == .generalProtection(errorCode: 0))
        #expect(try m.writeControlRegister(vcpu: 0, .cr0, 0x8000_0011) == .ok(value: 0))
        #expect(try m.registers(vcpu: 0).cr0 & 0x1_0000 == 0)
        #expect(try m.writeControlRegister(vcpu: 0, .cr4, 0xA0) == .ok(value: 0))
        #expect(try m.registers(vcpu: 0).cr4 == 0xA0)
        #expect(try m.flushAll(vcpu: 0) == .ok(value: 0))
        #expect(try m.registers(vcpu: 0).cr4 == 0xA0)
        // Without WP a supervisor write to a read-only page succeeds.
        #expect(try m.access(vcpu: 0, .write, gva: 0x3000, width: 8, user: false, value: 0xAAAB) == .ok(value: 0))
        #expect(m.read(0x10_3000) == 0xAAAB)
    }

    @Test func smepSmapAndImplicitAccesses() throws {
        let host = KVMAvailability.host
        guard host.supportsSMEP && host.supportsSMAP else {
            print("RealKVM: no SMEP/SMAP here; smepSmapAndImplicitAccesses checked nothing")
            return
        }
        let m = try started(cr4: 0x30_0020)
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false) == .pageFault(errorCode: 0x1, cr2: 0x1000))
        #expect(try m.access(vcpu: 0, .fetch, gva: 0x1000, user: false) == .pageFault(errorCode: 0x11, cr2: 0x1000))
        try m.setAlignmentCheck(vcpu: 0, true)
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false) == .ok(value: dataValue))
        let implicitUser = try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false, implicitSupervisor: true)
        let implicitSupervisorPage = try m.access(vcpu: 0, .read, gva: 0x5000, width: 8, user: false, implicitSupervisor: true)
        print("RealKVM: implicit read of a user page under SMAP with AC=1: \(implicitUser); of a supervisor page: \(implicitSupervisorPage)")
        #expect(implicitUser == .pageFault(errorCode: 0x1, cr2: 0x1000))
        #expect(implicitSupervisorPage == .ok(value: 0))
        try m.setAlignmentCheck(vcpu: 0, false)
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
        #expect(throws: KVMError.self) { try m.access(vcpu: 0, .write, gva: 0x1000, width: 8, user: false, value: 0, implicitSupervisor: true) }
    }

    @Test func reservedPhysicalAddressBits() throws {
        let m = try started(maxPhysicalAddressBits: 36)
        m.write(0x4030, 0x10_0000_0000 | 0x10_6007)  // PTE[6] with bit 36 set
        #expect(try m.access(vcpu: 0, .read, gva: 0x6000, width: 8, user: true) == .pageFault(errorCode: 0xD, cr2: 0x6000))
        #expect(try m.access(vcpu: 0, .read, gva: 0x6000, width: 8, user: false) == .pageFault(errorCode: 0x9, cr2: 0x6000))
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
    }

    @Test func dirtyLog() throws {
        let m = try started()
        try m.startDirtyLog()
        _ = try m.readDirtyLog()
        #expect(try m.access(vcpu: 0, .write, gva: 0x1000, width: 8, user: true, value: 5) == .ok(value: 0))
        let user = try m.readDirtyLog()
        #expect(user.contains(0x100))
        #expect(try m.store(vcpu: 0, gpa: 0x30_0000, value: 9) == .ok(value: 0))
        #expect(try m.access(vcpu: 0, .write, gva: 0x1000, width: 8, user: false, value: 6) == .ok(value: 0))
        let supervisor = try m.readDirtyLog()
        print("RealKVM: dirty log after a user write of gfn 0x100: \(user.map { "0x" + String($0, radix: 16) }); after a store to 0x300 and a CPL-0 write: \(supervisor.map { "0x" + String($0, radix: 16) })")
        #expect(supervisor.contains(0x300) && supervisor.contains(0x100))
        m.write(0x40_0000, 1)  // a host write is not logged
        #expect(!(try m.readDirtyLog()).contains(0x400))
        try m.stopDirtyLog()
    }

    @Test func hostEventsKeepContents() throws {
        let m = try started()
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
        try m.invalidate(gpa: 0x10_0000, size: 0x1000)
        #expect(m.read(0x10_0000) == dataValue)
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
        try m.invalidate(gpa: 0, size: 16 << 20)
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
        try m.zapAll()
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
        try m.setMaxShadowPages(64)
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false) == .ok(value: dataValue))
    }

    @Test func twoVCPUs() throws {
        let m = try started(vcpus: 2)
        #expect(try m.access(vcpu: 1, .read, gva: 0x1000, width: 8, user: true) == .ok(value: dataValue))
        #expect(try m.access(vcpu: 0, .write, gva: 0x1000, width: 8, user: true, value: 77) == .ok(value: 0))
        #expect(try m.access(vcpu: 1, .read, gva: 0x1000, width: 8, user: true) == .ok(value: 77))
        #expect(try m.access(vcpu: 1, .write, gva: 0x2000, width: 8, user: false, value: 1) == .pageFault(errorCode: 0x2, cr2: 0x2000))
        #expect(try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false) == .ok(value: 77))
        #expect(try m.writeControlRegister(vcpu: 1, .cr4, 0xA0) == .ok(value: 0))
        #expect(try m.registers(vcpu: 0).cr4 == 0x20)
        #expect(try m.registers(vcpu: 1).cr4 == 0xA0)
    }

    /// The efer-nx experiment (DESIGN.md §5 item 5, `efer-nx-forced`): XD set in
    /// one paging-structure entry for 0x1000 while NXE=1, a user read caches a
    /// translation, then NXE is cleared (XD becomes a reserved bit), CR3 is
    /// reloaded and everything flushed. The architecture says the next read
    /// faults with P|RSVD (and U for a user read). This prints and asserts
    /// what this host's KVM does.
    @Test(arguments: ["PML4E", "PDE", "PTE"])
    func eferNXExperiment(level: String) throws {
        let m = try makeMachine()
        switch level {
        case "PML4E": m.write(0x1000, 0x8000_0000_0000_2007)
        case "PDE": m.write(0x3000, 0x8000_0000_0000_4007)
        default: m.write(0x4008, 0x8000_0000_0010_0007)
        }
        try m.start(vcpu: 0, cr0: 0x8001_0011, cr3: pml4, cr4: 0x20, efer: 0xD00)
        let before = try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true)
        #expect(before == .ok(value: dataValue))
        #expect(try m.writeEFER(vcpu: 0, 0x500) == .ok(value: 0))
        #expect(try m.writeControlRegister(vcpu: 0, .cr3, pml4) == .ok(value: 0))
        #expect(try m.flushAll(vcpu: 0) == .ok(value: 0))
        let user = try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true)
        let supervisor = try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false)
        let userAgain = try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true)
        print("RealKVM efer-nx (XD in the \(level)): NXE=1 user read \(before); after NXE=0, MOV CR3, flush: user read \(user), CPL-0 read \(supervisor), user read again \(userAgain) (architecture: #PF ec=0xd / 0x9)")
        // Cold: NXE clear from the start, no spte built before.
        let cold = try makeMachine()
        switch level {
        case "PML4E": cold.write(0x1000, 0x8000_0000_0000_2007)
        case "PDE": cold.write(0x3000, 0x8000_0000_0000_4007)
        default: cold.write(0x4008, 0x8000_0000_0010_0007)
        }
        try cold.start(vcpu: 0, cr0: 0x8001_0011, cr3: pml4, cr4: 0x20, efer: 0x500)
        let coldUser = try cold.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: true)
        let coldSupervisor = try cold.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: false)
        print("RealKVM efer-nx cold (XD in the \(level), NXE=0 from the start): user read \(coldUser), CPL-0 read \(coldSupervisor)")
        #expect(coldSupervisor == .pageFault(errorCode: 0x9, cr2: 0x1000))
        #expect(coldUser == .pageFault(errorCode: 0xD, cr2: 0x1000))
        #expect(supervisor == .pageFault(errorCode: 0x9, cr2: 0x1000))
        // Real KVM keeps the sptes built while NXE was 1: the user read completes.
        #expect(user == .ok(value: dataValue))
    }

    @Test func throughput() throws {
        let m = try started()
        let n = 2000
        for (label, user) in [("CPL0", false), ("CPL3", true)] {
            let t0 = Date()
            for _ in 0..<n { _ = try m.access(vcpu: 0, .read, gva: 0x1000, width: 8, user: user) }
            let dt = Date().timeIntervalSince(t0)
            print("RealKVM: \(label) reads: \(Int(Double(n) / dt)) operations/s")
        }
        let t0 = Date()
        for _ in 0..<n { _ = try m.access(vcpu: 0, .write, gva: 0x2000, width: 8, user: true, value: 1) }
        print("RealKVM: CPL3 faulting writes: \(Int(Double(n) / Date().timeIntervalSince(t0))) operations/s")
        let t1 = Date()
        for _ in 0..<n { _ = try m.invlpg(vcpu: 0, 0x1000) }
        print("RealKVM: INVLPG: \(Int(Double(n) / Date().timeIntervalSince(t1))) operations/s")
    }
}
