import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

// MARK: Helpers

/// Small sizes that still exercise every path of each workload.
private func tinySize(_ name: WorkloadName) -> WorkloadSize {
    switch name {
    case .boot: .count(16)
    case .processes: .count(2)
    case .fork: .count(2)
    case .munmap: .count(6)
    case .hugepages: .count(2)
    case .mix: .count(2)
    }
}

private func runWorkload(
    _ name: WorkloadName, mode: GuestPagingLayout.Mode, mmu: MMUConfiguration = .native,
    size: WorkloadSize? = nil, seed: UInt64 = 1
) -> WorkloadRun {
    Workload.run(name, options: WorkloadOptions(mode: mode, mmu: mmu, size: size ?? tinySize(name), seed: seed))
}

/// The recorded text without its `mmu` line (what every MMU must agree on).
private func guestVisible(_ run: WorkloadRun) -> String {
    (run.scenario ?? "").split(separator: "\n").filter { !$0.hasPrefix("mmu ") }.joined(separator: "\n")
}

private let allCombinations: [(WorkloadName, GuestPagingLayout.Mode)] =
    WorkloadName.allCases.flatMap { name in GuestPagingLayout.Mode.allCases.map { (name, $0) } }

// MARK: The emitted scenario

@Suite struct EmittedScenario {
    /// Every workload in every mode: the text parses, names the same commands
    /// the kernel ran, and replays with every expectation holding.
    @Test(arguments: allCombinations)
    func parsesAndReplaysWithEveryExpectationHolding(_ name: WorkloadName, _ mode: GuestPagingLayout.Mode) throws {
        let run = runWorkload(name, mode: mode)
        #expect(run.failure == nil, "\(name) \(mode): \(run.failure.map(String.init(describing:)) ?? "")")
        let text = try #require(run.scenario)
        let scenario = try ScenarioParser.parse(text, fileName: "\(name)-\(mode).scenario")
        #expect(scenario.mmu == .native)
        let commands = scenario.commands.filter { if case .expect = $0.action { false } else { true } }
        #expect(commands.count == run.commands, "\(name) \(mode): \(commands.count) commands parsed, \(run.commands) run")
        let accesses = scenario.commands.filter { if case .access = $0.action { true } else { false } }
        let expectations = scenario.commands.filter { if case .expect = $0.action { true } else { false } }
        #expect(accesses.count == run.accesses && expectations.count == run.accesses, "\(name) \(mode): every access has its expect line")

        var failures: [ExpectationFailure] = []
        try ScenarioRunner(scenario).run(expectationFailed: { failures.append($0) })
        #expect(failures.isEmpty, "\(name) \(mode): \(failures.prefix(3).map(\.description))")
    }

    /// The kernel's decisions depend only on what the guest can see, so the
    /// same workload gives the same scenario under every MMU.
    @Test(arguments: [(WorkloadName.fork, GuestPagingLayout.Mode.pae), (.mix, .level4), (.hugepages, .bits32), (.munmap, .level5)])
    func everyMMUProducesTheSameGuestVisibleRun(_ name: WorkloadName, _ mode: GuestPagingLayout.Mode) {
        let reference = runWorkload(name, mode: mode)
        #expect(reference.failure == nil)
        let configurations = MMUName.all.map(\.1).filter { WorkloadOptions(mode: mode, mmu: $0).problem == nil && $0 != .native }
        #expect(configurations.count >= (mode.isLongMode ? 5 : 7))
        for configuration in configurations {
            let run = runWorkload(name, mode: mode, mmu: configuration)
            #expect(run.failure == nil, "\(name) \(mode) under \(configuration): \(run.failure.map(String.init(describing:)) ?? "")")
            #expect(guestVisible(run) == guestVisible(reference), "\(name) \(mode) under \(configuration) did something else than under mmu native")
            #expect(run.kernel == reference.kernel)
        }
    }
}

// MARK: Differential checking

