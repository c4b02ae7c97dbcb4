import Foundation
import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing

// MARK: Parsing

@Suite struct LackeyTraceParsing {
    @Test func recordsAreReadAndEverythingElseIgnored() throws {
        let text = """
            ==4242== Lackey, an example Valgrind tool
            ==4242== Command: ./walk
            ==4242==\u{20}
            I  0400d7d4,8
             S 7ff000398,8
             L 04f6b868,8
             M 0421b6c0,4
            Starting the program
            hello, world

            I\t00401000,15
             L 1fff0006d8,32
            ==4242== Exit code:       0
            """
        let trace = try LackeyTrace.parse(text, fileName: "t.lackey")
        #expect(trace.records == [
            .init(kind: .instruction, address: 0x0400_d7d4, size: 8, line: 4, column: 4),
            .init(kind: .store, address: 0x7_ff00_0398, size: 8, line: 5, column: 4),
            .init(kind: .load, address: 0x04f6_b868, size: 8, line: 6, column: 4),
            .init(kind: .modify, address: 0x0421_b6c0, size: 4, line: 7, column: 4),
            .init(kind: .instruction, address: 0x0040_1000, size: 15, line: 11, column: 3),
            .init(kind: .load, address: 0x1f_ff00_06d8, size: 32, line: 12, column: 4),
        ])
    }

    /// Malformed records: each error names the line and the column of the
    /// offending token and says what was expected.
    @Test(arguments: [
        ("I  zz,4", 4, "expected a hexadecimal address (without 0x) after 'I' (column 1), found 'zz,4'"),
        (" L 1234", 8, "expected ',' and a size in bytes after the address, found end of line"),
        (" S 1234;8", 8, "expected ',' and a size in bytes after the address, found ';8'"),
        (" S 1234,x", 9, "expected a size in bytes (decimal) after ',', found 'x'"),
        (" M 1234,0", 9, "expected a size from 1 to 4096 bytes, found '0'"),
        (" L 1234,99999", 9, "expected a size from 1 to 4096 bytes, found '99999'"),
        (" L 1234,8 extra", 11, "expected the end of the line after the size, found 'extra'"),
        ("I  11112222333344445,4", 4, "expected an address of at most 16 hexadecimal digits after 'I', found '11112222333344445,4'"),
        ("I", 2, "expected a hexadecimal address (without 0x) after 'I' (column 1), found end of line"),
        (" L ffffffffffffffff,8", 4, "expected an access that ends below 2^64, found 8 bytes at 'ffffffffffffffff,8'"),
    ])
    func malformedRecordsAreLocated(_ line: String, _ column: Int, _ message: String) {
        let text = "==1== Lackey\nI  00401000,4\n" + line + "\n L 1000,8\n"
        #expect(throws: ScenarioError(file: "bad.lackey", line: 3, column: column, message: message)) {
            try LackeyTrace.parse(text, fileName: "bad.lackey")
        }
    }

    @Test func aThirtyTwoBitGuestRefusesAddressesAboveItsUserHalf() throws {
        let trace = try LackeyTrace.parse("I  00401000,4\n L 1fff0006d8,8\n", fileName: "t.lackey")
        #expect(throws: ScenarioError.self) { try TraceReplay.validate(trace, mode: .pae) }
        do {
            try TraceReplay.validate(trace, mode: .bits32)
        } catch {
            #expect(error.line == 2 && error.column == 4)
            #expect(error.message.contains("--mode 4-level"))
        }
        try TraceReplay.validate(trace, mode: .level4)
    }
}

// MARK: Replaying

private func replay(_ text: String, mode: GuestPagingLayout.Mode = .level4, mmu: MMUConfiguration = .native) throws -> WorkloadRun {
    let trace = try LackeyTrace.parse(text, fileName: "t.lackey")
    try TraceReplay.validate(trace, mode: mode)
    return TraceReplay.run(trace, options: WorkloadOptions(mode: mode, mmu: mmu))
}

private func counter(_ run: WorkloadRun, _ name: String) -> Int { run.trace.first { $0.0 == name }?.1 ?? -1 }

/// The user accesses of the recorded scenario, as text.
private func userAccesses(_ run: WorkloadRun) -> [String] {
    (run.scenario ?? "").split(separator: "\n").map(String.init).filter { $0.hasSuffix(" user") }
}

