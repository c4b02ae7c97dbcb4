import KVMCatalogue
import RealKVM
import ScenarioLanguage
import ScenarioRuntime
import ShadowMMU
import X86Paging

/// Runs scenarios inside real VMs on the host's /dev/kvm and compares every
/// observable result three ways: the architecture, the model under the
/// configuration that corresponds to the host, and real KVM
/// (`shadowmmu conform`).
///
/// How a line is classified (``LineClass``): each witness — KVM, the model,
/// and the model with each deviation fixed — runs beside its own
/// architectural oracle, which accepts exactly the outcomes the architecture
/// allows and follows the witness's choice. Where KVM and the model give the
/// same result, the line is `agree` if the architecture allows it, else
/// `deviation NAME` when the model with that fix is architectural there,
/// else `unexplained`. Where they differ, it is `allowed` if the
/// architecture allows both, `host-flavour NAME` when the host's flavour
/// explains it, else `model-differs`. After a witness's first departure
/// from the architecture its oracle can no longer follow it; later lines
/// are compared between KVM and the model only (a note says so).
public struct ConformanceRunner {
    public let host: KVMHost

    public init(host: KVMHost) { self.host = host }

    /// The configuration of the model that corresponds to this host's KVM:
    /// shadow paging when KVM runs without TDP (as under PVM), else TDP in
    /// the vendor's format.
    public var modelConfiguration: MMUConfiguration {
        switch (host.tdpEnabled, host.flavour) {
        case (true?, .hardware(.svm)): .tdp(format: .npt, levels: 4, host: .bits64)
        case (true?, _): .tdp(format: .ept, levels: 4, host: .bits64)
        default: .shadow(host: .bits64)
        }
    }

    /// The region of guest memory and linear addresses the runner owns: a
    /// scenario that touches it is refused (exit 2) with its line.
    public static func checkRunnerRegion(_ scenario: Scenario) throws(ScenarioError) {
        func refuse(_ command: Command, _ message: String) -> ScenarioError {
            ScenarioError(file: scenario.fileName, line: command.line, column: 1, message: message)
        }
        var slots: Set<UInt64> = []
        for command in scenario.commands {
            if case .writeRegister(.cr3, let value) = command.action {
                slots.insert((value & 0x000f_ffff_ffff_f000) + RunnerLayout.topLevelEntryOffset)
            }
        }
        for command in scenario.commands {
            switch command.action {
            case .poke(let address, _, let width), .store(let address, _, let width):
                if let slot = slots.first(where: { address < $0 + 8 && $0 < address + UInt64(width) }) {
                    throw refuse(command, "expected no write to \(slot.hex), PML4 slot \(RunnerLayout.topLevelSlot) of a table the scenario loads into CR3: under 'conform' the runner maps itself there (docs/conform.md), found '\(command.action.name) \(address.hex)'")
                }
                if address >= RunnerLayout.guestPhysicalBase, address < RunnerLayout.guestPhysicalBase + RunnerLayout.size {
                    throw refuse(command, "expected no write to the runner's guest-physical region [\(RunnerLayout.guestPhysicalBase.hex), \((RunnerLayout.guestPhysicalBase + RunnerLayout.size).hex)), found '\(command.action.name) \(address.hex)'")
                }
            case .access(let access) where access.address >= RunnerLayout.virtualBase:
                throw refuse(command, "expected a linear address below \(RunnerLayout.virtualBase.hex) (the runner's own range under 'conform'), found '\(access.kind.rawValue) \(access.address.hex)'")
            case .invlpg(let address) where address >= RunnerLayout.virtualBase:
                throw refuse(command, "expected a linear address below \(RunnerLayout.virtualBase.hex) (the runner's own range under 'conform'), found 'invlpg \(address.hex)'")
            default:
                break
            }
        }
    }