@Suite struct WorkloadsUnderTheChecker {
    /// Each workload's scenario, run under every MMU configuration that can
    /// run it, matches the architecture command by command, with the
    /// hypervisor's audits holding after every command.
    @Test(arguments: [
        (WorkloadName.boot, GuestPagingLayout.Mode.bits32), (.processes, .pae), (.fork, .level4), (.fork, .pae),
        (.munmap, .level5), (.hugepages, .bits32), (.hugepages, .level4), (.mix, .level4),
    ])
    func everyConfigurationMatchesTheReference(_ name: WorkloadName, _ mode: GuestPagingLayout.Mode) throws {
        let run = runWorkload(name, mode: mode)
        let scenario = try ScenarioParser.parse(try #require(run.scenario), fileName: "\(name)-\(mode).scenario")
        let reports = try DifferentialChecker.check(scenario)
        #expect(reports.count >= (mode.isLongMode ? 5 : 7), "\(name) \(mode): only \(reports.count) configurations ran it")
        for report in reports {
            #expect(report.passed, "\(name) \(mode) under \(report.configuration): \((report.mismatches + report.auditFailures).prefix(3))")
        }
    }
}

// MARK: What the counters must show

@Suite struct WorkloadCounters {
    @Test func moreForksMeanMoreCopyOnWriteFaults() {
        let one = runWorkload(.fork, mode: .level4, mmu: .shadow(host: .bits64), size: .count(1))
        let four = runWorkload(.fork, mode: .level4, mmu: .shadow(host: .bits64), size: .count(4))
        #expect(one.failure == nil && four.failure == nil)
        #expect(four.kernel.forks == 4 && four.kernel.execs == 4 && four.kernel.exits == 4)
        let cow = { (run: WorkloadRun) in run.kernel.copyOnWriteCopies + run.kernel.copyOnWriteReuses }
        #expect(cow(four) > cow(one), "copy-on-write faults: \(cow(one)) with 1 fork, \(cow(four)) with 4")
        // Only fork shares anonymous pages, so only fork can find a page it may take over in place.
        #expect(four.kernel.copyOnWriteReuses > 0)
        #expect(runWorkload(.processes, mode: .level4).kernel.copyOnWriteReuses == 0)
        // A copy-on-write fault is a user write to a present page: error code P W U.
        #expect(four.scenario?.contains("expect fault ec=0x7") == true)
        // Write-protecting the parent's entries writes shadowed page tables: the hypervisor emulates them.
        #expect(four.statistics[.pteWritesEmulated] > one.statistics[.pteWritesEmulated])
        // exec tears address spaces down: page tables are freed.
        #expect(four.kernel.pageTablesFreed > one.kernel.pageTablesFreed)
    }

    @Test func accessesAfterMunmapFault() throws {
        let run = runWorkload(.munmap, mode: .level4, size: .count(8))
        #expect(run.failure == nil)
        // One SIGSEGV per round: the process touched what it had unmapped.
        #expect(run.kernel.segmentationFaults == 2)
        #expect(run.kernel.munmaps == 4 && run.kernel.pagesUnmapped == 16)
        // At most 32 pages: one invlpg per page unmapped (plus copy-on-write remaps).
        #expect(run.kernel.invlpgs >= 16)
        // After the first munmap: its invalidations, then the process's read of
        // the unmapped page faults as a user read of a not-present page.
        let lines = try #require(run.scenario).split(separator: "\n").map(String.init)
        let munmap = try #require(lines.firstIndex { $0.hasPrefix("# munmap") })
        let read = try #require(lines[munmap...].firstIndex { $0.hasPrefix("read ") && $0.hasSuffix(" user") })
        #expect(lines[munmap..<read].contains { $0.hasPrefix("invlpg ") })
        #expect(lines[read + 1] == "expect fault ec=0x4", "after munmap: \(lines[read]) / \(lines[read + 1])")
    }

    @Test func largeMunmapFlushesInsteadOfInvalidatingEachPage() {
        let run = runWorkload(.munmap, mode: .pae, size: .count(80))
        #expect(run.failure == nil)
        #expect(run.kernel.pagesUnmapped == 160)
        #expect(run.kernel.tlbFlushes >= 4, "40-page munmaps reload CR3")
        // The mmap area's page table empties once per round; PAE page directories stay.
        #expect(run.kernel.pageTablesFreed == 2)
    }

    @Test func hugePagesFaultOncePerHugePage() {
        let run = runWorkload(.hugepages, mode: .level4, mmu: .shadow(host: .bits64), size: .count(4))
        #expect(run.failure == nil)
        #expect(run.kernel.hugePageFaults == 4 + 2)
        #expect(run.kernel.segmentationFaults == 1)
        // The shadow MMU maps a guest huge page with direct shadow pages of small sptes.
        #expect(run.statistics[.shadowPagesCreated] > 0)
    }

    @Test func contextSwitchesReuseCachedRootsUnderShadowPaging() {
        let run = runWorkload(.processes, mode: .level4, mmu: .shadow(host: .bits64), size: .count(3))
        #expect(run.failure == nil)
        #expect(run.kernel.contextSwitches == 12)
        #expect(run.statistics[.cachedRootHits] > 0)
        #expect(run.statistics[.exits] > run.kernel.pageFaultsHandled)
    }

    @Test func bootInitialisesTheMemoryMapThroughTheDirectMap() {
        let run = runWorkload(.boot, mode: .level5, size: .count(100))
        #expect(run.failure == nil)
        #expect(run.kernel.kernelAccesses >= 200)
        #expect(run.scenario?.contains("cr4 0x3010a0") == true, "5-level: PAE LA57 PGE SMEP SMAP")
    }

