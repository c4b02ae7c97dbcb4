import ScenarioLanguage
import TestSupport
import Testing

// MARK: Helpers

private let fileName = "t.scenario"

/// The actions of `body` parsed after a `machine` line (so the body starts on line 2).
private func actions(_ body: String, machine: String = "machine memory=64M") throws -> [Action] {
    try ScenarioParser.parse(machine + "\n" + body, fileName: fileName).commands.map(\.action)
}

private func action(_ line: String, machine: String = "machine memory=64M") throws -> Action? {
    try actions(line, machine: machine).first
}

/// The diagnostic the parser gives for `text`, or a marker when it parses.
private func diagnostic(_ text: String, file: String = fileName) -> String {
    do {
        _ = try ScenarioParser.parse(text, fileName: file)
        return "<parsed>"
    } catch {
        return error.description
    }
}

private func mmu(_ line: String) throws -> MMUConfiguration {
    try ScenarioParser.parse("machine memory=64M\n" + line, fileName: fileName).mmu
}

/// SplitMix64: a tiny deterministic generator so fuzz failures reproduce.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

private let M: UInt64 = 1 << 20

@Suite struct Parser {
    // MARK: Setup lines

    @Test func machineDefaults() throws {
        let scenario = try ScenarioParser.parse("machine memory=64M", fileName: "m.scenario")
        #expect(scenario.fileName == "m.scenario")
        #expect(scenario.machine == MachineConfiguration(memorySize: 64 * M, maxPhysicalAddressBits: 52, vcpuCount: 1))
        #expect(scenario.mmu == .native)
        #expect(scenario.commands.isEmpty)
    }

    @Test func machineOptionsInAnyOrder() throws {
        let expected = MachineConfiguration(memorySize: 0x1000_0000, maxPhysicalAddressBits: 36, vcpuCount: 4)
        for line in [
            "machine memory=0x1000_0000 maxphyaddr=36 vcpus=4",
            "machine vcpus=4 maxphyaddr=36 memory=256M",
            "machine\tmaxphyaddr=0x24 memory=268435456\tvcpus=4",
        ] {
            #expect(try ScenarioParser.parse(line, fileName: fileName).machine == expected, "\(line)")
        }
        // The largest memory MAXPHYADDR allows.
        #expect(try ScenarioParser.parse("machine memory=64G maxphyaddr=36", fileName: fileName).machine.memorySize == 1 << 36)
        #expect(try ScenarioParser.parse("machine memory=1T", fileName: fileName).machine.memorySize == 1 << 40)
        #expect(try ScenarioParser.parse("machine memory=63T", fileName: fileName).machine.memorySize == MachineConfiguration.maximumMemorySize)
        #expect(MachineConfiguration(memorySize: 2 << 40).scenarioText == "machine memory=2T", "the printer writes what the parser reads")
    }

    @Test func mmuLines() throws {
        #expect(try mmu("mmu native") == .native)
        #expect(try mmu("mmu shadow") == .shadow(host: .bits64))
        #expect(try mmu("mmu shadow host=pae32") == .shadow(host: .pae32))
        #expect(try mmu("mmu shadow host=64bit") == .shadow(host: .bits64))
        #expect(try mmu("mmu tdp format=ept") == .tdp(format: .ept, levels: 4, host: .bits64))
        #expect(try mmu("mmu tdp levels=5 format=npt") == .tdp(format: .npt, levels: 5, host: .bits64))
        #expect(try mmu("mmu tdp host=64bit format=ept levels=4") == .tdp(format: .ept, levels: 4, host: .bits64))
        #expect(try mmu("mmu tdp host=pae32 format=npt") == .tdp(format: .npt, levels: 3, host: .pae32))
        #expect(try mmu("mmu tdp format=npt levels=4 host=pae32") == .tdp(format: .npt, levels: 3, host: .pae32))
    }

