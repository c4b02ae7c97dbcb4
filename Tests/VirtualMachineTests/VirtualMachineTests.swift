import ShadowMMU
import Testing
import VirtualMachine
import X86Paging

/// The simulated machine on its own, without the scenario layer: VM entry
/// loads the hypervisor's root, the hardware walks it, faults reach the
/// guest with their error codes, and stores to shadowed tables trap.
@Suite("The simulated machine")
struct VirtualMachineTests {
    /// A 4-level guest: PML4 0x1000 → PDPT 0x2000 → PD 0x3000 → PT 0x4000,
    /// linear 0x1000 → 0x100000 (P RW US), 0x2000 → 0x101000 read-only.
    static func longModeGuest(mode: MMUMode = .shadow) -> VirtualMachine {
        let vm = VirtualMachine(memorySize: 16 << 20, mode: mode)
        vm.poke(0x1000, width: 8, 0x2007)
        vm.poke(0x2000, width: 8, 0x3007)
        vm.poke(0x3000, width: 8, 0x4007)
        vm.poke(0x4008, width: 8, 0x10_0007)
        vm.poke(0x4010, width: 8, 0x10_1005)
        vm.poke(0x10_0000, width: 8, 0x1122_3344)
        #expect(vm.writeRegister(vcpu: 0, .cr4, 0x20))
        #expect(vm.writeRegister(vcpu: 0, .cr3, 0x1000))
        #expect(vm.writeRegister(vcpu: 0, .efer, 0x900))
        #expect(vm.writeRegister(vcpu: 0, .cr0, 0x8001_0011))
        return vm
    }

    @Test("an access through the shadow root completes where the guest's tables say", arguments: [MMUMode.shadow, .tdp(format: .ept, levels: 4)])
    func accessCompletes(mode: MMUMode) {
        let vm = Self.longModeGuest(mode: mode)
        let result = vm.access(vcpu: 0, 0x1000, MemoryAccess(.read, .user), width: 8)
        #expect(result == .completed(gpa: 0x10_0000, value: 0x1122_3344))
        #expect(vm.counters.vmEntries >= 1)
        // The hardware (or the hypervisor's walk) set the accessed flag in the guest's PTE.
        #expect(vm.peek(0x4008, width: 8) & 0x20 != 0)
        #expect(vm.violations.isEmpty)
    }

    @Test("faults reach the guest with the architectural error code", arguments: [MMUMode.shadow, .tdp(format: .x86, levels: 4)])
    func faultsReachTheGuest(mode: MMUMode) {
        let vm = Self.longModeGuest(mode: mode)
        // Not present: W.
        #expect(vm.access(vcpu: 0, 0x5000, .write, width: 8) == .pageFault(PageFaultErrorCode(rawValue: 0x2)))
        // Read-only with CR0.WP, user write: P W U.
        #expect(vm.access(vcpu: 0, 0x2000, MemoryAccess(.write, .user), width: 8) == .pageFault(PageFaultErrorCode(rawValue: 0x7)))
        // Non-canonical: #GP, no page fault counted.
        let before = vm.counters.guestPageFaults
        #expect(vm.access(vcpu: 0, 0x8000_0000_0000, .read, width: 8) == .generalProtection)
        #expect(vm.counters.guestPageFaults == before)
        #expect(vm.counters.guestPageFaults == 2)
    }

    @Test("a guest store to a shadowed page directory traps; one to a page table unsyncs it")
    func storesToShadowedTables() {
        let vm = Self.longModeGuest()
        #expect(vm.access(vcpu: 0, 0x1000, .read, width: 8) == .completed(gpa: 0x10_0000, value: 0x1122_3344))
        // A PTE store: the leaf shadow page goes unsync and the store lands untrapped.
        let unsyncsBefore = vm.mmu.statistics.unsyncs
        vm.store(0x4008, width: 8, 0x20_0007)
        #expect(vm.mmu.statistics.unsyncs == unsyncsBefore + 1)
        #expect(vm.mmu.statistics.trappedStores == 0)
        vm.invalidatePage(vcpu: 0, 0x1000)
        #expect(vm.access(vcpu: 0, 0x1000, .read, width: 8) == .completed(gpa: 0x20_0000, value: 0))
        // A PDE store (a level-2 table never goes unsync): trapped and emulated.
        vm.poke(0x5008, width: 8, 0x30_0007)
        vm.store(0x3000, width: 8, 0x5007)
        #expect(vm.mmu.statistics.trappedStores == 1)
        #expect(vm.mmu.statistics.pteWritesEmulated >= 1)
        vm.invalidatePage(vcpu: 0, 0x1000)
        #expect(vm.access(vcpu: 0, 0x1000, .read, width: 8) == .completed(gpa: 0x30_0000, value: 0))
        #expect(vm.violations.isEmpty)
    }

    @Test("a PVM host's CPL-0 accesses and stores are emulated: right results, no sptes built, no unsync")
    func emulatedSupervisorAccesses() {
        let vm = Self.longModeGuest()
        vm.emulatesSupervisorAccesses = true
        #expect(vm.access(vcpu: 0, 0x1000, .read, width: 8) == .completed(gpa: 0x10_0000, value: 0x1122_3344))
        #expect(vm.access(vcpu: 0, 0x5000, .write, width: 8) == .pageFault(PageFaultErrorCode(rawValue: 0x2)))
        #expect(vm.access(vcpu: 0, 0x8000_0000_0000, .read, width: 8) == .generalProtection)
        #expect(vm.mmu.statistics.pagesCreated == 0, "a CPL-0 access built shadow pages")
        #expect(vm.peek(0x4008, width: 8) & 0x20 != 0, "the software walk sets the accessed flag")
        // A user access runs on the sptes as before.
        #expect(vm.access(vcpu: 0, 0x1000, MemoryAccess(.read, .user), width: 8) == .completed(gpa: 0x10_0000, value: 0x1122_3344))
        #expect(vm.mmu.statistics.pagesCreated > 0)
        // A guest kernel's store to the shadowed page table is an emulated write: no unsync.
        vm.store(0x4008, width: 8, 0x20_0007)
        #expect(vm.mmu.statistics.unsyncs == 0)
        #expect(vm.access(vcpu: 0, 0x1000, MemoryAccess(.read, .user), width: 8) == .completed(gpa: 0x20_0000, value: 0))
        #expect(vm.counters.emulatedSupervisorAccesses == 2)  // the non-canonical #GP is raised before any walk
        #expect(vm.violations.isEmpty)
    }
}
