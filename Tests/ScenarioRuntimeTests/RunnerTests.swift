import Foundation
import ScenarioLanguage
import ScenarioRuntime
import TestSupport
import Testing
import X86Paging

// MARK: Helpers

private let runnerFile = "r.scenario"

private struct RunOutput {
    var observations: [Observation]
    var failures: [ExpectationFailure]
    /// The JSON lines `shadowmmu run` would print.
    var printed: [String] { observations.filter(\.isPrinted).map(\.json) }

    func observation(line: Int) -> Observation? { observations.first { $0.line == line } }
}

private func makeRunner(_ text: String, file: String = runnerFile) throws -> ScenarioRunner {
    try ScenarioRunner(try ScenarioParser.parse(text, fileName: file))
}

private func run(_ runner: ScenarioRunner) -> RunOutput {
    var output = RunOutput(observations: [], failures: [])
    runner.run(observe: { output.observations.append($0) }, expectationFailed: { output.failures.append($0) })
    return output
}

private func run(_ text: String, file: String = runnerFile) throws -> RunOutput {
    run(try makeRunner(text, file: file))
}

/// Executes, on a fresh runner, every command up to and including line `line`.
private func step(_ runner: ScenarioRunner, through line: Int) {
    for _ in runner.scenario.commands.prefix(while: { $0.line <= line }) {
        runner.step(observe: { _ in }, expectationFailed: { _ in })
    }
}

private let examplesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("examples")

private let exampleNames: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: examplesDirectory.path)) ?? [])
    .filter { $0.hasSuffix(".scenario") }.sorted()

private func example(_ name: String) throws -> String {
    try String(contentsOf: examplesDirectory.appendingPathComponent(name), encoding: .utf8)
}

/// 4-level paging on tables at 0x1000 (PML4), 0x2000, 0x3000, 0x4000 (PT), every
/// non-leaf entry P RW US; the caller adds leaves. Ends on line 9.
private let fourLevel = """
    machine memory=64M
    poke 0x1000 0x2007
    poke 0x2000 0x3007
    poke 0x3000 0x4007
    poke 0x4008 0x100007
    cr4 0x20
    cr3 0x1000
    efer 0x900
    cr0 0x80010001
    """

// MARK: Tests

@Suite struct Runner {
    // MARK: Expectations