@Suite struct TraceReplaying {
    @Test func pagesAreMappedOnFirstTouchAndAccessesSplitAtPageBoundaries() throws {
        let run = try replay("""
            I  00400ffe,4
             L 7000fffc,8
             M 70000010,4
             S 70001000,16
            """)
        #expect(run.failure == nil, "\(run.failure.map(String.init(describing:)) ?? "")")
        // The instruction lies in two pages: two fetches. The load crosses into the next page:
        // 4 + 4 bytes. M is a read then a write. 16 bytes are two 8-byte writes.
        // (Each access that faulted appears twice: before and after the fault handler.)
        var distinct: [String] = []
        for access in userAccesses(run) where distinct.last != access { distinct.append(access) }
        #expect(distinct.prefix(2) == ["fetch 0x400ffe user", "fetch 0x401000 user"])
        #expect(counter(run, "records") == 4)
        #expect(counter(run, "accesses_replayed") == 2 + 2 + 2 + 2)
        #expect(counter(run, "page_crossings") == 2)
        #expect(counter(run, "split_accesses") == 3)
        #expect(counter(run, "pages_touched") == 6)
        #expect(counter(run, "code_pages") == 2)
        #expect(run.kernel.anonymousFaults == 6)
        let accesses = userAccesses(run)
        #expect(accesses.contains("read 0x7000fffc width=4 user") && accesses.contains("read 0x70010000 width=4 user"))
        #expect(accesses.contains("read 0x70000010 width=4 user") && accesses.contains("write 0x70000010 width=4 user"))
    }

    @Test func aWriteToCodeOrAFetchFromDataWidensThePage() throws {
        let run = try replay("""
            I  00400000,4
             S 00400100,8
             L 00600000,8
            I  00600010,2
            """)
        #expect(run.failure == nil)
        #expect(run.kernel.permissionUpgrades == 2)
        #expect(run.kernel.anonymousFaults == 2)
        // The write to the code page faults as a user write to a present page, the fetch from data with I/D set.
        #expect(run.scenario?.contains("expect fault ec=0x7") == true)
        #expect(run.scenario?.contains("expect fault ec=0x15") == true)
    }

    @Test func withoutExecuteDisableDataPagesCanBeExecuted() throws {
        let run = try replay("""
             L 00600000,8
            I  00600010,2
            """, mode: .bits32)
        #expect(run.failure == nil)
        #expect(run.kernel.permissionUpgrades == 0)
    }

    /// The example trace shipped in examples/traces, replayed under shadow
    /// paging: the same guest-visible run as on the bare architecture, and a
    /// prefix of it passes the differential checker under every configuration.
    @Test func theShippedTraceReplaysIdenticallyUnderEveryMMU() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/traces/walk.lackey").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let trace = try LackeyTrace.parse(text, fileName: "walk.lackey")
        #expect(trace.records.count > 4000)
        let native = TraceReplay.run(trace, options: WorkloadOptions(mode: .level4, mmu: .native))
        let shadow = TraceReplay.run(trace, options: WorkloadOptions(mode: .level4, mmu: .shadow(host: .bits64)))
        #expect(native.failure == nil && shadow.failure == nil)
        #expect(native.kernel == shadow.kernel)
        #expect(counter(native, "page_crossings") == 1, "walk.c stores 8 bytes across a page boundary")
        #expect(counter(native, "pages_touched") == counter(shadow, "pages_touched"))
        #expect(shadow.statistics[.exits] > 0)

        var prefix = trace
        prefix.records = Array(trace.records.prefix(600))
        let run = TraceReplay.run(prefix, options: WorkloadOptions(mode: .level4, mmu: .native))
        let scenario = try ScenarioParser.parse(try #require(run.scenario), fileName: "walk.scenario")
        for report in try DifferentialChecker.check(scenario) {
            #expect(report.passed, "under \(report.configuration): \((report.mismatches + report.auditFailures).prefix(3))")
        }
    }
}

// MARK: Streaming

@Suite struct LackeyTraceStreaming {
    static func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("trace-\(UInt64.random(in: 0...UInt64.max)).lackey").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func readAll(_ path: String) throws -> [LackeyTrace.Record] {
        let reader = try LackeyTraceReader(path: path)
        var records: [LackeyTrace.Record] = []
        while let record = try reader.next() { records.append(record) }
        return records
    }

