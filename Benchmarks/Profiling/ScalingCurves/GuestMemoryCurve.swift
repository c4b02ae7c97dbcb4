import BenchmarkGuests
import ShadowMMU
import X86Paging

/// Cost and memory as guest memory grows, with the work held fixed: a
/// 4-level guest maps `pages` pages at consecutive linear addresses to
/// frames spread evenly over all of its memory (sparse: the same number of
/// pages touched in a 64 MiB guest and in a 64 GiB one), each holding a
/// value that names it. Every read checks that value, so a wrong translation
/// stops the run instead of drawing a point.
struct GuestMemoryCurve {
    static let sizes: [UInt64] = [64 << 20, 256 << 20, 1 << 30, 4 << 30, 16 << 30, 64 << 30]
    /// Guest tables below, data frames from here up.
    static let dataBase: UInt64 = 8 << 20
    /// Faults timed together; the p50 is over batches (a clock read per fault
    /// would weigh on a few hundred nanoseconds).
    static let batch = 64
    /// Pages whose translations the TLB-hit reads cycle through (the
    /// hardware TLB holds 1024).
    static let hotPages = 64

    var pages = 4096
    var hitReads = 1 << 20
    var missReads = 1 << 19

    struct Point {
        var firstTouchP50: Double
        var firstTouchMean: Double
        var tlbHit: Double
        var tlbMiss: Double
        var faultHeapPerPage: Double
        var setupHeapBytes: Double
        var hostTableFrames: Double
    }

    static let columns = [
        "mmu", "guest_memory_bytes", "guest_memory", "touched_pages", "repetitions",
        "first_touch_ns_p50", "first_touch_ns_p50_best", "first_touch_ns_mean", "tlb_hit_ns", "tlb_miss_ns",
        "fault_heap_bytes_per_page", "setup_heap_bytes", "host_table_frames",
    ]

    /// Every size under every MMU, `repetitions` times over (each a fresh
    /// guest, interleaved so that no point always runs on a warmer machine);
    /// each figure is the median over the repetitions, and the first-touch
    /// p50 also the best repetition's (the least disturbed on a shared machine).
    func run(repetitions: Int, progress: (String) -> Void) -> CurveTable {
        var points: [String: [Point]] = [:]
        for repetition in 0..<repetitions {
            for size in Self.sizes {
                for mmu in CurveMMU.allCases {
                    progress("guest memory: \(Self.label(size)) under \(mmu.rawValue) (\(repetition + 1)/\(repetitions))")
                    points["\(mmu.rawValue) \(size)", default: []].append(measure(mmu: mmu, memorySize: size))
                }
            }
        }
        var table = CurveTable(name: "guest-memory", columns: Self.columns)
        for mmu in CurveMMU.allCases {
            for size in Self.sizes {
                let runs = points["\(mmu.rawValue) \(size)"]!
                func figure(_ value: (Point) -> Double) -> String { cell(median(runs.map(value))) }
                table.append([
                    mmu.rawValue, cell(Int(size)), Self.label(size), cell(pages), cell(repetitions),
                    figure(\.firstTouchP50), cell(runs.map(\.firstTouchP50).min()!), figure(\.firstTouchMean), figure(\.tlbHit), figure(\.tlbMiss),
                    figure(\.faultHeapPerPage), figure(\.setupHeapBytes), figure(\.hostTableFrames),
                ])
            }
        }
        return table
    }

    static func label(_ size: UInt64) -> String { size >= 1 << 30 ? "\(size >> 30)GiB" : "\(size >> 20)MiB" }

    /// The value page `page` holds at its first word.
    static func signature(_ page: Int) -> UInt64 { 0x5ca1_0000_0000 | UInt64(page) }