    @Test func failedExpectationsAreReportedWithTheirLineAndTheRunContinues() throws {
        let output = try run(fourLevel + """

            read 0x1000 user
            expect ok gpa=0x100000
            expect ok gpa=0x200000
            expect fault
            write 0x5000
            expect fault ec=0x2
            expect fault ec=0x3
            expect gp
            cr0 0x1
            expect ok
            expect gp
            cr4 0x10000020
            expect gp
            expect ok
            peek 0x4008
            expect value=0x100027
            expect value=0x100067
            read 0x1000 width=4
            expect value=0x0
            expect ok value=0x1
            """)
        #expect(output.failures.map(\.line) == [12, 13, 16, 17, 19, 23, 26, 29])
        #expect(output.failures.allSatisfy { $0.file == runnerFile })
        #expect(output.failures.first?.description
            == "r.scenario:12: expectation failed: expected ok gpa=0x200000, got read → ok gpa=0x100000 value=0x0")
        #expect(output.failures.first { $0.line == 16 }?.expected == "fault ec=0x3")
        #expect(output.failures.first { $0.line == 16 }?.actual == "write → fault ec=0x2")
        #expect(output.failures.first { $0.line == 23 }?.actual == "cr4 write → gp")
        // Every observable command still ran and was observed (register writes
        // included; the accepted ones are not printed).
        #expect(output.observations.map(\.line) == [6, 7, 8, 9, 10, 14, 18, 21, 24, 27])
        #expect(output.printed.count == 6)
    }

    @Test func anExampleWithAllExpectationsHoldingReportsNoFailure() throws {
        for name in exampleNames {
            #expect(try run(try example(name), file: name).failures.isEmpty, "\(name)")
        }
    }

    // MARK: Register writes

    @Test func aRejectedRegisterWritePrintsGPAndKeepsTheOldValue() throws {
        // Two address spaces: CR3=0x1000 maps linear 0x1000 to 0x100000,
        // CR3=0x11000 maps it to 0x200000.
        let runner = try makeRunner(fourLevel + """

            poke 0x11000 0x12007
            poke 0x12000 0x13007
            poke 0x13000 0x14007
            poke 0x14008 0x200007
            cr3 0x8000000000011000
            invlpg 0x1000
            read 0x1000
            cr3 0x11000
            read 0x1000
            """)
        let before = runner.machine.registers(vcpu: 0)
        #expect(before.cr3 == 0)
        step(runner, through: 13)
        let inLongMode = runner.machine.registers(vcpu: 0)
        #expect(inLongMode.cr3 == 0x1000 && inLongMode.mode == .level4)

        var observed: [Observation] = []
        runner.step(observe: { observed.append($0) }, expectationFailed: { _ in })  // line 14: bit 63 is reserved without PCIDE
        #expect(observed.count == 1)
        #expect(observed.first?.isPrinted == true)
        #expect(observed.first?.json == #"{"line":14,"vcpu":0,"op":"cr3","result":"gp"}"#)
        #expect(runner.machine.registers(vcpu: 0) == inLongMode)

        let rest = run(runner)
        // The walk after the #GP still uses the old CR3 ...
        #expect(rest.observation(line: 16)?.event == .access(AccessCommand(kind: .read, address: 0x1000), .ok(gpa: 0x100000, value: 0)))
        // ... and an accepted write is observed but not printed.
        let accepted = try #require(rest.observation(line: 17))
        #expect(accepted.event == .registerWrite(.cr3, accepted: true))
        #expect(!accepted.isPrinted)
        #expect(rest.printed.count == 2)
        #expect(rest.observation(line: 18)?.event == .access(AccessCommand(kind: .read, address: 0x1000), .ok(gpa: 0x200000, value: 0)))
    }

    @Test(arguments: [
        ("cr0 0x1", "clearing PG in long mode"),
        ("cr0 0x180010001", "a bit above 31 in CR0"),
        ("cr0 0xa0010001", "NW without CD"),
        ("cr4 0x0", "clearing PAE in long mode"),
        ("cr4 0x1020", "setting LA57 in long mode"),
        ("cr4 0x8020", "reserved CR4 bit 15"),
        ("cr3 0x10000000000000", "CR3 above MAXPHYADDR"),
        ("efer 0x800", "clearing LME while paging"),
        ("efer 0x902", "reserved EFER bit 1"),
    ])
    func rejectedWritesChangeNoRegister(_ command: String, _ why: String) throws {
        let runner = try makeRunner(fourLevel + "\n" + command + "\nread 0x1000\n")
        step(runner, through: 9)
        let before = runner.machine.registers(vcpu: 0)
        let output = run(runner)
        let register = try #require(output.observation(line: 10))
        guard case .registerWrite(_, let accepted) = register.event else {
            Issue.record("line 10 is not a register write: \(register)")
            return
        }
        #expect(!accepted, "\(why)")
        #expect(register.json.hasSuffix(#","result":"gp"}"#))
        #expect(runner.machine.registers(vcpu: 0) == before, "\(why)")
        #expect(output.observation(line: 11)?.event == .access(AccessCommand(kind: .read, address: 0x1000), .ok(gpa: 0x100000, value: 0)))
    }

    @Test func aPAELoadThatFailsKeepsThePDPTERegisters() throws {
        let runner = try makeRunner("""
            machine memory=64M
            poke 0x1000 0x2001
            poke 0x2000 0x3007
            poke 0x3008 0x100007
            poke 0x1020 0x2001
            poke 0x1028 0x6001
            cr4 0x20
            cr3 0x1000
            cr0 0x80000001
            cr3 0x1026
            """)
        step(runner, through: 9)
        let before = runner.machine.registers(vcpu: 0)
        #expect(before.pdptes == PDPTERegisters(0x2001, 0, 0, 0))
        let output = run(runner)  // 0x1026 & ~0x1f = 0x1020: PDPTE[1] = 0x6001 is valid, PDPTE[3] too (zero)
        #expect(output.printed.isEmpty)
        #expect(runner.machine.registers(vcpu: 0).pdptes == PDPTERegisters(0x2001, 0x6001, 0, 0))

        let failing = try makeRunner("""
            machine memory=64M
            poke 0x1000 0x2001
            poke 0x1030 0x2003
            cr4 0x20
            cr3 0x1000
            cr0 0x80000001
            store 0x1008 0x4001
            cr3 0x1020
            """)
        step(failing, through: 7)
        let loaded = failing.machine.registers(vcpu: 0)
        let rest = run(failing)
        #expect(rest.printed == [#"{"line":8,"vcpu":0,"op":"cr3","result":"gp"}"#])
        #expect(failing.machine.registers(vcpu: 0) == loaded)
        #expect(loaded.pdptes == PDPTERegisters(0x2001, 0, 0, 0))
    }

    // MARK: Dirty log

    @Test func theDirtyLogOfTheExampleIsExact() throws {
        let text = try example("dirty-log.scenario")
        let output = try run(text, file: "dirty-log.scenario")
        #expect(output.failures.isEmpty)
        let logs: [[UInt64]] = output.observations.compactMap {
            if case .dirtyLog(let gfns) = $0.event { gfns } else { nil }
        }
        #expect(logs == [[0x1, 0x2, 0x3, 0x4], [0x4, 0x100], [0x100], [], [0x5], [], [0x4], [0x3, 0x4ff], [0x100], [0x100], []])

        // The comment after each `host dirty-log read` says what it prints.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for observation in output.observations {
            guard case .dirtyLog(let gfns) = observation.event else { continue }
            let line = lines[observation.line - 1]
            guard let comment = line.range(of: "# ->") else {
                Issue.record("dirty-log.scenario:\(observation.line) has no '# ->' comment")
                continue
            }
            let words = line[comment.upperBound...].split(separator: " ")
            let documented = words.first == "(empty)" ? [] : words.prefix { $0.hasPrefix("0x") }.compactMap { UInt64($0.dropFirst(2), radix: 16) }
            #expect(documented == gfns, "dirty-log.scenario:\(observation.line): the comment says \(documented), the run printed \(gfns)")
        }
    }

    @Test func dirtyLogCountsAccessesStoresAndWalkerUpdatesButNotPokes() throws {
        let output = try run(fourLevel + """

            poke 0x4010 0x101007
            host dirty-log read
            host dirty-log start
            poke 0x7000 0x1
            write 0x2008 value=0x1 width=1 user
            store 0x8ff8 0x2 width=4
            host dirty-log read
            write 0x2008 value=0x3 width=1 user
            host dirty-log stop
            write 0x1000 user
            host dirty-log read
            host dirty-log start
            host dirty-log read
            """)
        let logs: [[UInt64]] = output.observations.compactMap {
            if case .dirtyLog(let gfns) = $0.event { gfns } else { nil }
        }
        // Before start: nothing. Then A in PML4E/PDPTE/PDE, A+D in PTE[2], the data
        // frame 0x101 and the stored frame 0x8; the poke to frame 7 is not there.
        #expect(logs == [[], [0x1, 0x2, 0x3, 0x4, 0x8, 0x101], [0x101], []])
        #expect(output.observation(line: 16)?.json == #"{"line":16,"vcpu":0,"op":"dirty-log","gfns":["0x1","0x2","0x3","0x4","0x8","0x101"]}"#)
    }

    // MARK: Per-vCPU state

    @Test func eachVCPUHasItsOwnRegistersAndTLB() throws {
        let runner = try makeRunner("""
            machine memory=64M vcpus=3
            poke 0x1000 0x2007
            poke 0x2000 0x3007
            poke 0x3000 0x4007
            poke 0x4008 0x100007
            poke 0x4010 0x101005
            poke 0x9000 0xa007 width=4
            poke 0xa004 0x200007 width=4
            cr4 0x200020
            cr3 0x1000
            efer 0x100
            cr0 0x80010001
            vcpu 1
            cr4 0x200000
            cr3 0x9000
            cr0 0x80000001
            rflags.ac 1
            vcpu 0
            read 0x1000 user
            read 0x1000
            write 0x2000
            vcpu 1
            read 0x1000 user
            read 0x1000
            vcpu 2
            read 0x1000
            vcpu 0
            store 0x4008 0x300007
            invlpg 0x1000
            read 0x1000 user
            vcpu 1
            cr3 0x9000
            poke 0xa004 0x400007 width=4
            read 0x1000 user
            """)
        let output = run(runner)
        #expect(output.failures.isEmpty)
        #expect(runner.machine.registers(vcpu: 0).mode == .level4)
        #expect(runner.machine.registers(vcpu: 1).mode == .bits32)
        #expect(runner.machine.registers(vcpu: 2).mode == .none)
        #expect(runner.machine.registers(vcpu: 0).alignmentCheck == false)
        #expect(runner.machine.registers(vcpu: 1).alignmentCheck == true)
        #expect(runner.machine.registers(vcpu: 0).cr0.wp && !runner.machine.registers(vcpu: 1).cr0.wp)

        func outcome(_ line: Int) -> AccessOutcome? {
            if case .access(_, let outcome) = output.observation(line: line)?.event { outcome } else { nil }
        }
        func vcpu(_ line: Int) -> Int? { output.observation(line: line)?.vcpu }
        #expect(outcome(19) == .ok(gpa: 0x100000, value: 0) && vcpu(19) == 0)
        #expect(outcome(20) == .pageFault(errorCode: 0x1))                      // SMAP, AC=0 on vCPU 0
        #expect(outcome(21) == .pageFault(errorCode: 0x3))                      // WP=1 on vCPU 0
        #expect(outcome(23) == .ok(gpa: 0x200000, value: 0) && vcpu(23) == 1)   // vCPU 1's own tables
        #expect(outcome(24) == .ok(gpa: 0x200000, value: 0))                    // AC=1 on vCPU 1
        #expect(outcome(26) == .ok(gpa: 0x1000, value: 0x2027) && vcpu(26) == 2) // paging off on vCPU 2
        #expect(outcome(30) == .ok(gpa: 0x300000, value: 0))
        // vCPU 1 reloaded CR3, so its next walk sees the new 32-bit PTE.
        #expect(outcome(34) == .ok(gpa: 0x400000, value: 0))

        let native = try #require(runner.machine as? NativeMachine)
        #expect(native.cpus.count == 3)
        #expect(native.cpus[2].tlb.liveEntries == 0)
        #expect(native.cpus[0].tlb.liveEntries >= 1 && native.cpus[1].tlb.liveEntries >= 1)
        #expect(native.cpus[0].tlb !== native.cpus[1].tlb)
    }

    @Test func anInvalidationOnOneVCPUDoesNotReachAnother() throws {
        let runner = try makeRunner((fourLevel + """

            vcpu 1
            cr4 0x20
            cr3 0x1000
            efer 0x900
            cr0 0x80010001
            read 0x1000
            vcpu 0
            read 0x1000
            store 0x4008 0x200007
            invlpg 0x1000
            read 0x1000
            vcpu 1
            read 0x1000
            flush
            read 0x1000
            """).replacingOccurrences(of: "machine memory=64M", with: "machine memory=64M vcpus=2"))
        let output = run(runner)
        let gpas = output.observations.compactMap { observation -> UInt64? in
            if case .access(_, .ok(let gpa, _)) = observation.event { gpa } else { nil }
        }
        // vCPU 1 still uses its cached translation after vCPU 0's INVLPG (this
        // simulator keeps it; the architecture would also allow the new one),
        // and sees the new one after its own flush.
        #expect(gpas == [0x100000, 0x100000, 0x200000, 0x100000, 0x200000])
        let accessVCPUs = output.observations.compactMap { observation -> Int? in
            if case .access = observation.event { observation.vcpu } else { nil }
        }
        #expect(accessVCPUs == [1, 0, 0, 1, 1])
    }

    // MARK: Accessed and dirty flags

    @Test func accessedAndDirtyFlagsAreVisibleThroughPeek() throws {
        let output = try run(fourLevel + """

            poke 0x3008 0x400083
            poke 0x4010 0x101001
            poke 0x2008 0x40000083
            read 0x1000
            peek 0x1000
            peek 0x2000
            peek 0x3000
            peek 0x4008
            write 0x1000
            peek 0x4008
            peek 0x3000
            write 0x200000
            peek 0x3008
            write 0x2000
            peek 0x4010
            read 0x40000000
            peek 0x2008
            write 0x2000 user
            peek 0x4010
            """)
        let peeks = output.observations.compactMap { observation -> UInt64? in
            if case .peek(_, let value) = observation.event { value } else { nil }
        }
        #expect(peeks == [
            0x2027, 0x3027, 0x4027, 0x100027,  // a read: A in every level, D nowhere
            0x100067, 0x4027,                  // a write: D in the leaf only
            0x4000e3,                          // a write through a 2 MiB PDE: A and D there
            0x101001,                          // a faulting write leaves the leaf alone
            0x400000a3,                        // a read through a 1 GiB PDPTE: A only
            0x101001,                          // still nothing after a user-mode fault
        ])
    }

    // MARK: Determinism and explain

    @Test func runningAnExampleTwiceGivesTheSameOutput() throws {
        for name in exampleNames {
            let text = try example(name)
            let first = try run(text, file: name)
            let second = try run(text, file: name)
            #expect(!first.printed.isEmpty, "\(name)")
            #expect(first.printed == second.printed, "\(name)")
            #expect(first.observations == second.observations, "\(name)")
            #expect(first.failures == second.failures, "\(name)")
        }
    }

    /// `explain` performs the access exactly as `run` does: same outcome on
    /// every access line of every example.
    @Test func explainAgreesWithRunOnEveryAccessOfTheExamples() throws {
        for name in exampleNames {
            let text = try example(name)
            let full = try run(text, file: name)
            for observation in full.observations {
                guard case .access(let command, let outcome) = observation.event else { continue }
                let explanation = try makeRunner(text, file: name).explain(line: observation.line)
                #expect(explanation.outcome == outcome, "\(name):\(observation.line)")
                #expect(explanation.command == command, "\(name):\(observation.line)")
                #expect(explanation.vcpu == observation.vcpu, "\(name):\(observation.line)")
            }
        }
    }

    @Test func explainOfALineWithoutAnAccessThrowsWithThatLine() throws {
        let runner = try makeRunner(fourLevel + "\nread 0x1000\nexpect ok\n")
        #expect(throws: ScenarioError(
            file: runnerFile, line: 11, column: 1, message: "expected a read, write or fetch on line 11, found 'expect'")) {
            try runner.explain(line: 11)
        }
        #expect(throws: ScenarioError.self) { try makeRunner(fourLevel).explain(line: 3) }
    }
}
