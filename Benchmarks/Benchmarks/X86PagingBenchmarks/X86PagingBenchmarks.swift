import Benchmark
import BenchmarkGuests
import CPagingBaseline
import X86Paging

/// Reference walks and TLB hits of the architectural CPU (issue 2's figures:
/// aims of 20 M 4-level walks/s and 100 M TLB hits/s on one core).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        scalingFactor: .mega,
        maxDuration: .seconds(3)
    )

    // Walks over 512 distinct 4 KiB pages (A bits already set, so each walk is
    // its loads and a permission check, as a TLB miss costs).
    for (mode, name) in [(PagingMode.level4, "4-level"), (.pae, "PAE"), (.level5, "5-level")] {
        Benchmark("Reference walk, \(name) guest (TLB off)") { benchmark in
            let guest = WalkBenchmarkGuest(mode: mode)
            var sink: UInt64 = 0
            benchmark.startMeasurement()
            for iteration in benchmark.scaledIterations {
                sink &+= guest.walk(page: iteration & 511)
            }
            blackHole(sink)
        }
    }

    // Accesses that hit the TLB: 64 hot pages, permissions re-checked on each.
    Benchmark("TLB-hit access, 4-level guest") { benchmark in
        let guest = WalkBenchmarkGuest(mode: .level4)
        let cpu = guest.cpu
        let memory = guest.memory
        for page in 0..<64 { _ = cpu.translate(guest.address(page: page), .read, memory: memory) }
        var sink: UInt64 = 0
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            if case .physical(let address) = cpu.translate(guest.address(page: iteration & 63), .read, memory: memory) {
                sink &+= address
            }
        }
        blackHole(sink)
    }

    registerPlainCRatios()
}

/// The same two hot paths against plain C -O2 (`CPagingBaseline`), timed back
/// to back in each sample so that the ratio survives a busy machine. Aim
/// (issue 14): at most 150 % for both.
func registerPlainCRatios() {
    let walkRatio = BenchmarkMetric.custom("Swift walk / plain C walk (%)", polarity: .prefersSmaller, useScalingFactor: false)
    let hitRatio = BenchmarkMetric.custom("Swift TLB hit / plain C TLB hit (%)", polarity: .prefersSmaller, useScalingFactor: false)
    let configuration = Benchmark.Configuration(metrics: [walkRatio, hitRatio], scalingFactor: .one, maxDuration: .seconds(10), maxIterations: 20)
    let count = 2_000_000

    Benchmark("Hot paths vs plain C: 4-level walk, TLB hit", configuration: configuration) { benchmark in
        let guest = WalkBenchmarkGuest(mode: .level4)
        let size: UInt64 = 16 << 20
        let flat = UnsafeMutablePointer<UInt8>.allocate(capacity: Int(size))
        defer { flat.deallocate() }
        flat.initialize(repeating: 0, count: Int(size))
        var registers = CPagingRegisters()
        registers.cr3 = cpaging_build_benchmark_guest(flat, size)
        registers.wp = 1
        registers.nxe = 1
        registers.maxphyaddr = Int32(guest.registers.maxPhysicalAddressBits)

        var swiftSum: UInt64 = 0
        let swiftWalk = nanoseconds { for iteration in 0..<count { swiftSum &+= guest.walk(page: iteration & 511) } }
        let cSum = cpaging_walk_loop(flat, size, &registers, UInt64(count))
        let cWalk = nanoseconds { blackHole(cpaging_walk_loop(flat, size, &registers, UInt64(count))) }
        precondition(swiftSum == cSum, "the walks disagree: \(swiftSum) vs \(cSum)")

        let cpu = guest.cpu
        let memory = guest.memory
        let hot = 64
        for page in 0..<hot { _ = cpu.translate(guest.address(page: page), .read, memory: memory) }
        var tlb = CPagingTLB()
        cpaging_tlb_init(&tlb)
        for page in 0..<hot {
            var physical: UInt64 = 0
            let linear = guest.address(page: page)
            precondition(cpaging_walk4(flat, size, &registers, linear, Int32(CPAGING_READ), Int32(CPAGING_SUPERVISOR), &physical) == 0)
            cpaging_tlb_insert(&tlb, linear, physical, 1, 1, 0, 0, 0, 0)
        }
        var hits: UInt64 = 0
        let swiftHit = nanoseconds {
            for iteration in 0..<count {
                if case .physical(let address) = cpu.translate(guest.address(page: iteration & (hot - 1)), .read, memory: memory) { hits &+= address }
            }
        }
        let cHits = cpaging_tlb_hit_loop(&tlb, &registers, UInt64(hot), UInt64(count))
        let cHit = nanoseconds { blackHole(cpaging_tlb_hit_loop(&tlb, &registers, UInt64(hot), UInt64(count))) }
        precondition(hits == cHits, "the TLB hits disagree: \(hits) vs \(cHits)")
        benchmark.measurement(walkRatio, Int((100 * swiftWalk / cWalk).rounded()))
        benchmark.measurement(hitRatio, Int((100 * swiftHit / cHit).rounded()))
    }
}

/// A guest with 512 mapped 4 KiB pages under one page table, in `mode`.
final class WalkBenchmarkGuest {
    let memory = SparseMemory(size: 64 << 20)
    let cpu = ArchitecturalCPU()
    let registers: ControlRegisters
    let base: UInt64 = 0x4000_0000

    init(mode: PagingMode) {
        let pageTable: UInt64 = 0x10000
        for page in 0..<512 {
            memory.store(pageTable + UInt64(page) * 8, width: 8, 0x20_0000 + UInt64(page) << 12 | 0x27)
        }
        // Tables above the page table: PD at 0x11000, PDPT 0x12000, PML4 0x13000, PML5 0x14000.
        memory.store(0x11000, width: 8, pageTable | 0x27)
        memory.store(0x12000 + 8, width: 8, 0x11000 | (mode == .pae ? 0x1 : 0x27))  // index 1: linear 0x4000_0000
        memory.store(0x13000, width: 8, 0x12000 | 0x27)
        memory.store(0x14000, width: 8, 0x13000 | 0x27)
        let cr3: UInt64 = switch mode {
        case .pae: 0x12000
        case .level5: 0x14000
        default: 0x13000
        }
        cpu.write(.cr4, mode == .level5 ? 0x1020 : 0x20, memory: memory)
        cpu.write(.cr3, cr3, memory: memory)
        if mode != .pae { cpu.write(.efer, 0x100, memory: memory) }
        cpu.write(.cr0, 0x8001_0001, memory: memory)
        precondition(cpu.registers.mode == mode, "benchmark guest set up \(cpu.registers.mode), wanted \(mode)")
        registers = cpu.registers
        precondition(walk(page: 3) == 0x20_3000, "benchmark guest's tables do not translate")
    }

    @inline(__always)
    func address(page: Int) -> UInt64 { base + UInt64(page) << 12 }

    @inline(__always)
    func walk(page: Int) -> UInt64 {
        if case .translated(let translation) = Walker.walk(address(page: page), .read, registers: registers, memory: memory) {
            return translation.physicalAddress
        }
        return 0
    }
}
