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
    /// What a first pass over a trace learns: it parses, every access fits
    /// the guest, how many records and distinct pages it has (the guest's
    /// memory is sized from them). Nothing is kept of the records themselves.
    public struct Survey: Sendable, Equatable {
        public var fileName: String
        public var records: Int
        public var pages: Int
    }

    /// Reads `stream` to its end, checking every record against `mode`'s user half.
    public static func survey(_ stream: inout some LackeyRecordStream, fileName: String, mode: GuestPagingLayout.Mode) throws(ScenarioError) -> Survey {
        let layout = GuestPagingLayout(mode: mode)
        var pages = Set<UInt64>()
        // Pages seen lately (direct-mapped): most records touch one of a few pages.
        var recent = [UInt64](repeating: .max, count: 256)
        var records = 0
        while let record = try stream.nextRecord() {
            records += 1
            guard record.address + UInt64(record.size) <= layout.userTop else {
                let advice = mode.isLongMode ? "a trace of a user program on a 64-bit Linux stays below it" : "replay it with --mode 4-level or --mode 5-level"
                throw ScenarioError(
                    file: fileName, line: record.line, column: record.column,
                    message: "expected an address in the user half of a \(mode) guest (below \(layout.userTop.hex)), found \(record.address.hex): \(advice)")
            }
            for page in stride(from: record.address >> 12, through: (record.address + UInt64(record.size) - 1) >> 12, by: 1)
            where recent[Int(truncatingIfNeeded: page & 255)] != page {
                pages.insert(page)
                recent[Int(truncatingIfNeeded: page & 255)] = page
            }
        }
        return Survey(fileName: fileName, records: records, pages: pages.count)
    }

    /// Checks that every access of a parsed trace fits in the user half of `mode`'s guest.
    public static func validate(_ trace: LackeyTrace, mode: GuestPagingLayout.Mode) throws(ScenarioError) {
        var records = LackeyTrace.Records(trace)
        _ = try survey(&records, fileName: trace.fileName, mode: mode)
    }

    /// Replays the trace file at `path` in two streaming passes (the survey,
    /// then the replay): memory does not grow with the trace's length.
    public static func replayFile(
        _ path: String, options: WorkloadOptions,
        progress: ((Int, Int) -> Void)? = nil, log: ((String) -> Void)? = nil
    ) throws(ScenarioError) -> WorkloadRun {
        var first = try LackeyTraceReader(path: path)
        let survey = try survey(&first, fileName: path, mode: options.mode)
        var second = try LackeyTraceReader(path: path)
        return try run(&second, survey: survey, options: options, progress: progress, log: log)
    }

    /// Replays a parsed trace (it must have passed `validate`).
    public static func run(
        _ trace: LackeyTrace, options: WorkloadOptions,
        progress: ((Int, Int) -> Void)? = nil, log: ((String) -> Void)? = nil
    ) -> WorkloadRun {
        var records = LackeyTrace.Records(trace)
        let survey = (try? survey(&records, fileName: trace.fileName, mode: options.mode))
            ?? Survey(fileName: trace.fileName, records: trace.records.count, pages: trace.records.count)
        records = LackeyTrace.Records(trace)
        do {
            return try run(&records, survey: survey, options: options, progress: progress, log: log)
        } catch {
            preconditionFailure("a parsed trace has no parse errors: \(error)")
        }
    }

    /// Replays `stream`, whose `survey` was taken; progress is reported as
    /// (records done, records in all). A parse error can only come from a
    /// trace that changed since its survey; it ends the replay.
    public static func run(
        _ stream: inout some LackeyRecordStream, survey: Survey, options: WorkloadOptions,
        progress: ((Int, Int) -> Void)? = nil, log: ((String) -> Void)? = nil
    ) throws(ScenarioError) -> WorkloadRun {
        let layout = GuestPagingLayout(mode: options.mode)
        // Room for every page and its tables, with the kernel's share.
        var memory = 32 << 20 + UInt64(survey.pages) * 8192
        memory = max(64 << 20, (memory + (32 << 20) - 1) & ~((32 << 20) - 1))
        memory = min(memory, layout.maximumMemory)

        // Shared by the session's closures: in a box, so that the per-record
        // updates are not the dynamically checked accesses of a captured `var`.
        let tally = Tally()
        var parseError: ScenarioError?
        let run = Workload.session(
            title: "trace \(survey.fileName)", options: options, memory: memory, hugeFrames: 0, log: log,
            header: ["replay of the memory trace \(survey.fileName) (\(survey.records) records) --mode \(options.mode)",
                     "written by `shadowmmu workload --trace`: each access followed by its result"],
            trace: { tally.counters.all }
        ) { kernel throws(KernelPanic) in
            let process = try kernel.spawnTracedProgram()
            try kernel.switchTo(process)
            let report = max(1, survey.records / 200)
            while true {
                let record: LackeyTrace.Record
                do throws(ScenarioError) {
                    guard let next = try stream.nextRecord() else { break }
                    record = next
                } catch {
                    parseError = error
                    break
                }
                tally.counters.records += 1
                try replay(record, kernel: kernel, counters: &tally.counters)
                let done = tally.counters.records
                if done % report == 0 || done == survey.records { progress?(done, survey.records) }
            }
            tally.counters.codePages = process.process.space.mappings.values.filter { $0.executable && !$0.writable }.count
            tally.counters.pagesTouched = process.process.space.mappings.count
            tally.counters.dataPages = tally.counters.pagesTouched - tally.counters.codePages
        }
        if let parseError { throw parseError }
        return run
    }

    final class Tally {
        @exclusivity(unchecked) var counters = Counters()
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

/// Records one at a time: a trace file streamed (`LackeyTraceReader`) or a
/// trace parsed in memory (`LackeyTrace.Records`).
public protocol LackeyRecordStream {
    mutating func nextRecord() throws(ScenarioError) -> LackeyTrace.Record?
}

extension LackeyTraceReader: LackeyRecordStream {
    public func nextRecord() throws(ScenarioError) -> LackeyTrace.Record? { try next() }
}

extension LackeyTrace {
    /// The records of a parsed trace, as a stream.
    public struct Records: LackeyRecordStream {
        let records: [Record]
        var index = 0
        public init(_ trace: LackeyTrace) { records = trace.records }
        public mutating func nextRecord() -> Record? {
            guard index < records.count else { return nil }
            defer { index += 1 }
            return records[index]
        }
    }
}
