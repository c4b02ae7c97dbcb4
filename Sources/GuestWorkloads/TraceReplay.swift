import ScenarioLanguage
import ScenarioRuntime
/// Replays a real program's memory-access trace (`LackeyTrace`) inside a
/// simulated guest process with demand paging, under any MMU.
///
/// The guest kernel boots, creates one process whose whole user half is
/// mapped on first touch — a page first fetched from becomes code (user,
/// read and execute), any other page data (user, read and write, never
/// executed) — and the process performs the trace's accesses in order: `I` a
/// fetch, `L` a read, `S` a write (of the bytes already there), `M` a read
/// then a write. An access that crosses a 4 KiB boundary is split at it, and
/// one wider than 8 bytes becomes several accesses of at most 8. A write to a
/// code page or a fetch from a data page faults once and the kernel widens
/// that page's rights (counted as a permission upgrade).
public enum TraceReplay {
    /// Checks that every access fits in the user half of `mode`'s guest.
    public static func validate(_ trace: LackeyTrace, mode: GuestPagingLayout.Mode) throws(ScenarioError) {
        let layout = GuestPagingLayout(mode: mode)
        if let record = trace.records.first(where: { $0.address + UInt64($0.size) > layout.userTop }) {
            let advice = mode.isLongMode ? "a trace of a user program on a 64-bit Linux stays below it" : "replay it with --mode 4-level or --mode 5-level"
            throw ScenarioError(
                file: trace.fileName, line: record.line, column: record.column,
                message: "expected an address in the user half of a \(mode) guest (below \(layout.userTop.hex)), found \(record.address.hex): \(advice)")
        }
    }

    /// Replays `trace`; progress is reported as (records done, records in all).
    public static func run(
        _ trace: LackeyTrace, options: WorkloadOptions,
        progress: ((Int, Int) -> Void)? = nil, log: ((String) -> Void)? = nil
    ) -> WorkloadRun {
        let layout = GuestPagingLayout(mode: options.mode)
        var pages = Set<UInt64>()
        for record in trace.records {
            for page in stride(from: record.address >> 12, through: (record.address + UInt64(record.size) - 1) >> 12, by: 1) { pages.insert(page) }
        }
        // Room for every page and its tables, with the kernel's share.
        var memory = 32 << 20 + UInt64(pages.count) * 8192
        memory = max(64 << 20, (memory + (32 << 20) - 1) & ~((32 << 20) - 1))
        memory = min(memory, layout.maximumMemory)

        var counters = Counters()
        let run = Workload.session(
            title: "trace \(trace.fileName)", options: options, memory: memory, hugeFrames: 0, log: log,
            header: ["replay of the memory trace \(trace.fileName) (\(trace.records.count) records) --mode \(options.mode)",
                     "written by `shadowmmu workload --trace`: each access followed by its result"],
            trace: { counters.all }
        ) { kernel throws(KernelPanic) in
            let process = try kernel.spawnTracedProgram()
            try kernel.switchTo(process)
            let report = max(1, trace.records.count / 200)
            for (index, record) in trace.records.enumerated() {
                counters.records += 1
                try replay(record, kernel: kernel, counters: &counters)
                if index % report == 0 || index == trace.records.count - 1 { progress?(index + 1, trace.records.count) }
            }
            counters.codePages = process.process.space.mappings.values.filter { $0.executable && !$0.writable }.count
            counters.pagesTouched = process.process.space.mappings.count
            counters.dataPages = counters.pagesTouched - counters.codePages
        }
        return run
    }

    struct Counters {
        var records = 0
        var accessesReplayed = 0
        /// Records replayed as more than one access (wider than 8 bytes, or crossing a page).
        var splitAccesses = 0
        /// Records whose bytes lie in two pages.
        var pageCrossings = 0
        var pagesTouched = 0
        var codePages = 0
        var dataPages = 0

        var all: [(String, Int)] {
            [("records", records), ("accesses_replayed", accessesReplayed), ("split_accesses", splitAccesses), ("page_crossings", pageCrossings),
             ("pages_touched", pagesTouched), ("code_pages", codePages), ("data_pages", dataPages)]
        }
    }

    static func replay(_ record: LackeyTrace.Record, kernel: GuestKernel, counters: inout Counters) throws(KernelPanic) {
        var address = record.address
        let end = record.address + UInt64(record.size)
        var pieces = 0
        while address < end {
            let pageEnd = (address | 0xfff) + 1
            let pieceEnd = min(end, pageEnd)
            if record.kind == .instruction {
                // One fetch per page the instruction's bytes lie in.
                try kernel.userAccess(.fetch, address)
                counters.accessesReplayed += 1
                pieces += 1
                address = pieceEnd
                continue
            }
            while address < pieceEnd {
                let remaining = pieceEnd - address
                let width = remaining >= 8 ? 8 : remaining >= 4 ? 4 : remaining >= 2 ? 2 : 1
                if record.kind != .store { try kernel.userAccess(.read, address, width: width) }
                if record.kind != .load { try kernel.userAccess(.write, address, width: width) }
                counters.accessesReplayed += record.kind == .modify ? 2 : 1
                pieces += 1
                address += UInt64(width)
            }
        }
        if pieces > 1 { counters.splitAccesses += 1 }
        if record.address >> 12 != (end - 1) >> 12 { counters.pageCrossings += 1 }
    }
}

extension GuestKernel {
    /// The traced program: one process whose whole user half is mapped on first touch.
    func spawnTracedProgram() throws(KernelPanic) -> GuestProcessHandle {
        try enterKernel(.exec)
        let process = GuestProcess(pid: nextPID, space: try createAddressSpace(), binary: 0)
        nextPID += 1
        process.regions = [MemoryRegion(start: 0, end: layout.userTop, kind: .firstTouch, writable: true, executable: true)]
        processes.append(process)
        counters.processesCreated += 1
        recorder.comment("spawn pid \(process.pid): the traced program")
        return GuestProcessHandle(process)
    }
}
