import Testing
import X86Paging

// The quick start of the X86Paging catalogue (Sources/X86Paging/X86Paging.docc),
// compiled and run. The documentation tests require the catalogue's code to
// appear here line for line: change both together.

@Suite struct X86PagingQuickStart {
    @Test func aFourLevelGuestTranslatesAndFaultsAsTheCatalogueSays() {
        // 64 MiB of physical memory holding a 4-level page-table hierarchy.
        let memory = SparseMemory(size: 64 << 20)
        memory.store(0x1000, width: 8, 0x2007)      // PML4E[0] -> PDPT at 0x2000 (P RW US)
        memory.store(0x2000, width: 8, 0x3007)      // PDPTE[0] -> page directory at 0x3000
        memory.store(0x3000, width: 8, 0x4007)      // PDE[0]   -> page table at 0x4000
        memory.store(0x4008, width: 8, 0x100007)    // PTE[1]: linear 0x1000 -> physical 0x100000

        // Enter 4-level paging as a kernel does: CR4.PAE, CR3, EFER.LME, then CR0.PG.
        let cpu = ArchitecturalCPU()
        cpu.write(.cr4, 0x20, memory: memory)
        cpu.write(.cr3, 0x1000, memory: memory)
        cpu.write(.efer, 0x100, memory: memory)
        cpu.write(.cr0, 0x8000_0001, memory: memory)

        // A user read: a TLB miss, a walk, and the accessed flags set on the way.
        let result = cpu.translate(0x1234, MemoryAccess(.read, .user), memory: memory)
        let pte = PTE64(rawValue: memory.load(0x4008, width: 8))

        // The reference walker on its own, traced entry by entry.
        var trace = WalkTrace()
        let fault = Walker.walk(0x5000, .write, registers: cpu.registers, memory: memory, tracer: &trace)

        #expect(cpu.registers.mode == .level4)
        #expect(result == .physical(0x100234))
        #expect(pte.contains(.accessed) && !pte.contains(.dirty))
        #expect(fault == .pageFault(PageFaultErrorCode(rawValue: 0x2)))
        #expect(trace.memoryReferences == [0x1000, 0x2000, 0x3000, 0x4028])
        #expect(trace.steps.last?.decision == .notPresent)
    }
}
