import Benchmark
import BenchmarkGuests
import ShadowMMU
import VirtualMachine
import X86Paging

/// Two-dimensional paging and nested paging (issue 4): EPT-violation faults
/// of KVM's TDP MMU, the hardware's two-dimensional TLB-miss walks, and
/// faults on L0's shadow of a PAE L1's nested page tables (row 9: a 4-level
/// L0, two local levels over the shadows of L1's tables).
func registerTwoDimensionalBenchmarks() {
    // Each sample: a fresh 4-level guest on 4-level EPT with dirty logging on
    // (so the direct map is built from 4 KiB pages: one EPT violation per
    // page), reading 1000 consecutive guest frames once each — like the
    // shadow first-touch benchmark, a new direct page table every 512 faults.
    Benchmark("EPT-violation fault, 4-level guest on 4-level EPT (4 KiB direct map)") { benchmark in
        let count = benchmark.scaledIterations.count
        let guest = ShadowGuest(mode: .level4, memorySize: 1 << 30, mmu: .tdp(format: .ept, levels: 4))
        let dataBase: UInt64 = 8 << 20
        for page in 0..<count { guest.tables.map(guest.linear(page: page), to: dataBase + UInt64(page) << 12) }
        guest.enablePaging()
        guest.vm.mmu.startDirtyLogging()
        _ = guest.read(guest.linear(page: 0))  // the guest's tables mapped once
        let before = guest.vm.mmu.statistics.shadowFaultsFixed
        var sink: UInt64 = 0
        benchmark.startMeasurement()
        for page in benchmark.scaledIterations.dropFirst() {
            sink &+= guest.read(guest.linear(page: page))
        }
        benchmark.stopMeasurement()
        blackHole(sink)
        precondition(guest.vm.mmu.statistics.shadowFaultsFixed - before >= count - 1, "expected an EPT violation per page")
        guest.checkHealthy("EPT-violation benchmark")
    }

    // 4096 pages cycled through a 1024-entry direct-mapped TLB: every read
    // misses and walks (24 memory references, all tables already mapped).
    Benchmark("Two-dimensional TLB-miss walk + read, 4-level guest on 4-level EPT") { benchmark in
        let pages = 4096
        let guest = ShadowGuest(mode: .level4, memorySize: 64 << 20, mmu: .tdp(format: .ept, levels: 4))
        for page in 0..<pages { guest.tables.map(guest.linear(page: page), to: (8 << 20) + UInt64(page) << 12) }
        guest.enablePaging()
        for page in 0..<pages { _ = guest.read(guest.linear(page: page)) }
        let walks = guest.vm.counters.hardwareWalks
        var sink: UInt64 = 0
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            sink &+= guest.read(guest.linear(page: iteration & (pages - 1)))
        }
        benchmark.stopMeasurement()
        blackHole(sink)
        precondition(guest.vm.counters.hardwareWalks - walks == benchmark.scaledIterations.count, "expected a walk per read")
    }

    // Each sample: a fresh VM whose L1 (PAE paging, AMD) maps 1000 L2 pages
    // to consecutive L1 frames with 4 KiB nested pages; L2 runs with paging off, so each first read is
    // one nested fault on L0's shadow of L1's tables (row 9).
    Benchmark("Shadow-NPT fault, PAE L1 on a 4-level L0") { benchmark in
        let count = benchmark.scaledIterations.count
        let vm = VirtualMachine(memorySize: 1 << 30, mode: .tdp(format: .x86, levels: 4))
        var nested = GuestTableBuilder(
            mode: .pae, tableBase: 1 << 20, tableLimit: 8 << 20,
            poke: { vm.poke($0, width: 8, $1) }, peek: { vm.peek($0, width: 8) })
        let l2Base: UInt64 = 0x4000_0000
        for page in 0..<count { nested.map(l2Base + UInt64(page) << 12, to: (8 << 20) + UInt64(page) << 12) }
        let model = CPUModel(maxPhysicalAddressBits: 46, vendor: .amd, latchesPDPTEs: false)
        let l1 = ControlRegisters(
            model: model, cr0: CR0(rawValue: 0x8001_0001), cr3: nested.root, cr4: CR4(rawValue: 0x20), efer: EFER(rawValue: 0x800))
        vm.enterNested(vcpu: 0, paging: .npt(host: l1), flush: false)
        var sink: UInt64 = 0
        benchmark.startMeasurement()
        for page in benchmark.scaledIterations {
            guard case .completed(_, let value?) = vm.access(vcpu: 0, l2Base + UInt64(page) << 12, .read, width: 8) else {
                preconditionFailure("an L2 read did not complete")
            }
            sink &+= value
        }
        benchmark.stopMeasurement()
        blackHole(sink)
        precondition(vm.mmu.statistics.nestedExits >= count, "expected a nested fault per page")
        precondition(vm.mmu.audit(at: "shadow-NPT benchmark").isEmpty && vm.violations.isEmpty)
    }

    // Row 9 under each root design: L1 (PAE paging, AMD) re-enters L2 with
    // VMRUN, one L2 read per entry. A PAE L1's nested root is never cached, so
    // every entry frees it and builds a new one: two local levels (a PML4
    // padding page over the PAE root) in the series, filled on demand (the
    // read faults once); filled at load under local-eager; upstream's raw
    // pml4_root/pae_root under special, its entries read from L1's nPDPTEs at
    // load. The ratios are what the series costs a nested PAE hypervisor.
    for (roots, label) in [(RootDesign.local, "local root rebuilt"), (.localEager, "local-eager root rebuilt"), (.special, "special root rebuilt")] {
        Benchmark("Nested VMRUN + read, PAE L1 on a 4-level L0 (\(label))") { benchmark in
            let guest = NestedPAEGuest(roots: roots)
            let vm = guest.vm
            _ = guest.enterAndRead()  // L0's shadows of L1's nested tables exist from here on
            measureRootRebuilds(benchmark, vm.mmu, roots: roots, per: "entry") { _ in guest.enterAndRead() }
            precondition(vm.mmu.audit(at: "nested VMRUN benchmark").isEmpty && vm.violations.isEmpty)
        }
    }
}
