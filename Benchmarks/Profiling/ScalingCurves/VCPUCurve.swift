import BenchmarkGuests
import ShadowMMU
import X86Paging

/// Cost and memory as vCPUs grow: one VM with N vCPUs, each running its own
/// two address spaces (two sets of guest tables, like two processes) over
/// `pages` pages of frames no other vCPU maps, each frame holding a value
/// that names it (every read checks it).
///
/// Per point: first-touch faults (vCPUs take turns, a page each); TLB-hit
/// reads (vCPUs take turns); CR3 switches between each vCPU's two address
/// spaces followed by a read; and remote flushes: the host invalidates one
/// page a vCPU maps (an MMU-notifier invalidation: the spte is dropped and
/// every vCPU's TLB flushed, KVM's `kvm_flush_remote_tlbs`), after which
/// every vCPU re-enters and reads, and the owner faults the page back in.
struct VCPUCurve {
    var counts = [1, 2, 4, 8, 16, 32, 64]
    var pages = 256
    var rounds = 200
    var hitReads = 1 << 19

    static let memorySize: UInt64 = 256 << 20
    /// Each address space's tables get this much room from 1 MiB up.
    static let tableRoom: UInt64 = 64 << 10
    static let dataBase: UInt64 = 16 << 20

    struct Point {
        var firstTouch: Double
        /// Remote TLB flushes and VM entries per fault while faulting in: a
        /// fault that flushed every vCPU would show here.
        var flushesPerFault: Double
        var entriesPerFault: Double
        var tlbHit: Double
        var switchAndRead: Double
        var remoteFlushRound: Double
        var vmHeapPerVCPU: Double
        var faultHeapPerVCPU: Double
        var hostTableFrames: Double
        var shadowPages: Double
    }

    static let columns = [
        "mmu", "vcpus", "pages_per_vcpu", "repetitions", "first_touch_ns", "remote_flushes_per_fault", "vm_entries_per_fault", "tlb_hit_ns", "cr3_switch_read_ns",
        "remote_flush_round_ns", "remote_flush_round_ns_per_vcpu", "vm_heap_bytes_per_vcpu", "fault_heap_bytes_per_vcpu", "host_table_frames", "shadow_pages",
    ]

    func run(repetitions: Int, progress: (String) -> Void) -> CurveTable {
        var points: [String: [Point]] = [:]
        for repetition in 0..<repetitions {
            for count in counts {
                for mmu in CurveMMU.allCases {
                    progress("vCPUs: \(count) under \(mmu.rawValue) (\(repetition + 1)/\(repetitions))")
                    points["\(mmu.rawValue) \(count)", default: []].append(measure(mmu: mmu, vcpus: count))
                }
            }
        }
        var table = CurveTable(name: "vcpus", columns: Self.columns)
        for mmu in CurveMMU.allCases {
            for count in counts {
                let runs = points["\(mmu.rawValue) \(count)"]!
                func figure(_ value: (Point) -> Double) -> String { cell(median(runs.map(value))) }
                table.append([
                    mmu.rawValue, cell(count), cell(pages), cell(repetitions), figure(\.firstTouch), figure(\.flushesPerFault), figure(\.entriesPerFault), figure(\.tlbHit),
                    figure(\.switchAndRead), figure(\.remoteFlushRound), figure { $0.remoteFlushRound / Double(count) },
                    figure(\.vmHeapPerVCPU), figure(\.faultHeapPerVCPU), figure(\.hostTableFrames), figure(\.shadowPages),
                ])
            }
        }
        return table
    }

    /// The guest-physical frame of vCPU `vcpu`'s page `page` in address space `space`.
    func frame(vcpu: Int, space: Int, page: Int) -> UInt64 {
        Self.dataBase + UInt64((vcpu * 2 + space) * pages + page) << 12
    }

    static func signature(vcpu: Int, space: Int, page: Int) -> UInt64 { 0xc0de_0000_0000 | UInt64(vcpu) << 20 | UInt64(space) << 16 | UInt64(page) }

