import Foundation
import Testing

/// Issue 13: every input the tool cannot use — a number out of range, a
/// workload too large for its guest or for the host's memory, a file that is
/// not a trace, a path that cannot be written — is exit status 2 with our own
/// message naming the limit or the path, before any work starts; never a
/// trap (status 132/133), never Foundation's error text.
@Suite struct BadInputs {
    /// Runs the tool and checks exit status 2 and `message` on standard error.
    func expectRefused(_ arguments: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try shadowmmu(arguments)
        #expect(result.status == 2, "\(arguments) exited \(result.status): \(result.stderr.prefix(300))", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(message), "\(arguments): \(result.stderr.prefix(500))", sourceLocation: sourceLocation)
        #expect(!result.stderr.contains("NSCocoaErrorDomain") && !result.stderr.contains("Error Domain="), sourceLocation: sourceLocation)
    }

    // MARK: Numbers

    @Test(arguments: [
        (["fuzz", "--count", "-5"], "'--count <count>': expected a number from 1 to 1000000000, found a negative number"),
        (["fuzz", "--count", "0"], "expected a number from 1 to 1000000000, found a smaller one"),
        (["fuzz", "--length", "100000000", "--count", "1"], "'--length <length>': expected a number from 1 to 100000, found a larger one"),
        (["fuzz", "--seed", "-1"], "'--seed <seed>': expected a number from 0 to 18446744073709551615, found a negative number"),
        (["fuzz", "--seed", "18446744073709551615", "--count", "2"], "pass a --seed of at most 18446744073709551613"),
        (["fuzz", "--length", "12x"], "expected a number from 1 to 100000 (decimal digits)"),
        (["matrix", "--length", "100000000"], "'--length <length>': expected a number from 1 to 100000"),
        (["matrix", "--seed", "-3"], "'--seed <seed>': expected a number from 0"),
        (["zoo", "--limit", "99999999999999999999"], "'--limit <limit>': expected a number from 1 to 1000000, found a larger one"),
        (["zoo", "--length", "-1"], "'--length <length>': expected a number from 1 to 100000"),
        (["explain", "examples/4-level.scenario", "--line", "-3"], "'--line <line>': expected a number from 1 to 100000000, found a negative number"),
        (["draw", "examples/pae.scenario", "--at", "-1"], "'--at <at>': expected a number from 0 to 100000000, found a negative number"),
        (["draw", "examples/pae.scenario", "--max-entries", "0"], "'--max-entries <max-entries>': expected a number from 1 to 1024"),
        (["report", "examples/pae.scenario", "--at", "-1", "-o", "/tmp/x.html"], "'--at <at>': expected a number from 0 to 100000000"),
        (["workload", "boot", "--seed", "-7"], "'--seed <seed>': expected a number from 0"),
        (["workload", "boot", "--size", "-5"], "unknown --size '-5': use small, medium, large, or a count of 1 or more (at most boot"),
    ])
    func aNumberOutOfRangeNamesItsLimit(_ arguments: [String], _ message: String) throws {
        try expectRefused(arguments, message)
    }

    /// Each one trapped (exit 132) on arithmetic overflow in the frame
    /// allocator, or ran the host out of memory, before the limits.
    @Test(arguments: [
        (["workload", "hugepages", "--size", "32768"], "--size 32768 is too large for hugepages in a 4-level guest: at most 20000 huge pages"),
        (["workload", "mix", "--size", "32765"], "--size 32765 is too large for mix in a 4-level guest: at most"),
        (["workload", "hugepages", "--size", "120", "--mode", "32-bit"], "at most 119 huge pages (the huge-page pool must fit in the guest's 512 MiB)"),
        (["workload", "processes", "--size", "100000"], "--size 100000 is too large for processes in a 4-level guest: at most"),
        (["workload", "fork", "--size", "100000"], "too large for fork"),
    ])
    func aWorkloadTooLargeIsRefusedBeforeItRuns(_ arguments: [String], _ message: String) throws {
        try expectRefused(arguments, message)
    }

    @Test func theLargestHugePageCountRunsInA32BitGuest() throws {
        let result = try shadowmmu(["workload", "hugepages", "--size", "119", "--mode", "32-bit", "-q"])
        #expect(result.status == 0, "\(result.stderr.prefix(500))")
    }

    // MARK: Traces

    @Test(arguments: [
        ("empty.lackey", "", "empty.lackey:1:1: expected memory-access records", "an empty file"),
        ("log.lackey", "==12== Lackey, an example Valgrind tool\n==12== Counted 3 calls\n", "log.lackey:2:1: expected memory-access records", "2 lines and no I/L/S/M records"),
        ("bytes.lackey", "\u{7f}ELF\u{2}\u{1}\u{1}\0\0\0 garbage\n", "bytes.lackey:1:1: expected a Lackey trace", "valgrind --tool=lackey --trace-mem=yes"),
    ])
    func aFileThatIsNotATraceIsRefused(_ name: String, _ text: String, _ location: String, _ detail: String) throws {
        try withScenarioFile(name, text) { path in
            let result = try shadowmmu(["workload", "--trace", path])
            #expect(result.status == 2)
            #expect(result.stderr.contains(location) && result.stderr.contains(detail), "\(result.stderr)")
            #expect(result.stderr.contains("valgrind --tool=lackey --trace-mem=yes"), "the message says how to record one: \(result.stderr)")
            #expect(!result.stdout.contains("records 0"))
            let controls = result.stderr.unicodeScalars.filter { $0.value < 0x20 && $0 != "\n" || $0.value == 0x7f }
            #expect(controls.isEmpty, "a binary file's bytes are escaped in the message, not sent to the terminal: \(result.stderr.debugDescription)")
        }
    }