    func measure(mmu: CurveMMU, memorySize: UInt64) -> Point {
        require(pages.isMultiple(of: Self.batch) && pages > Self.hotPages, "pages: a multiple of \(Self.batch), more than \(Self.hotPages)")
        let heapAtStart = heapBytesInUse()
        let guest = ShadowGuest(mode: .level4, memorySize: memorySize, tableLimit: Self.dataBase, mmu: mmu.mode)
        let vm = guest.vm
        let frameStride = max(1, (memorySize - Self.dataBase) / 4096 / UInt64(pages))
        for page in 0..<pages {
            let gpa = Self.dataBase + UInt64(page) * frameStride << 12
            guest.tables.map(guest.linear(page: page), to: gpa)
            vm.poke(gpa, width: 8, Self.signature(page))
        }
        guest.enablePaging()
        mmu.prepare(vm.mmu)
        require(pages >= 2 * vm.vcpus[0].tlb.capacity, "pages: at least twice the hardware TLB's \(vm.vcpus[0].tlb.capacity) entries, so that cycling through them misses")

        // The first page of each guest page table is touched before timing:
        // under TDP its walk maps the guest's table frames too, and under
        // shadow paging it builds the table's shadow page. Every timed read is
        // then one fault that maps one 4 KiB page into a table that exists.
        let warmed = stride(from: 0, to: pages, by: 512)
        for page in warmed { require(guest.read(guest.linear(page: page)) == Self.signature(page), "page \(page) reads the wrong value") }
        let timed = (0..<pages).filter { !$0.isMultiple(of: 512) }
        let setupHeap = heapBytesInUse() - heapAtStart

        let heapBefore = heapBytesInUse()
        let before = vm.mmu.statistics
        var batchTimes: [Double] = []
        var total = 0.0
        for start in stride(from: 0, to: timed.count, by: Self.batch) {
            let chunk = timed[start..<min(start + Self.batch, timed.count)]
            let time = nanoseconds {
                for page in chunk where guest.read(guest.linear(page: page)) != Self.signature(page) {
                    fatalError("\(mmu.rawValue), \(Self.label(memorySize)): page \(page) reads the wrong value")
                }
            }
            total += time
            if chunk.count == Self.batch { batchTimes.append(time / Double(chunk.count)) }
        }
        let faultHeap = heapBytesInUse() - heapBefore
        let faults = vm.mmu.statistics.shadowFaultsFixed - before.shadowFaultsFixed
        require(faults == timed.count, "\(mmu.rawValue), \(Self.label(memorySize)): \(faults) faults fixed for \(timed.count) first touches")

        let tlbHit = timeReads(guest, count: hitReads, pages: Self.hotPages, expectHits: true, what: "\(mmu.rawValue) \(Self.label(memorySize)) TLB hit")
        let tlbMiss = timeReads(guest, count: missReads, pages: pages, expectHits: false, what: "\(mmu.rawValue) \(Self.label(memorySize)) TLB miss")
        guest.checkHealthy("\(mmu.rawValue), \(Self.label(memorySize)) guest")
        return Point(
            firstTouchP50: median(batchTimes), firstTouchMean: total / Double(timed.count), tlbHit: tlbHit, tlbMiss: tlbMiss,
            faultHeapPerPage: Double(faultHeap) / Double(timed.count), setupHeapBytes: Double(setupHeap),
            hostTableFrames: Double(vm.host.tableFramesInUse))
    }

    /// Nanoseconds per read of `count` reads cycling through the first `pages`
    /// pages, after two warm-up passes; every read must hit the hardware TLB
    /// (`expectHits`) or walk, and none may exit.
    func timeReads(_ guest: ShadowGuest, count: Int, pages: Int, expectHits: Bool, what: String) -> Double {
        for _ in 0..<2 {
            for page in 0..<pages { require(guest.read(guest.linear(page: page)) == Self.signature(page), "\(what): page \(page) reads the wrong value") }
        }
        let exits = guest.vm.mmu.statistics.exits
        let counters = guest.vm.counters
        var page = 0
        let time = nanoseconds {
            for _ in 0..<count {
                if guest.read(guest.linear(page: page)) != Self.signature(page) { fatalError("\(what): page \(page) reads the wrong value") }
                page = page + 1 == pages ? 0 : page + 1
            }
        }
        require(guest.vm.mmu.statistics.exits == exits, "\(what): a read exited")
        let hits = guest.vm.counters.hardwareTLBHits - counters.hardwareTLBHits
        let walks = guest.vm.counters.hardwareWalks - counters.hardwareWalks
        require(expectHits ? hits == count : walks == count, "\(what): \(hits) TLB hits and \(walks) walks in \(count) reads")
        return time / Double(count)
    }
}