    /// Several chunks' worth of records, program output and a line longer
    /// than a chunk: the reader gives exactly what the in-memory parser gives.
    @Test func theReaderAgreesWithTheParserAcrossChunks() throws {
        var random = SplitMix64(seed: 77)
        var lines = ["==7== Lackey, an example Valgrind tool"]
        for index in 0..<150_000 {
            let kind = ["I ", " L", " S", " M"][Int(random.next() % 4)]
            lines.append("\(kind) \(String(random.next() >> 20, radix: 16)),\(1 + random.next() % 8)")
            if index == 70_000 { lines.append(String(repeating: "program output ", count: 100_000)) }
            if index % 9_999 == 0 { lines.append("hello from the program") }
        }
        let text = lines.joined(separator: "\n")  // no final newline
        let path = try Self.write(text)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.fileExists(atPath: path))
        let streamed = try Self.readAll(path)
        let parsed = try LackeyTrace.parse(text, fileName: path).records
        #expect(streamed.count == 150_000)
        #expect(streamed == parsed)
    }

    @Test func anErrorDeepInAFileNamesItsLine() throws {
        let text = "==1== Lackey\n" + String(repeating: " L 1000,8\n", count: 200_000) + " S 1000,zz\n"
        let path = try Self.write(text)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: ScenarioError(file: path, line: 200_002, column: 9, message: "expected a size in bytes (decimal) after ',', found 'zz'")) {
            _ = try Self.readAll(path)
        }
    }

    /// What is not a Lackey trace is refused with the reason: an empty file,
    /// a log without records (Lackey run without --trace-mem=yes), a scenario
    /// passed as a trace, random bytes, a directory, a missing file.
    @Test(arguments: [
        ("", 1, "expected memory-access records (record the trace with valgrind --tool=lackey --trace-mem=yes --log-file=FILE PROGRAM), found an empty file"),
        ("==1== Lackey\n==1== Command: ./a\n==1== Exit code: 0\n", 3, "expected memory-access records (record the trace with valgrind --tool=lackey --trace-mem=yes --log-file=FILE PROGRAM), found 3 lines and no I/L/S/M records"),
        ("machine memory=16M\nmmu native\nread 0x0\n", 1, "expected a Lackey trace (lines '==PID== …' and records like ' L 04f6b868,8', as valgrind --tool=lackey --trace-mem=yes writes), found 'machine memory=16M'"),
    ])
    func notATraceIsRefused(_ text: String, _ line: Int, _ message: String) throws {
        let path = try Self.write(text)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: ScenarioError(file: path, line: line, column: 1, message: message)) { _ = try Self.readAll(path) }
        #expect(throws: ScenarioError(file: "t", line: line, column: 1, message: message)) { _ = try LackeyTrace.parse(text, fileName: "t") }
    }

    @Test func randomBytesAndNonFilesAreRefused() throws {
        var random = SplitMix64(seed: 5)
        let bytes = (0..<70_000).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("random-\(UInt64.random(in: 0...UInt64.max)).lackey").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: ScenarioError.self) { _ = try Self.readAll(path) }
        #expect(throws: ScenarioError(file: "/", line: 1, column: 1, message: "expected a trace file (valgrind --tool=lackey --trace-mem=yes --log-file=FILE PROGRAM writes one), found a directory")) {
            _ = try LackeyTraceReader(path: "/")
        }
        #expect(throws: ScenarioError(file: "/nonexistent/t.lackey", line: 1, column: 1, message: "expected a readable trace file (valgrind --tool=lackey --trace-mem=yes --log-file=FILE PROGRAM writes one), found no such file")) {
            _ = try LackeyTraceReader(path: "/nonexistent/t.lackey")
        }
    }

    /// The streamed replay of a file gives the run the in-memory replay gives.
    @Test func aStreamedReplayEqualsTheParsedOne() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/traces/walk.lackey")
        let options = WorkloadOptions(mode: .level4, mmu: .shadow(host: .bits64))
        let streamed = try TraceReplay.replayFile(url.path, options: options)
        let parsed = TraceReplay.run(try LackeyTrace.parse(String(contentsOf: url, encoding: .utf8), fileName: url.path), options: options)
        #expect(counter(streamed, "records") == counter(parsed, "records"))
        #expect(counter(streamed, "records") > 4000)
        #expect(streamed.trace.map(\.0) == parsed.trace.map(\.0) && streamed.trace.map(\.1) == parsed.trace.map(\.1))
        #expect(streamed.statistics == parsed.statistics)
        #expect(streamed.accesses == parsed.accesses && streamed.failure == nil && parsed.failure == nil)
    }
}