    func measure(mmu: CurveMMU, vcpus: Int) -> Point {
        require(Self.dataBase + UInt64(vcpus * 2 * pages) << 12 <= Self.memorySize, "the vCPUs' pages do not fit the guest")
        require(1 << 20 + UInt64(vcpus * 2) * Self.tableRoom <= Self.dataBase, "the vCPUs' tables do not fit below the data")
        let heapAtStart = heapBytesInUse()
        let guest = ShadowGuest(mode: .level4, memorySize: Self.memorySize, mmu: mmu.mode, vcpus: vcpus)
        let vm = guest.vm
        // The machine itself: vCPUs, their hardware TLBs, the MMU's contexts.
        let vmHeap = heapBytesInUse() - heapAtStart
        // spaces[v][s]: vCPU v's address space s, both at the same linear addresses.
        var spaces: [[GuestTableBuilder]] = []
        for vcpu in 0..<vcpus {
            var pair: [GuestTableBuilder] = []
            for space in 0..<2 {
                let base = 1 << 20 + UInt64(vcpu * 2 + space) * Self.tableRoom
                var tables = GuestTableBuilder(
                    mode: .level4, tableBase: base, tableLimit: base + Self.tableRoom,
                    poke: { vm.poke($0, width: 8, $1) }, peek: { vm.peek($0, width: 8) })
                for page in 0..<pages {
                    tables.map(guest.linear(page: page), to: frame(vcpu: vcpu, space: space, page: page))
                    vm.poke(frame(vcpu: vcpu, space: space, page: page), width: 8, Self.signature(vcpu: vcpu, space: space, page: page))
                }
                pair.append(tables)
            }
            spaces.append(pair)
            guest.enablePaging(vcpu: vcpu, with: pair[0])
        }
        mmu.prepare(vm.mmu)
        let label = "\(mmu.rawValue), \(vcpus) vCPUs"
        func read(_ vcpu: Int, _ space: Int, _ page: Int) {
            if guest.read(vcpu: vcpu, guest.linear(page: page)) != Self.signature(vcpu: vcpu, space: space, page: page) {
                fatalError("\(label): vCPU \(vcpu) reads the wrong value at page \(page) of address space \(space)")
            }
        }
        // Each vCPU's first read maps its tables (and under shadow paging builds
        // their shadow pages): not timed, so every timed read is one fault.
        // vCPU 0's also brings the host's table memory into being (a 2 MiB
        // second-level table of its sparse memory): left out of the heap
        // figure, which is then what each further vCPU's faults cost.
        read(0, 0, 0)
        let heapBeforeFaults = heapBytesInUse()
        for vcpu in 1..<vcpus { read(vcpu, 0, 0) }

        var before = vm.mmu.statistics
        let entriesBefore = vm.counters.vmEntries
        let faultTime = nanoseconds {
            for page in 1..<pages { for vcpu in 0..<vcpus { read(vcpu, 0, page) } }
        }
        let faults = vm.mmu.statistics.shadowFaultsFixed - before.shadowFaultsFixed
        require(faults == vcpus * (pages - 1), "\(label): \(faults) faults fixed for \(vcpus * (pages - 1)) first touches")
        let flushesPerFault = Double(vm.mmu.statistics.remoteTLBFlushes - before.remoteTLBFlushes) / Double(faults)
        let entriesPerFault = Double(vm.counters.vmEntries - entriesBefore) / Double(faults)
        // What faulting the pages in cost: shadow pages (or TDP tables) and their bookkeeping.
        let faultHeapPerVCPU = Double(heapBytesInUse() - heapBeforeFaults) / Double(vcpus)

        // TLB hits: every vCPU's pages are in its own TLB after one more pass.
        for vcpu in 0..<vcpus { for page in 0..<pages { read(vcpu, 0, page) } }
        before = vm.mmu.statistics
        var counters = vm.counters
        let passes = max(1, hitReads / (vcpus * pages))
        let hitTime = nanoseconds {
            for _ in 0..<passes { for vcpu in 0..<vcpus { for page in 0..<pages { read(vcpu, 0, page) } } }
        }
        let hitReadsDone = passes * vcpus * pages
        require(vm.mmu.statistics.exits == before.exits, "\(label): a TLB-hit read exited")
        require(vm.counters.hardwareTLBHits - counters.hardwareTLBHits == hitReadsDone, "\(label): a read missed the TLB")

        // CR3 switches: each vCPU alternates between its two address spaces
        // (both run once first, so every switch finds its root cached).
        func switchTo(_ vcpu: Int, _ space: Int) {
            require(vm.writeRegister(vcpu: vcpu, .cr3, spaces[vcpu][space].root), "\(label): MOV CR3 refused")
        }
        for vcpu in 0..<vcpus {
            switchTo(vcpu, 1)
            for page in 0..<pages { read(vcpu, 1, page) }
            switchTo(vcpu, 0)
            read(vcpu, 0, 0)
        }
        before = vm.mmu.statistics
        let switchRounds = max(1, rounds * 8 / vcpus)
        let switchTime = nanoseconds {
            for round in 0..<switchRounds {
                for vcpu in 0..<vcpus {
                    let space = 1 - round & 1
                    switchTo(vcpu, space)
                    read(vcpu, space, round % pages)
                }
            }
        }
        let switches = switchRounds * vcpus
        let after = vm.mmu.statistics
        require(after.exits == before.exits, "\(label): a read after a CR3 switch exited")
        if mmu == .shadow {
            require(after.cachedRootHits - before.cachedRootHits == switches, "\(label): a CR3 switch missed the cached roots")
        }
        // Back in address space 0 everywhere (even rounds end there).
        for vcpu in 0..<vcpus {
            switchTo(vcpu, 0)
            read(vcpu, 0, 0)
        }

        // Remote flushes: each round the host takes one page of one vCPU away.
        before = vm.mmu.statistics
        counters = vm.counters
        let entries = vm.vcpus.map(\.entries)
        let flushTime = nanoseconds {
            for round in 0..<rounds {
                let owner = round % vcpus
                let page = 1 + round % (pages - 1)
                vm.mmu.invalidateRange(frame(vcpu: owner, space: 0, page: page), size: 4096)
                for vcpu in 0..<vcpus { read(vcpu, 0, 0) }
                read(owner, 0, page)
            }
        }
        let flushes = vm.mmu.statistics.remoteTLBFlushes - before.remoteTLBFlushes
        require(flushes == rounds, "\(label): \(flushes) remote flushes in \(rounds) invalidations")
        let refaults = vm.mmu.statistics.shadowFaultsFixed - before.shadowFaultsFixed
        require(refaults == rounds, "\(label): \(refaults) faults to map \(rounds) invalidated pages back")
        for (vcpu, count) in entries.enumerated() {
            require(vm.vcpus[vcpu].entries - count >= rounds, "\(label): vCPU \(vcpu) kept running through a remote flush")
        }
        guest.checkHealthy(label)
        return Point(
            firstTouch: faultTime / Double(faults), flushesPerFault: flushesPerFault, entriesPerFault: entriesPerFault, tlbHit: hitTime / Double(hitReadsDone), switchAndRead: switchTime / Double(switches),
            remoteFlushRound: flushTime / Double(rounds), vmHeapPerVCPU: Double(vmHeap) / Double(vcpus), faultHeapPerVCPU: faultHeapPerVCPU,
            hostTableFrames: Double(vm.host.tableFramesInUse), shadowPages: Double(vm.mmu.hashedPages.count))
    }
}