    /// Why this host cannot run `scenario`, if it cannot (reported as not
    /// run, never as a pass).
    public func reasonNotRunnable(_ scenario: Scenario) -> String? {
        if scenario.commands.contains(where: { if case .enterNested = $0.action { true } else { false } }) {
            return "nested virtualization: conform runs L1 guests only"
        }
        if scenario.machine.memorySize > RunnerLayout.guestPhysicalBase {
            return "guest memory above \(RunnerLayout.guestPhysicalBase.hex), where the runner lives"
        }
        if scenario.machine.vcpuCount > RunnerLayout.maxVCPUs {
            return "more than \(RunnerLayout.maxVCPUs) vCPUs"
        }
        if scenario.machine.maxPhysicalAddressBits < RunnerLayout.minimumPhysicalAddressBits {
            return "maxphyaddr=\(scenario.machine.maxPhysicalAddressBits): the runner's region needs at least \(RunnerLayout.minimumPhysicalAddressBits) bits"
        }
        for command in scenario.commands {
            switch command.action {
            case .writeRegister(.cr4, let value) where value & CR4.la57.rawValue != 0 && !host.supportsLA57:
                return "line \(command.line): 5-level paging, and this host's KVM has no LA57"
            case .writeRegister(.cr4, let value) where value & CR4.pke.rawValue != 0:
                return "line \(command.line): protection keys (the runner gives its guests no PKU)"
            case .writeRegister(.pkru, _):
                return "line \(command.line): WRPKRU (the runner gives its guests no PKU)"
            case .access(let access) where access.implicit && (access.kind != .read || access.user):
                return "line \(command.line): an implicit \(access.user ? "user " : "")\(access.kind.rawValue) (the runner does implicit supervisor reads only)"
            default:
                break
            }
        }
        // One pass over the registers as the architecture takes them:
        // - every access must come while its vCPU is in 4-level paging (the
        //   runner enters long mode directly; the host runs 64-bit guests only);
        // - a guest store needs a running vCPU (the runner's direct map):
        //   before one runs it is a host write, which KVM's dirty log misses.
        let model = CPUModel(maxPhysicalAddressBits: scenario.machine.maxPhysicalAddressBits)
        var registers = Array(repeating: ControlRegisters(model: model), count: scenario.machine.vcpuCount)
        var vcpu = 0, logging = false, anyStarted = false
        let memory = SparseMemory(size: scenario.machine.memorySize)
        for command in scenario.commands {
            switch command.action {
            case .selectVCPU(let index): vcpu = index
            case .store where logging && !anyStarted:
                return "line \(command.line): a guest store while dirty logging is on and before any vCPU is in 4-level paging (the runner's guest stores need a running vCPU)"
            case .poke(let address, let value, let width), .store(let address, let value, let width):
                if address < memory.size { memory.store(address, width: width, value) }
            case .writeRegister(let name, let value):
                _ = registers[vcpu].write(name.controlRegister, value, memory: memory)
                anyStarted = anyStarted || registers[vcpu].mode == .level4
            case .hostDirtyLog(.start): logging = true
            case .hostDirtyLog(.stop): logging = false
            case .access, .invlpg, .flush:
                if registers[vcpu].mode != .level4 {
                    let mode = registers[vcpu].mode
                    return "line \(command.line): \(command.action.name) in \(mode == .none ? "a guest without paging" : "\(mode) paging"); the host's KVM (\(host.flavour)) runs 64-bit guests only, and the runner enters 4-level paging directly"
                }
            default:
                break
            }
        }
        return nil
    }

    /// The guest with what this host's KVM cannot do taken out, for
    /// generated guests (`fuzz --kvm`): no WRPKRU and no CR4.PKE (the runner
    /// gives its guests no PKU), no CR4.LA57 without LA57, and implicit
    /// accesses made explicit (the runner's implicit read, a descriptor load
    /// from an LDT at the address, hangs now and then under PVM's emulator). Line numbers are
    /// the original's; the result is printed (and saved) as a scenario of
    /// its own.
    public func runnableVariant(of scenario: Scenario) -> Scenario {
        var variant = scenario
        variant.commands = scenario.commands.compactMap { command in
            var command = command
            switch command.action {
            case .writeRegister(.pkru, _):
                return nil
            case .writeRegister(.cr4, let value):
                var cleared = CR4.pke.rawValue
                if !host.supportsLA57 { cleared |= CR4.la57.rawValue }
                command.action = .writeRegister(.cr4, value & ~cleared)
            case .access(var access) where access.implicit:
                access.implicit = false
                command.action = .access(access)
            default:
                break
            }
            return command
        }
        return variant
    }

    /// KVM_SET_NR_MMU_PAGES refuses fewer than 64 pages
    /// (`KVM_MIN_ALLOC_MMU_PAGES`): the cap a host can really set.
    public static let minimumShadowPageCap = 64