    @Test func aScenarioPassedAsATraceIsRefused() throws {
        try expectRefused(["workload", "--trace", "examples/pae.scenario"], "examples/pae.scenario:1:1: expected a Lackey trace")
    }

    // MARK: Files

    /// A scenario is held whole while it runs (about 15 bytes per byte): a
    /// file beyond 64 MiB is refused before it is read. (A sparse file: the
    /// test writes nothing.)
    @Test func aScenarioFileTooLargeToHoldIsRefusedUnread() throws {
        try withScenarioFile("big.scenario", "machine memory=64M\n") { path in
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.truncate(atOffset: 65 << 20)
            try handle.close()
            for command in [["run", path], ["check", path], ["explain", path, "--line", "1"], ["report", path, "-o", "/tmp/shadowmmu-big.html"]] {
                try expectRefused(command, "\(path):1:1: expected a scenario file of at most 64 MiB (it is held whole while it runs), found 65 MiB")
            }
        }
    }

    @Test func aFileWhereAFolderIsWantedIsRefusedBeforeAnyGuestRuns() throws {
        try expectRefused(
            ["fuzz", "--save-all", "/etc/passwd", "--count", "1", "--length", "5", "--mode", "pae"],
            "/etc/passwd: cannot write files into the folder (--save-all): it exists and is not a folder")
        try expectRefused(
            ["fuzz", "--save-failures", "/etc/passwd", "--count", "1", "--length", "5", "--mode", "pae"],
            "/etc/passwd: cannot write files into the folder (--save-failures): it exists and is not a folder")
    }

    @Test func aFolderWhereAFileIsWantedSaysItIsAFolder() throws {
        try expectRefused(["report", "examples/pae.scenario", "-o", "/tmp"], "/tmp: cannot write the file (-o): it is a folder; name a file inside it")
        try expectRefused(["draw", "examples/pae.scenario", "-o", "/tmp/"], "/tmp/: cannot write the file (-o): it is a folder")
        try expectRefused(["workload", "boot", "--emit", "/tmp"], "/tmp: cannot write the file (--emit): it is a folder")
        try expectRefused(["run", "/tmp"], "/tmp:1:1: expected a readable scenario file, found a folder")
    }

    /// `-o`, `--emit` and `--save-all` treat a missing folder alike: refused,
    /// never created on the way.
    @Test func aMissingFolderIsRefusedAndNotCreated() throws {
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("shadowmmu-missing-\(UUID().uuidString)").path
        try expectRefused(
            ["report", "examples/pae.scenario", "-o", missing + "/x.html"],
            "\(missing)/x.html: cannot write the file (-o): the folder \(missing) does not exist; create it first")
        try expectRefused(["draw", "examples/pae.scenario", "-o", missing + "/x.dot"], "the folder \(missing) does not exist")
        try expectRefused(["workload", "boot", "--emit", missing + "/x.scenario"], "\(missing)/x.scenario: cannot write the file (--emit): the folder \(missing) does not exist")
        try expectRefused(
            ["fuzz", "--save-all", missing + "/guests", "--count", "1", "--length", "5", "--mode", "pae"],
            "\(missing)/guests: cannot write files into the folder (--save-all): the folder \(missing) does not exist")
        #expect(!FileManager.default.fileExists(atPath: missing), "nothing was created on the way")
    }

    @Test func aFileWhereAFolderShouldBeOnTheWayIsNamed() throws {
        try expectRefused(
            ["report", "examples/pae.scenario", "-o", "/etc/passwd/report.html"],
            "/etc/passwd/report.html: cannot write the file (-o): /etc/passwd is not a folder; choose a path inside a folder")
        try expectRefused(
            ["fuzz", "--save-failures", "/etc/passwd/failures", "--count", "1", "--length", "5", "--mode", "pae"],
            "/etc/passwd/failures: cannot write files into the folder (--save-failures): /etc/passwd is not a folder")
    }

    @Test func aFolderOptionCreatesItsOwnFolderInAParentThatExists() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("shadowmmu-guests-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let result = try shadowmmu(["fuzz", "--save-all", folder, "--count", "1", "--length", "5", "--mode", "pae"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(FileManager.default.fileExists(atPath: folder + "/fuzz-pae-0.scenario"))
    }

    /// A path the system refuses (/proc takes no new files: root is told it
    /// cannot be created there, other users that permission is denied) gets
    /// our message, after the run, and exit status 2.
    @Test func aFileTheSystemRefusesIsOurMessage() throws {
        for (arguments, path, option) in [
            (["draw", "examples/pae.scenario", "-o", "/proc/shadowmmu.dot"], "/proc/shadowmmu.dot", "-o"),
            (["workload", "boot", "--emit", "/proc/shadowmmu.scenario"], "/proc/shadowmmu.scenario", "--emit"),
        ] {
            try expectRefused(arguments, "\(path): cannot write the file (\(option)): ")
            let result = try shadowmmu(arguments)
            #expect(
                result.stderr.contains("the file cannot be created there") || result.stderr.contains("permission denied; choose a path you can write"),
                "\(result.stderr)")
        }
    }
}
