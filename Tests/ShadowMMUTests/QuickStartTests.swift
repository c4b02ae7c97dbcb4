import ShadowMMU
import Testing
import VirtualMachine
import X86Paging

// The quick starts of the ShadowMMU and VirtualMachine catalogues
// (Sources/*/…docc), compiled and run. The documentation tests require the
// catalogues' code to appear here line for line: change both together.

@Suite struct ShadowMMUQuickStart {
    @Test func aPAEGuestGetsALocalRootAndHashedPagesBelowIt() {
        // A PAE guest under shadow paging; the machine calls the MMU at every exit.
        let vm = VirtualMachine(memorySize: 64 << 20, mode: .shadow)
        vm.poke(0x1000, width: 8, 0x2001)       // PDPTE[0] -> page directory at 0x2000
        vm.poke(0x2000, width: 8, 0x3007)       // PDE[0]   -> page table at 0x3000
        vm.poke(0x3008, width: 8, 0x100007)     // PTE[1]: 0x1000 -> 0x100000
        _ = vm.writeRegister(vcpu: 0, .cr4, 0x20)           // PAE
        _ = vm.writeRegister(vcpu: 0, .cr3, 0x1000)
        _ = vm.writeRegister(vcpu: 0, .cr0, 0x8000_0001)    // PG PE: the PDPTE registers load

        let result = vm.access(vcpu: 0, 0x1000, .read, width: 8)

        let mmu = vm.mmu
        let root = mmu.contexts[0].root!                    // the root the hardware walks
        let shadows = mmu.hashedPages.map { ($0.role.level, $0.gfn) }
        let problems = mmu.audit(level: .full, at: "quick start")

        #expect(result == .completed(gpa: 0x100000, value: 0))
        #expect(root.isLocal && root.role.level == 3 && root.gfn == 0)
        #expect(mmu.contexts[0].usingLocalRootPage)
        #expect(shadows.map(\.0) == [2, 1] && shadows.map(\.1) == [0x2, 0x3])
        #expect(mmu.statistics.exits == 1 && mmu.statistics.shadowFaultsFixed == 1)
        #expect(problems.isEmpty)
    }
}

@Suite struct VirtualMachineQuickStart {
    @Test func aColdTwoDimensionalWalkMakesTheReferencesTheCatalogueCounts() {
        // A 4-level guest under EPT: the hardware walks the guest's own tables
        // and translates every guest-physical address through the EPT tables.
        let vm = VirtualMachine(memorySize: 64 << 20, mode: .tdp(format: .ept, levels: 4))
        vm.poke(0x1000, width: 8, 0x2007)       // PML4E[0] -> PDPT at 0x2000
        vm.poke(0x2000, width: 8, 0x3007)       // PDPTE[0] -> page directory at 0x3000
        vm.poke(0x3000, width: 8, 0x4007)       // PDE[0]   -> page table at 0x4000
        vm.poke(0x4008, width: 8, 0x100007)     // PTE[1]: 0x1000 -> 0x100000
        for (register, value) in [(ControlRegister.cr4, 0x20), (.cr3, 0x1000), (.efer, 0x100), (.cr0, 0x8000_0001)] {
            _ = vm.writeRegister(vcpu: 0, register, UInt64(value))
        }

        let first = vm.access(vcpu: 0, 0x1000, .write, width: 8, value: 42)
        let exits = vm.mmu.statistics.exits                 // EPT violations: one 2 MiB EPT page maps all of it
        vm.flush(vcpu: 0)                                   // empty the TLB: the next access walks cold
        let before = vm.counters.walkReferences
        let second = vm.access(vcpu: 0, 0x1008, .read, width: 8)
        let references = vm.counters.walkReferences - before

        #expect(first == .completed(gpa: 0x100000, value: nil))
        #expect(second == .completed(gpa: 0x100008, value: 0))
        #expect(exits == 1)
        // 2 MiB EPT pages: 3 EPT references for each of the 4 guest entries and the data, plus the 4 guest entries.
        #expect(references == 19)
        #expect(vm.peek(0x100000, width: 8) == 42)
        #expect(vm.violations.isEmpty)
    }
}