    /// Runs `scenario` on the three witnesses and classifies every observable line.
    public func run(_ scenario: Scenario) throws(ScenarioError) -> ScenarioConformance {
        var result = ScenarioConformance(fileName: scenario.fileName, notRun: nil, lines: [], notes: [])
        // A cap below KVM's minimum has no real counterpart: both the model
        // and KVM run with the smallest cap KVM accepts.
        var scenario = scenario
        for index in scenario.commands.indices {
            if case .hostMaxShadowPages(let count) = scenario.commands[index].action, count < Self.minimumShadowPageCap {
                scenario.commands[index].action = .hostMaxShadowPages(Self.minimumShadowPageCap)
                result.notes.append("line \(scenario.commands[index].line): host max-shadow-pages \(count) runs as \(Self.minimumShadowPageCap), the fewest KVM_SET_NR_MMU_PAGES accepts (on the model too)")
            }
        }
        if let reason = reasonNotRunnable(scenario) {
            result.notRun = reason
            return result
        }
        try Self.checkRunnerRegion(scenario)
        let bits = scenario.machine.maxPhysicalAddressBits
        let kvmBits = min(bits, host.physicalAddressBits)
        if kvmBits < bits {
            result.notes.append("maxphyaddr=\(bits) runs on KVM as \(kvmBits), the host's; lines whose reference differs between the two are host-flavour maxphyaddr")
        }

        // The witnesses.
        var modelScenario = scenario
        modelScenario.mmu = modelConfiguration
        let architecture = CPUModel(maxPhysicalAddressBits: bits)
        func modelTrack(_ fixes: Set<Deviation>) throws(ScenarioError) -> Track {
            let runner = try ScenarioRunner(modelScenario, fixes: fixes, emulatedSupervisor: host.flavour == .pvm)
            return Track.run(modelScenario, on: runner.machine, model: architecture)
        }
        let model = try modelTrack([])

        let witness: KVMWitness
        do {
            witness = try KVMWitness(scenario, maxPhysicalAddressBits: kvmBits, host: host)
        } catch {
            result.notRun = "the host's KVM could not create the VM: \(error)"
            return result
        }
        var problemsByLine: [Int: [String]] = [:]
        var flavoursByLine: [Int: HostFlavour] = [:]
        var reported = 0, flavoured = 0
        let kvm = Track.run(scenario, on: witness, model: CPUModel(maxPhysicalAddressBits: kvmBits)) { _, allowed in
            witness.candidates = allowed
        } after: { line in
            if witness.problems.count > reported {
                problemsByLine[line, default: []] += witness.problems[reported...]
                reported = witness.problems.count
            }
            if witness.flavours.count > flavoured {
                flavoursByLine[line] = witness.flavours.last
                flavoured = witness.flavours.count
            }
        }
        for (line, problems) in problemsByLine.sorted(by: { $0.key < $1.key }) {
            result.notes += problems.map { "line \(line): KVM: \($0)" }
        }

        // The model with each deviation fixed, to name a departure: needed
        // only when a witness departs from the architecture at all.
        var fixed: [Deviation: Track] = [:]
        if kvm.departure != nil || model.departure != nil {
            for deviation in Deviation.allCases { fixed[deviation] = try modelTrack([deviation]) }
        }

        // Where the reference itself depends on the host's width.
        let reference = Self.referenceEvents(scenario, bits: bits)
        let widthSensitive = kvmBits < bits ? Self.linesDiffering(reference, Self.referenceEvents(scenario, bits: kvmBits)) : []
        let departure = [("KVM", kvm.departure), ("the model", model.departure)].compactMap { name, departure in departure.map { (name, $0) } }
        for (name, departure) in departure {
            result.notes.append("\(name) departs from the architecture at line \(departure.line) (\(departure.message)); later lines are compared between KVM and the model only")
        }

        // A host flavour that changed KVM's result changes its state too:
        // differences after it follow from it.
        var consequenceOf: HostFlavour?
        // CR4.SMAP and EFLAGS.AC per vCPU as the guest set them (for pvm-smap-on-mmio-fetch).
        var smap = Array(repeating: false, count: scenario.machine.vcpuCount)
        var alignmentCheck = smap
        var vcpu = 0
        for command in scenario.commands {
            let line = command.line
            switch command.action {
            case .selectVCPU(let index): vcpu = index
            case .writeRegister(.cr4, let value) where model.events[line] == .registerWrite(.cr4, accepted: true):
                smap[vcpu] = value & CR4.smap.rawValue != 0
            case .setAlignmentCheck(let value): alignmentCheck[vcpu] = value
            default: break
            }
            guard let modelEvent = model.events[line] else { continue }
            let kvmEvent = kvm.events[line]
            let same = kvmEvent.map { Self.same($0, modelEvent) } ?? false
            let kvmAllowed = kvm.allowed(at: line), modelAllowed = model.allowed(at: line)
            let lineClass: LineClass
            if problemsByLine[line] != nil {
                lineClass = .unexplained
            } else if !same, host.flavour == .pvm, smap[vcpu], !alignmentCheck[vcpu], kvmAllowed != true,
                      case .access(let access) = command.action, access.kind == .fetch, !access.user,
                      case .access(_, .pageFault(let code))? = kvmEvent, code & ~0x10 == 0x1,  // P, and I/D when NXE or SMEP
                      case .access(_, .ok(let gpa, _))? = reference[line], gpa >= scenario.machine.memorySize {
                lineClass = .hostFlavour(.pvmSMAPOnMMIOFetch)
            } else if let flavour = flavoursByLine[line], !same {
                lineClass = .hostFlavour(flavour)
            } else if widthSensitive.contains(line) {
                lineClass = .hostFlavour(.maxPhysicalAddress)
            } else if same {
                if kvmAllowed == false || modelAllowed == false {
                    lineClass = Self.explainingDeviation(fixed, line: line).map(LineClass.deviation) ?? .unexplained
                } else {
                    lineClass = .agree
                }
            } else if kvmAllowed == true, modelAllowed == true {
                lineClass = .allowed
            } else if kvmAllowed != false, modelAllowed != false,
                      case .dirtyLog(let kvmFrames)? = kvmEvent, case .dirtyLog(let modelFrames) = modelEvent,
                      Set(kvmFrames).isSubset(of: modelFrames) || Set(modelFrames).isSubset(of: kvmFrames) {
                // After a departure the oracle no longer knows what was written;
                // a log may list frames that were not (the model's accessed/dirty
                // false positives): one listing more than the other is allowed.
                lineClass = .allowed
            } else if let flavour = consequenceOf, kvmAllowed == nil {
                lineClass = .hostFlavour(flavour)
            } else if kvmAllowed == true, modelAllowed == false, Self.isSupervisorAccess(command),
                      host.flavour == .pvm, Self.explainingDeviation(fixed, line: line) != nil {
                lineClass = .hostFlavour(.pvmEmulatedCPL0)
            } else {
                lineClass = .modelDiffers
            }
            if consequenceOf == nil, case .hostFlavour(let flavour) = lineClass, kvm.departure?.line == line {
                consequenceOf = flavour
                result.notes.append("line \(line): host-flavour \(flavour.rawValue) changed KVM's state; later differences are classed as its consequences")
            }
            result.lines.append(.init(
                line: line, command: command.action.scenarioText, lineClass: lineClass,
                architecture: reference[line].map(Self.summary) ?? "-", model: Self.summary(modelEvent),
                kvm: problemsByLine[line]?.joined(separator: "; ") ?? kvmEvent.map(Self.summary) ?? "not run"))
        }
        return result
    }