    @Test func theSummaryNamesEveryFigure() throws {
        let run = runWorkload(.fork, mode: .level4, mmu: .shadow(host: .bits64))
        for words in ["exits", "shadow faults fixed", "guest faults", "emulated writes", "unsync / sync", "roots", "shadow pages", "memory", "copy-on-write"] {
            #expect(run.summaryText.contains(words), "no '\(words)' in the summary")
        }
        let json = run.summaryJSON.encoded
        for key in ["\"workload\":\"fork\"", "\"kernel\":{", "\"stats\":{", "\"cow_copies\":", "\"exits\":", "\"result\":\"ok\""] {
            #expect(json.contains(key), "no \(key) in \(json.prefix(200))")
        }
    }

    @Test func aHostThatCannotRunTheGuestIsRefusedWithAdvice() {
        let run = Workload.run(.boot, options: WorkloadOptions(mode: .level4, mmu: .shadow(host: .pae32)))
        #expect(run.failure?.kind == .unusable)
        #expect(run.failure?.message.contains("--mode") == true)
    }
}

// MARK: The kernel checks the machine

/// A machine that answers one user read with the wrong guest physical address.
private final class MisdirectingMachine: GuestMachine {
    let inner: NativeMachine
    var userReads = 0
    let misdirect: Int

    init(configuration: MachineConfiguration, misdirect: Int) {
        inner = NativeMachine(configuration: configuration)
        self.misdirect = misdirect
    }

    func access(vcpu: Int, _ command: AccessCommand) -> AccessOutcome {
        let outcome = inner.access(vcpu: vcpu, command)
        guard command.user, command.kind == .read, case .ok(let gpa, let value) = outcome else { return outcome }
        userReads += 1
        return userReads == misdirect ? .ok(gpa: gpa ^ 0x1000, value: value) : outcome
    }
    func explainAccess(vcpu: Int, _ command: AccessCommand) -> AccessExplanation { inner.explainAccess(vcpu: vcpu, command) }
    func writeRegister(vcpu: Int, _ register: RegisterName, _ value: UInt64) -> Bool { inner.writeRegister(vcpu: vcpu, register, value) }
    func setAlignmentCheck(vcpu: Int, _ value: Bool) { inner.setAlignmentCheck(vcpu: vcpu, value) }
    func invalidatePage(vcpu: Int, _ address: UInt64) { inner.invalidatePage(vcpu: vcpu, address) }
    func flush(vcpu: Int) { inner.flush(vcpu: vcpu) }
    func enterNested(vcpu: Int, _ entry: NestedEntry) { inner.enterNested(vcpu: vcpu, entry) }
    func poke(_ address: UInt64, width: Int, _ value: UInt64) { inner.poke(address, width: width, value) }
    func store(_ address: UInt64, width: Int, _ value: UInt64) { inner.store(address, width: width, value) }
    func peek(_ address: UInt64, width: Int) -> UInt64 { inner.peek(address, width: width) }
    func zapAll() {}
    func invalidate(_ address: UInt64, size: UInt64) {}
    func setMaxShadowPages(_ count: Int) {}
    func startDirtyLog() {}
    func stopDirtyLog() {}
    func readDirtyLog() -> [UInt64] { [] }
    func registers(vcpu: Int) -> ControlRegisters { inner.registers(vcpu: vcpu) }
    var statistics: MachineStatistics { inner.statistics }
    func shadowRoot(vcpu: Int) -> JSONValue { .null }
}

@Suite struct KernelChecksTheMachine {
    @Test func aReadReachingTheWrongFramePanicsTheKernel() throws {
        let configuration = MachineConfiguration(memorySize: 64 << 20)
        let machine = MisdirectingMachine(configuration: configuration, misdirect: 3)
        let recorder = ScenarioRecorder(machine: machine, configuration: configuration, mmu: .native, header: [], recording: false)
        let kernel = GuestKernel(layout: GuestPagingLayout(mode: .level4), recorder: recorder, seed: 1)
        try kernel.boot()
        let process = try kernel.spawn()
        do {
            for _ in 0..<20 { try kernel.run(process, accesses: 10, newPages: 2) }
            Issue.record("the kernel did not notice a read reaching the wrong frame")
        } catch {
            #expect(error.kind == .mismatch)
            #expect(error.description.contains("its page tables map it to"), "\(error)")
        }
    }

    @Test func theSameKernelOnAnHonestMachineRunsToTheEnd() throws {
        let configuration = MachineConfiguration(memorySize: 64 << 20)
        let machine = MisdirectingMachine(configuration: configuration, misdirect: .max)
        let recorder = ScenarioRecorder(machine: machine, configuration: configuration, mmu: .native, header: [], recording: false)
        let kernel = GuestKernel(layout: GuestPagingLayout(mode: .level4), recorder: recorder, seed: 1)
        try kernel.boot()
        let process = try kernel.spawn()
        for _ in 0..<20 { try kernel.run(process, accesses: 10, newPages: 2) }
        #expect(machine.userReads > 3)
    }
}