    @Test func mmuWordsOutsideAFile() throws {
        // What `--mmu` reads: the words of an `mmu` line, with or without `mmu`.
        #expect(try ScenarioParser.parseMMU("shadow host=pae32 roots=special") == .shadow(host: .pae32, roots: .special))
        #expect(try ScenarioParser.parseMMU("mmu tdp format=npt") == .tdp(format: .npt, levels: 4, host: .bits64))
        for configuration in [MMUConfiguration.native, .shadow(host: .bits64, roots: .localEager), .tdp(format: .ept, levels: 5, host: .bits64)] {
            #expect(try ScenarioParser.parseMMU(configuration.scenarioText) == configuration)
        }
        // Columns count in the words as given.
        #expect(throws: ScenarioError(file: "--mmu", line: 1, column: 8, message: "expected an option of 'shadow' (host=64bit|pae32 or roots=local|local-eager|special), found 'levels=5'")) {
            try ScenarioParser.parseMMU("shadow levels=5")
        }
        #expect(throws: ScenarioError(file: "--mmu", line: 1, column: 12, message: "expected an option of 'shadow' (host=64bit|pae32 or roots=local|local-eager|special), found 'levels=5'")) {
            try ScenarioParser.parseMMU("mmu shadow levels=5")
        }
        #expect(throws: ScenarioError.self) { try ScenarioParser.parseMMU("") }
        #expect(throws: ScenarioError.self) { try ScenarioParser.parseMMU("shadow\nshadow") }
        #expect(throws: ScenarioError.self) { try ScenarioParser.parseMMU("poke 0 0") }
    }

    @Test func setupMayFollowMemoryCommandsButNotVCPUCommands() throws {
        let scenario = try ScenarioParser.parse(
            "mmu shadow\nmachine memory=1M\n", fileName: fileName
        )
        #expect(scenario.mmu == .shadow(host: .bits64))
        let late = try ScenarioParser.parse(
            "machine memory=1M\npoke 0 1\npeek 0\nhost zap-all\nexpect ok\nmmu tdp format=ept\nread 0", fileName: fileName
        )
        #expect(late.mmu == .tdp(format: .ept, levels: 4, host: .bits64))
        #expect(late.commands.map(\.line) == [2, 3, 4, 5, 7])
    }

    // MARK: Guest memory and host events

    @Test func memoryCommands() throws {
        #expect(try action("poke 0x2000 0x3027") == .poke(address: 0x2000, value: 0x3027, width: 8))
        #expect(try action("poke 8192 0xffff_ffff width=4") == .poke(address: 0x2000, value: 0xffff_ffff, width: 4))
        #expect(try action("store 0x3ff_fff8 1_000") == .store(address: 0x3ff_fff8, value: 1000, width: 8))
        #expect(try action("store 0x1ffc 7 width=4") == .store(address: 0x1ffc, value: 7, width: 4))
        #expect(try action("peek 0x2000") == .peek(address: 0x2000, width: 8))
        #expect(try action("peek 4K width=4") == .peek(address: 4096, width: 4))
    }

    @Test func hostEvents() throws {
        #expect(try actions("""
            host zap-all
            host invalidate 0x10_0000 2M
            host invalidate 0xffff_ffff_ffff_f000 0x1000
            host max-shadow-pages 0x40
            host dirty-log start
            host dirty-log stop
            host dirty-log read
            """) == [
                .hostZapAll,
                .hostInvalidate(address: 0x10_0000, size: 2 * M),
                .hostInvalidate(address: 0xffff_ffff_ffff_f000, size: 0x1000),
                .hostMaxShadowPages(64),
                .hostDirtyLog(.start), .hostDirtyLog(.stop), .hostDirtyLog(.read),
            ])
    }

    // MARK: vCPU state

    @Test func vcpuState() throws {
        #expect(try actions("""
            cr0 0x8000_0011
            cr3 0x1000
            cr4 0X20
            efer 0xD00
            pkru 0xffff_ffff
            rflags.ac 1
            rflags.ac 0
            invlpg 0xffff_8000_0000_0000
            flush
            vcpu 3
            vcpu 0
            """, machine: "machine memory=1M vcpus=4") == [
                .writeRegister(.cr0, 0x8000_0011), .writeRegister(.cr3, 0x1000), .writeRegister(.cr4, 0x20),
                .writeRegister(.efer, 0xd00), .writeRegister(.pkru, 0xffff_ffff),
                .setAlignmentCheck(true), .setAlignmentCheck(false),
                .invlpg(0xffff_8000_0000_0000), .flush, .selectVCPU(3), .selectVCPU(0),
            ])
    }

    // MARK: Accesses

    @Test func accesses() throws {
        #expect(try action("read 0x400000") == .access(AccessCommand(kind: .read, address: 0x400000, width: 8)))
        #expect(try action("read 0x400ffc implicit width=4 user")
            == .access(AccessCommand(kind: .read, address: 0x400ffc, width: 4, user: true, implicit: true)))
        #expect(try action("read 0xfff width=1") == .access(AccessCommand(kind: .read, address: 0xfff, width: 1)))
        #expect(try action("write 0x7ff000") == .access(AccessCommand(kind: .write, address: 0x7ff000, width: 8, value: nil)))
        #expect(try action("write 0x7ff000 user value=0xab width=1")
            == .access(AccessCommand(kind: .write, address: 0x7ff000, width: 1, value: 0xab, user: true)))
        #expect(try action("write 0x7ff002 width=2 value=65535 implicit")
            == .access(AccessCommand(kind: .write, address: 0x7ff002, width: 2, value: 0xffff, implicit: true)))
        #expect(try action("fetch 0xfff") == .access(AccessCommand(kind: .fetch, address: 0xfff, width: 1)))
        #expect(try action("fetch 0x1000 user") == .access(AccessCommand(kind: .fetch, address: 0x1000, width: 1, user: true)))
    }

    // MARK: Expectations

    @Test func expectations() throws {
        let parsed = try actions("""
            read 0x1000
            expect ok
            expect ok gpa=0x5000 value=0
            expect ok value=7 gpa=0x5000
            expect value=0x7
            invlpg 0x1000
            flush
            vcpu 0
            poke 0 0
            host zap-all
            expect fault ec=0x5
            write 0x2000
            expect fault
            expect gp
            peek 0x10
            expect value=0x3027
            cr3 0x1000
            expect gp
            expect ok
            host dirty-log read
            expect ok
            """)
        let expectations: [ScenarioLanguage.Expectation] = parsed.compactMap { if case .expect(let e) = $0 { e } else { nil } }
        let wanted: [ScenarioLanguage.Expectation] = [
            .ok(gpa: nil, value: nil), .ok(gpa: 0x5000, value: 0), .ok(gpa: 0x5000, value: 7), .value(7),
            .fault(errorCode: 5), .fault(errorCode: nil), .gp, .value(0x3027), .gp, .ok(gpa: nil, value: nil),
            .ok(gpa: nil, value: nil),
        ]
        #expect(expectations == wanted)
    }

    // MARK: Numbers

    @Test(arguments: [
        ("0", 0), ("4096", 4096), ("0x1000", 0x1000), ("0X1000", 0x1000), ("0xAbCdEf", 0xabcdef),
        ("1_000_000", 1_000_000), ("0xffff_8000_0000_0000", 0xffff_8000_0000_0000),
        ("4K", 4096), ("64M", 64 << 20), ("1G", 1 << 30), ("0x10K", 0x4000), ("1_024K", 1 << 20),
        ("18446744073709551615", UInt64.max), ("0xffffffffffffffff", UInt64.max), ("16777215G", 16_777_215 << 30),
        ("007", 7), ("1T", 1 << 40), ("0x10T", 0x10 << 40), ("16777215T", 16_777_215 << 40),
    ] as [(String, UInt64)])
    func numbers(text: String, value: UInt64) throws {
        #expect(try action("cr3 \(text)") == .writeRegister(.cr3, value))
    }

    @Test(arguments: ["x12", "0x", "_1", "1_", "1__0", "0x_1", "12k", "1KB", "1t", "1TB", "-1", "0xg", "K", "1.5", "0b1", "=1"])
    func notNumbers(text: String) {
        #expect(diagnostic("machine memory=64M\ncr3 \(text)") == "t.scenario:2:5: expected a value after 'cr3', found '\(text)'")
    }

    @Test(arguments: ["18446744073709551616", "0x1_0000_0000_0000_0000", "17179869184G", "17592186044416M", "16777216T", String(repeating: "9", count: 10_000)])
    func overflow(text: String) {
        let shown = text.count > 48 ? String(text.prefix(48)) + "…" : text
        #expect(diagnostic("machine memory=64M\nread \(text)")
            == "t.scenario:2:6: expected a number that fits in 64 bits, found '\(shown)'")
    }

    // MARK: Lexical rules

    @Test func crlfAndComments() throws {
        let scenario = try ScenarioParser.parse(
            "# a scenario\r\nmachine memory=64M # the machine\r\n\r\n  \t\r\nread 0x1000#no space\r\n\t# indented\r\nexpect ok\r\n",
            fileName: fileName
        )
        #expect(scenario.commands == [
            Command(line: 5, action: .access(AccessCommand(kind: .read, address: 0x1000))),
            Command(line: 7, action: .expect(.ok(gpa: nil, value: nil))),
        ])
        #expect(diagnostic("machine memory=64M\r\nread x12\r\n") == "t.scenario:2:6: expected a hexadecimal address after 'read', found 'x12'")
        #expect(diagnostic("machine memory=64M\r\nread\r\n") == "t.scenario:2:5: expected a hexadecimal address after 'read', found end of line")
        #expect(diagnostic("machine memory=64M\nread # 0x1000") == "t.scenario:2:5: expected a hexadecimal address after 'read', found end of line")
    }

    @Test func contractExample() {
        let lines = ["machine memory=64M"] + Array(repeating: "# setup", count: 10)
        #expect(diagnostic((lines + ["read  x12"]).joined(separator: "\n"), file: "pae.scenario")
            == "pae.scenario:12:7: expected a hexadecimal address after 'read', found 'x12'")
        // A tab counts as one column.
        #expect(diagnostic((lines + ["\tread\tx12"]).joined(separator: "\n"), file: "pae.scenario")
            == "pae.scenario:12:7: expected a hexadecimal address after 'read', found 'x12'")
    }

    @Test func unusualCharactersAreQuotedOnOneLine() {
        #expect(diagnostic("machine memory=64M\nread \u{0}\u{1b}[2J") == #"t.scenario:2:6: expected a hexadecimal address after 'read', found '\u{0}\u{1b}[2J'"#)
        #expect(diagnostic("machine memory=64M\nréad 0") .hasPrefix("t.scenario:2:1: expected a command (machine, mmu, poke"))
        #expect(diagnostic("machine memory=64M\nread 0 \(String(repeating: "u", count: 1000))")
            == "t.scenario:2:8: expected an option of 'read' (width=1|2|4|8, user or implicit), found '\(String(repeating: "u", count: 48))…'")
        // Column counts characters past a non-ASCII one.
        #expect(diagnostic("machine memory=64M\nread 0 é=1 ü") == "t.scenario:2:8: expected an option of 'read' (width=1|2|4|8, user or implicit), found 'é=1'")
        #expect(diagnostic("machine memory=64M\nread 0 user\u{2028}") == #"t.scenario:2:8: expected an option of 'read' (width=1|2|4|8, user or implicit), found 'user\u{2028}'"#)
    }

    // MARK: Diagnostics

    @Test(arguments: [
        // Commands and setup order.
        ("machine memory=64M\nxyz 1", "2:1: expected a command (machine, mmu, poke, store, peek, host, cr0, cr3, cr4, efer, pkru, rflags.ac, invlpg, flush, vcpu, read, write, fetch, nested, expect), found 'xyz'"),
        ("", "1:1: expected a 'machine' line before the first command, found end of file"),
        ("# nothing\nmmu native\n", "1:1: expected a 'machine' line before the first command, found end of file"),
        ("read 0x1000\nmachine memory=64M", "1:1: expected a 'machine' line before the first command, found 'read'"),
        ("# loader first\n\n  poke 0 0\nmachine memory=64M", "3:3: expected a 'machine' line before the first command, found 'poke'"),
        ("mmu native\nhost zap-all\nmachine memory=64M", "2:1: expected a 'machine' line before the first command, found 'host'"),
        ("machine memory=4K\nmachine memory=8K", "2:1: duplicate 'machine' line (first on line 1)"),
        ("machine memory=4K\nread 0\nmachine memory=8K", "3:1: duplicate 'machine' line (first on line 1)"),
        ("mmu native\nmachine memory=4K\n mmu shadow", "3:2: duplicate 'mmu' line (first on line 1)"),
        ("machine memory=64M\npoke 0 0\ncr3 0x1000\nread 0\nmmu shadow", "5:1: 'mmu' must come before the first vCPU command (line 3)"),
        ("machine memory=64M\nvcpu 0\nmmu shadow", "3:1: 'mmu' must come before the first vCPU command (line 2)"),
        // machine
        ("machine vcpus=2", "1:16: expected a 'memory=SIZE' option after 'machine', found end of line"),
        ("machine memory=64M cpus=2", "1:20: expected an option of 'machine' (memory=SIZE, maxphyaddr=N or vcpus=N), found 'cpus=2'"),
        ("machine memory=64M 2", "1:20: expected an option of 'machine' (memory=SIZE, maxphyaddr=N or vcpus=N), found '2'"),
        ("machine memory=64M memory=32M", "1:20: duplicate option 'memory=' (first at column 9)"),
        ("machine memory=0", "1:16: expected a memory size that is a positive multiple of 4096, found '0'"),
        ("machine memory=1000", "1:16: expected a memory size that is a positive multiple of 4096, found '1000'"),
        ("machine memory=", "1:16: expected a memory size that is a positive multiple of 4096, found ''"),
        ("machine memory=128G maxphyaddr=36", "1:16: expected a memory size of at most 2^36 bytes (maxphyaddr=36), found '128G'"),
        // memory=1T was refused as "not a positive multiple of 4096": there was no T suffix.
        ("machine memory=64T", "1:16: expected a memory size of at most 63T (the most the model's host can back), found '64T'"),
        ("machine memory=4096T", "1:16: expected a memory size of at most 63T (the most the model's host can back), found '4096T'"),
        ("machine memory=64M maxphyaddr=35", "1:31: expected a MAXPHYADDR from 36 to 52, found '35'"),
        ("machine memory=64M maxphyaddr=53", "1:31: expected a MAXPHYADDR from 36 to 52, found '53'"),
        ("machine memory=64M vcpus=0", "1:26: expected a vCPU count from 1 to 64, found '0'"),
        ("machine memory=64M vcpus=65", "1:26: expected a vCPU count from 1 to 64, found '65'"),
        // mmu
        ("machine memory=64M\nmmu", "2:4: expected 'native', 'shadow' or 'tdp' after 'mmu', found end of line"),
        ("machine memory=64M\nmmu hyper", "2:5: expected 'native', 'shadow' or 'tdp' after 'mmu', found 'hyper'"),
        ("machine memory=64M\nmmu native host=pae32", "2:12: expected end of line after 'native', found 'host=pae32'"),
        ("machine memory=64M\nmmu shadow host=32bit", "2:17: expected '64bit' or 'pae32' for 'host=', found '32bit'"),
        ("machine memory=64M\nmmu shadow levels=4", "2:12: expected an option of 'shadow' (host=64bit|pae32 or roots=local|local-eager|special), found 'levels=4'"),
        ("machine memory=64M\nmmu shadow roots=upstream", "2:18: expected 'local', 'local-eager' or 'special' for 'roots=', found 'upstream'"),
        ("machine memory=64M\nmmu tdp levels=5", "2:17: expected a 'format=ept' or 'format=npt' option after 'tdp', found end of line"),
        ("machine memory=64M\nmmu tdp format=vmx", "2:16: expected 'ept' or 'npt' for 'format=', found 'vmx'"),
        ("machine memory=64M\nmmu tdp format=ept levels=3", "2:27: expected 4 or 5 for 'levels=', found '3'"),
        ("machine memory=64M\nmmu tdp format=ept host=pae32", "2:20: expected 'host=64bit' with 'format=ept' (EPT needs a 64-bit host), found 'host=pae32'"),
        ("machine memory=64M\nmmu tdp host=pae32 levels=5 format=npt", "2:20: expected no 'levels=5' with 'host=pae32' (a PAE host has a 3-level root), found 'levels=5'"),
        ("machine memory=64M\nmmu tdp format=ept format=npt", "2:20: duplicate option 'format=' (first at column 9)"),
        // poke, store, peek
        ("machine memory=64M\npoke", "2:5: expected a hexadecimal address after 'poke', found end of line"),
        ("machine memory=64M\nstore zz 1", "2:7: expected a hexadecimal address after 'store', found 'zz'"),
        ("machine memory=64M\npoke 0x1000", "2:12: expected a value to write after the address, found end of line"),
        ("machine memory=64M\npoke 0x1000 0x1_0000_0000 width=4", "2:13: value 0x1_0000_0000 does not fit in 4 bytes"),
        ("machine memory=64M\nstore 0x1000 1 width=2", "2:22: expected 4 or 8 for 'width=', found '2'"),
        ("machine memory=64M\npoke 0x4000000 1", "2:6: expected an address inside guest memory [0, 0x4000000), found '0x4000000'"),
        ("machine memory=4K\npeek 0x1000 width=4", "2:6: expected an address inside guest memory [0, 0x1000), found '0x1000'"),
        ("machine memory=64M\npeek 0xffc", "2:6: an 8-byte peek at 0xffc crosses a 4 KiB boundary"),
        ("machine memory=64M\nstore 0x1ffe 0 width=4", "2:7: a 4-byte store at 0x1ffe crosses a 4 KiB boundary"),
        ("machine memory=64M\npeek 0 user", "2:8: expected an option of 'peek' (width=4|8), found 'user'"),
        ("machine memory=64M\npeek x12", "2:6: expected a hexadecimal address after 'peek', found 'x12'"),
        // host
        ("machine memory=64M\nhost", "2:5: expected 'zap-all', 'invalidate', 'max-shadow-pages' or 'dirty-log' after 'host', found end of line"),
        ("machine memory=64M\nhost zap", "2:6: expected 'zap-all', 'invalidate', 'max-shadow-pages' or 'dirty-log' after 'host', found 'zap'"),
        ("machine memory=64M\nhost zap-all now", "2:14: expected end of line after 'zap-all', found 'now'"),
        ("machine memory=64M\nhost invalidate x12 0x1000", "2:17: expected a hexadecimal address after 'invalidate', found 'x12'"),
        ("machine memory=64M\nhost invalidate 0x1000", "2:23: expected a size after the address, found end of line"),
        ("machine memory=64M\nhost invalidate 0x1001 0x1000", "2:17: expected an address that is a multiple of 4096, found '0x1001'"),
        ("machine memory=64M\nhost invalidate 0x1000 0", "2:24: expected a size that is a positive multiple of 4096, found '0'"),
        ("machine memory=64M\nhost invalidate 0x1000 0x800", "2:24: expected a size that is a positive multiple of 4096, found '0x800'"),
        ("machine memory=64M\nhost invalidate 0xffff_ffff_ffff_f000 0x2000", "2:39: expected a range that ends at or below 2^64, found '0x2000'"),
        ("machine memory=64M\nhost max-shadow-pages 0", "2:23: expected a page count from 1 to 9223372036854775807, found '0'"),
        ("machine memory=64M\nhost max-shadow-pages 0x8000_0000_0000_0000", "2:23: expected a page count from 1 to 9223372036854775807, found '0x8000_0000_0000_0000'"),
        ("machine memory=64M\nhost dirty-log", "2:15: expected 'start', 'stop' or 'read' after 'dirty-log', found end of line"),
        ("machine memory=64M\nhost dirty-log clear", "2:16: expected 'start', 'stop' or 'read' after 'dirty-log', found 'clear'"),
        // vCPU state
        ("machine memory=64M\ncr3", "2:4: expected a value after 'cr3', found end of line"),
        ("machine memory=64M\nefer 0xd00 0x1", "2:12: expected end of line after 'efer', found '0x1'"),
        ("machine memory=64M\npkru 0x1_0000_0000", "2:6: value 0x1_0000_0000 does not fit in 4 bytes"),
        ("machine memory=64M\nrflags.ac 2", "2:11: expected 0 or 1 after 'rflags.ac', found '2'"),
        ("machine memory=64M\nrflags.ac", "2:10: expected 0 or 1 after 'rflags.ac', found end of line"),
        ("machine memory=64M\ninvlpg x12", "2:8: expected a hexadecimal address after 'invlpg', found 'x12'"),
        ("machine memory=64M\nflush all", "2:7: expected end of line after 'flush', found 'all'"),
        ("machine memory=64M\nvcpu 1", "2:6: expected a vCPU number from 0 to 0 (the machine has 1 vCPU), found '1'"),
        ("machine memory=64M vcpus=2\nvcpu 2", "2:6: expected a vCPU number from 0 to 1 (the machine has 2 vCPUs), found '2'"),
        ("machine memory=64M vcpus=2\nvcpu", "2:5: expected a vCPU number from 0 to 1 (the machine has 2 vCPUs), found end of line"),
        // Accesses
        ("machine memory=64M\nread width=4 0x1000", "2:6: expected a hexadecimal address after 'read', found 'width=4'"),
        ("machine memory=64M\nread 0x1000 width=3", "2:19: expected 1, 2, 4 or 8 for 'width=', found '3'"),
        ("machine memory=64M\nread 0x1000 user user", "2:18: duplicate flag 'user' (first at column 13)"),
        ("machine memory=64M\nread 0x1000 width=4 width=4", "2:21: duplicate option 'width=' (first at column 13)"),
        ("machine memory=64M\nread 0x1000 value=1", "2:13: expected an option of 'read' (width=1|2|4|8, user or implicit), found 'value=1'"),
        ("machine memory=64M\nread 0xfffffffffffffffd", "2:6: an 8-byte read at 0xfffffffffffffffd crosses a 4 KiB boundary"),
        ("machine memory=64M\nread 0x1ffe width=4", "2:6: a 4-byte read at 0x1ffe crosses a 4 KiB boundary"),
        ("machine memory=64M\nwrite 0xfff width=2", "2:7: a 2-byte write at 0xfff crosses a 4 KiB boundary"),
        ("machine memory=64M\nwrite 0x1000 value=0x1_0000 width=2", "2:20: value 0x1_0000 does not fit in 2 bytes"),
        ("machine memory=64M\nwrite 0x1000 value=big", "2:20: expected a value to write, found 'big'"),
        ("machine memory=64M\nfetch 0x1000 width=1", "2:14: expected an option of 'fetch' (user), found 'width=1'"),
        ("machine memory=64M\nfetch 0x1000 user implicit", "2:19: expected an option of 'fetch' (user), found 'implicit'"),
        ("machine memory=64M\nfetch", "2:6: expected a hexadecimal address after 'fetch', found end of line"),
        ("machine memory=64M\nwrite x12", "2:7: expected a hexadecimal address after 'write', found 'x12'"),
        // Expectations
        ("machine memory=64M\nexpect ok", "2:1: 'expect' needs an earlier read, write, fetch, peek or register write"),
        ("machine memory=64M\npoke 0 0\nflush\nexpect ok", "4:1: 'expect' needs an earlier read, write, fetch, peek or register write"),
        ("machine memory=64M\nread 0\nexpect", "3:7: expected 'ok', 'fault', 'gp', 'npf', 'ept-violation', 'ept-misconfig' or 'value=VALUE' after 'expect', found end of line"),
        ("machine memory=64M\nread 0\nexpect okay", "3:8: expected 'ok', 'fault', 'gp', 'npf', 'ept-violation', 'ept-misconfig' or 'value=VALUE' after 'expect', found 'okay'"),
        ("machine memory=64M\nwrite 0\nexpect value=1", "3:8: expected a peek or read before 'expect value=', found the write on line 2"),
        ("machine memory=64M\npeek 0\nexpect ok value=1", "3:11: expected a read before 'expect ok value=', found the peek on line 2"),
        ("machine memory=64M\npeek 0\nexpect ok gpa=0", "3:11: expected a read, write or fetch before 'expect ok gpa=', found the peek on line 2"),
        ("machine memory=64M\ncr3 0\ninvlpg 0\nexpect fault", "4:8: expected a read, write or fetch before 'expect fault', found the cr3 write on line 2"),
        ("machine memory=64M\nhost dirty-log read\nexpect fault ec=2", "3:8: expected a read, write or fetch before 'expect fault', found the dirty-log read on line 2"),
        ("machine memory=64M\nread 0\nexpect value=x", "3:14: expected a value for 'value=', found 'x'"),
        ("machine memory=64M\nread 0\nexpect value=1 gpa=0", "3:16: expected end of line after 'expect value=', found 'gpa=0'"),
        ("machine memory=64M\nread 0\nexpect gp ec=1", "3:11: expected end of line after 'expect gp', found 'ec=1'"),
        ("machine memory=64M\nread 0\nexpect fault gpa=0", "3:14: expected an option of 'expect fault' (ec=VALUE), found 'gpa=0'"),
        ("machine memory=64M\nread 0\nexpect ok gpa=0x1_0000_0000_0000_0000", "3:15: expected a number that fits in 64 bits, found '0x1_0000_0000_0000_0000'"),
        // Nested paging.
        ("machine memory=64M\nnested", "2:7: expected 'npt', 'ept' or 'flush' after 'nested', found end of line"),
        ("machine memory=64M\nnested npt mode=pae", "2:8: expected 'ncr3=ADDR' (the root of L1's nested page tables) after 'nested npt'"),
        ("machine memory=64M\nnested npt ncr3=0x1000", "2:8: expected 'mode=32-bit|pae|4-level|5-level' (L1's paging mode, the nested tables' format) after 'nested npt'"),
        ("machine memory=64M\nnested npt ncr3=0x1000 mode=long", "2:29: expected '32-bit', 'pae', '4-level' or '5-level' for 'mode=', found 'long'"),
        ("machine memory=64M\nnested ept", "2:8: expected 'eptp=VALUE' (the EPT pointer) after 'nested ept'"),
        ("machine memory=64M\nnested ept eptp=0x1016", "2:17: expected an EPT pointer a VM entry accepts (memory type 0 or 6 in bits 2:0, 4 or 5 levels in bits 5:3, no reserved bits), found '0x1016'"),
        ("machine memory=64M\nnested ept eptp=0x101e ad", "2:24: expected an option of 'nested ept' (eptp=VALUE or flush), found 'ad'"),
        ("machine memory=64M\nnested flush", "2:1: expected 'nested npt …' or 'nested ept …' on vCPU 0 before 'nested flush' (L1 has not entered L2 yet)"),
        ("machine memory=64M vcpus=2\nnested ept eptp=0x101e\nvcpu 1\nread 0", "4:1: expected a 'nested' line on vCPU 1 before 'read': in a nested scenario the vCPU commands are the L2 guest's"),
        ("machine memory=64M\ncr0 1\nnested ept eptp=0x101e", "2:1: expected a 'nested' line on vCPU 0 before 'cr0': in a nested scenario the vCPU commands are the L2 guest's"),
        ("machine memory=64M\nnested ept eptp=0x101e\nread 0\nexpect npf info=1 qualification=2", "4:19: expected an option of 'expect npf' (gpa=VALUE or info=VALUE), found 'qualification=2'"),
        ("machine memory=64M\nnested ept eptp=0x101e\nread 0\nexpect ept-misconfig qualification=2", "4:22: expected an option of 'expect ept-misconfig' (gpa=VALUE), found 'qualification=2'"),
        ("machine memory=64M\npeek 0\nexpect ept-violation", "3:8: expected a read, write or fetch before 'expect ept-violation', found the peek on line 2"),
    ] as [(String, String)])
    func diagnostics(input: String, expected: String) {
        #expect(diagnostic(input) == "t.scenario:" + expected, "input: \(input.debugDescription)")
    }

    @Test func errorFields() {
        #expect(throws: ScenarioError(file: "f", line: 2, column: 6, message: "expected a hexadecimal address after 'read', found 'x'")) {
            try ScenarioParser.parse("machine memory=64M\nread x", fileName: "f")
        }
    }

    @Test func hugeInputs() {
        let spaces = String(repeating: " ", count: 100_000)
        #expect(diagnostic("machine memory=64M\n\(spaces)read\(spaces)") == "t.scenario:2:100005: expected a hexadecimal address after 'read', found end of line")
        let manyLines = "machine memory=64M\n" + String(repeating: "flush\n", count: 20_000) + "read 0x1000 bogus"
        #expect(diagnostic(manyLines).hasPrefix("t.scenario:20002:13: expected an option of 'read'"))
    }

    // MARK: Fuzzing

    /// A valid scenario that uses every command; the mutation fuzzer starts here.
    private static let seedScenario = """
        # every command once
        machine memory=16M maxphyaddr=40 vcpus=2
        mmu tdp format=npt levels=4 host=64bit
        poke 0x1000 0x2003
        store 0x2000 0x3003 width=4
        peek 0x1000 width=8
        expect value=0x2003
        host zap-all
        host invalidate 0x1000 4K
        host max-shadow-pages 16
        host dirty-log start
        cr0 0x80000011
        cr3 0x1000
        cr4 0x20
        efer 0xd00
        pkru 0
        rflags.ac 1
        vcpu 1
        read 0x400ff8 width=8 user
        expect ok gpa=0x5ff8 value=0
        write 0x400000 value=0xff width=1 implicit
        expect fault ec=0x7
        fetch 0x7fff user
        expect gp
        invlpg 0x400000
        flush
        host dirty-log read
        expect ok
        """

    @Test func seedScenarioParses() throws {
        let scenario = try ScenarioParser.parse(Self.seedScenario, fileName: fileName)
        #expect(scenario.commands.count == 25)
        Self.checkInvariants(scenario, input: Self.seedScenario)
    }

    /// What every parsed scenario guarantees to the runner.
    private static func checkInvariants(_ scenario: Scenario, input: String) {
        let machine = scenario.machine
        #expect(machine.memorySize > 0 && machine.memorySize % 4096 == 0, "\(input.debugDescription)")
        #expect((36...52).contains(machine.maxPhysicalAddressBits) && (1...64).contains(machine.vcpuCount), "\(input.debugDescription)")
        var previousLine = 0
        for command in scenario.commands {
            #expect(command.line > previousLine, "\(input.debugDescription)")
            previousLine = command.line
            switch command.action {
            case .access(let access):
                #expect([1, 2, 4, 8].contains(access.width) && (access.address & 0xfff) + UInt64(access.width) <= 4096,
                        "line \(command.line) of \(input.debugDescription)")
            case .poke(let address, _, let width), .store(let address, _, let width), .peek(let address, let width):
                #expect([4, 8].contains(width) && address < machine.memorySize && (address & 0xfff) + UInt64(width) <= 4096,
                        "line \(command.line) of \(input.debugDescription)")
            case .selectVCPU(let index):
                #expect((0..<machine.vcpuCount).contains(index), "line \(command.line) of \(input.debugDescription)")
            default:
                break
            }
        }
    }

    /// Parses `input`: it must either give a valid scenario or an error that
    /// points inside the input.
    private static func fuzzOne(_ input: String) {
        do {
            checkInvariants(try ScenarioParser.parse(input, fileName: "fuzz.scenario"), input: input)
        } catch {
            var lineLengths: [Int] = [0]
            for scalar in input.unicodeScalars {
                if scalar == "\n" { lineLengths.append(0) } else { lineLengths[lineLengths.count - 1] += 1 }
            }
            let inRange = error.file == "fuzz.scenario" && error.line >= 1 && error.line <= lineLengths.count
                && error.column >= 1 && error.column <= lineLengths[error.line - 1] + 1
            #expect(inRange, "\(error) for \(input.debugDescription)")
            #expect(!error.message.isEmpty && !error.message.contains("\n"), "\(error) for \(input.debugDescription)")
        }
    }

    @Test func fuzzRandomBytes() {
        var generator = SplitMix64(state: 0x5eed)
        let alphabet = Array("machine memory=64M mmu tdp shadow read write fetch expect ok value=0x1_000K #\t\r\n\0=_".utf8)
        for _ in 0..<2_000 {
            let length = Int.random(in: 0...120, using: &generator)
            let fromAlphabet = Bool.random(using: &generator)
            let bytes = (0..<length).map { _ in
                fromAlphabet ? alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] : UInt8.random(in: 0...255, using: &generator)
            }
            Self.fuzzOne(String(decoding: bytes, as: UTF8.self))
        }
    }

    @Test func fuzzMutatedScenario() {
        var generator = SplitMix64(state: 42)
        let pieces = ["0", "1", "0x", "_", "=", "K", "G", "#", " ", "\t", "\r", "\n", "\0", "width=", "user", "4", "8", "é",
                      "0xffff_ffff_ffff_ffff", "99999999999999999999", "expect ", "value=", "mmu ", "machine memory=4K\n"]
        let seed = Array(Self.seedScenario.unicodeScalars)
        for _ in 0..<2_000 {
            var scalars = seed
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let position = Int.random(in: 0...scalars.count, using: &generator)
                let piece = Array(pieces[Int.random(in: 0..<pieces.count, using: &generator)].unicodeScalars)
                switch Int.random(in: 0..<4, using: &generator) {
                case 0 where position < scalars.count:
                    scalars.remove(at: position)
                case 1 where position < scalars.count:
                    scalars.replaceSubrange(position...position, with: piece)
                case 2:
                    // Move a stretch of text elsewhere (reorders lines and tokens).
                    let end = min(scalars.count, position + Int.random(in: 1...40, using: &generator))
                    let stretch = Array(scalars[position..<end])
                    scalars.removeSubrange(position..<end)
                    scalars.insert(contentsOf: stretch, at: Int.random(in: 0...scalars.count, using: &generator))
                default:
                    scalars.insert(contentsOf: piece, at: position)
                }
            }
            var text = String.UnicodeScalarView()
            text.append(contentsOf: scalars)
            Self.fuzzOne(String(text))
        }
    }
}