    /// The deviation whose fix makes the model architectural at `line`.
    static func explainingDeviation(_ fixed: [Deviation: Track], line: Int) -> Deviation? {
        Deviation.allCases.first { fixed[$0]?.allowed(at: line) == true }
    }

    static func isSupervisorAccess(_ command: Command) -> Bool {
        if case .access(let access) = command.action { return !access.user }
        return false
    }

    /// KVM cannot show the guest-physical address of an access: two results
    /// are the same when their kind, error code and the value read agree.
    static func same(_ a: Observation.Event, _ b: Observation.Event) -> Bool {
        switch (a, b) {
        case (.access(_, .ok(_, let x)), .access(_, .ok(_, let y))): x == y
        default: summary(a) == summary(b)
        }
    }

    static func summary(_ event: Observation.Event) -> String {
        switch event {
        case .access(_, let outcome):
            switch outcome {
            case .ok(_, let value?): "ok value=\(value.hex)"
            case .ok: "ok"
            default: outcome.summary
            }
        case .peek(_, let value): "value=\(value.hex)"
        case .registerWrite(_, let accepted): accepted ? "accepted" : "gp"
        case .dirtyLog(let gfns): "dirty \(gfns.count) frames"
        }
    }

    /// The reference's events (`mmu native`) at `bits` of MAXPHYADDR.
    static func referenceEvents(_ scenario: Scenario, bits: Int) -> [Int: Observation.Event] {
        var native = scenario
        native.mmu = .native
        native.machine.maxPhysicalAddressBits = bits
        guard let runner = try? ScenarioRunner(native) else { return [:] }
        var events: [Int: Observation.Event] = [:]
        runner.run(observe: { events[$0.line] = $0.event }, expectationFailed: { _ in })
        return events
    }

    /// Lines whose reference result differs between two MAXPHYADDR widths.
    static func linesDiffering(_ wide: [Int: Observation.Event], _ narrow: [Int: Observation.Event]) -> Set<Int> {
        Set(wide.keys.filter { line in
            guard let x = wide[line], let y = narrow[line] else { return true }
            return summary(x) != summary(y)
        })
    }
}
