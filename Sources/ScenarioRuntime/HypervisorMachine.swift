import KVMCatalogue
import MMUEncoding
import ShadowMMU
import VirtualMachine
import X86Paging
import ScenarioLanguage

/// `mmu shadow` and `mmu tdp`: the guest runs on a `VirtualMachine` whose
/// hardware walks the tables KVM's MMU builds — shadow tables made from the
/// guest's own, or a TDP direct map walked in two dimensions with the guest's.
public final class HypervisorMachine: GuestMachine, HypervisorView {
    public let vm: VirtualMachine
    /// When set, the MMU's audit runs after every command and its findings
    /// collect in `auditFailures` (the checker and the tests turn this on).
    public var auditLevel: AuditLevel?
    public private(set) var auditFailures: [String] = []

    public init(configuration: MachineConfiguration, host: HostKind, mode: MMUMode = .shadow, rootDesign: RootDesign = .local) {
        vm = VirtualMachine(
            memorySize: configuration.memorySize, maxPhysicalAddressBits: configuration.maxPhysicalAddressBits,
            vcpuCount: configuration.vcpuCount, hostPaging: host == .pae32 ? .pae32 : .bits64, mode: mode, rootDesign: rootDesign)
    }

    /// The MMU's root design an `mmu` line asks for (`roots=`).
    public static func rootDesign(for configuration: MMUConfiguration) -> RootDesign {
        switch configuration.roots {
        case .local: .local
        case .localEager: .localEager
        case .special: .special
        }
    }

    /// The MMU mode an `mmu` line asks for (nil for `mmu native`).
    public static func mode(for configuration: MMUConfiguration) -> MMUMode? {
        switch configuration {
        case .native: nil
        case .shadow: .shadow
        case .tdp(let format, let levels, let host, _): .tdp(format: format == .ept ? .ept : .x86, levels: host == .pae32 ? 3 : levels)
        }
    }

    func audited<T>(_ point: @autoclosure () -> String, _ body: () -> T) -> T {
        let result = body()
        if let auditLevel {
            auditFailures += vm.mmu.audit(level: auditLevel, at: point())
            auditFailures += (vm.violations + vm.auditHardwareTLBs()).map { "\(point()): \($0)" }
        }
        return result
    }

    static func outcome(_ result: GuestAccessResult) -> AccessOutcome {
        switch result {
        case .completed(let gpa, let value): .ok(gpa: gpa, value: value)
        case .pageFault(let code): .pageFault(errorCode: code.rawValue)
        case .generalProtection: .generalProtection
        case .nestedFault(let fault): .nestedFault(fault)
        }
    }

    public func enterNested(vcpu: Int, _ entry: NestedEntry) {
        audited("nested") {
            let bits = vm.vcpus[vcpu].registers.model.maxPhysicalAddressBits
            guard let paging = entry.paging(maxPhysicalAddressBits: bits, previous: vm.vcpus[vcpu].l1Paging) else { return }
            vm.enterNested(vcpu: vcpu, paging: paging, flush: entry.flush)
        }
    }

    public func access(vcpu: Int, _ command: AccessCommand) -> AccessOutcome {
        audited("\(command.kind.rawValue) \(command.address.hex)") {
            Self.outcome(vm.access(vcpu: vcpu, command.address, command.memoryAccess, width: command.width, value: command.value))
        }
    }

    public func explainAccess(vcpu: Int, _ command: AccessCommand) -> AccessExplanation {
        let registers = vm.vcpus[vcpu].registers
        let (result, events) = vm.tracedAccess(vcpu: vcpu, command.address, command.memoryAccess, width: command.width, value: command.value)
        var stages: [AccessExplanation.Stage] = []
        for event in events {
            switch event {
            case .entry(let frame, let levels, let local):
                stages.append(.hypervisor(.init(
                    "vm-entry", [("root_frame", .hex(frame)), ("levels", .number(levels)), ("local", .bool(local))],
                    text: "VM entry: the hardware uses the hypervisor's \(levels)-level root at host frame \((frame).hex)\(local ? " (a local shadow page of this vCPU)" : "")")))
            case .tlbHit(let hpa):
                stages.append(.hypervisor(.init(
                    "hardware-tlb-hit", [("host_physical_address", .hex(hpa))], text: "hardware TLB hit: host physical address \(hpa.hex)")))
            case .walk(let trace, let mode):
                stages.append(.walk(title: "shadow tables (the hardware's walk, host physical addresses)", mode: mode, trace: trace))
            case .exit(let code, let outcome, let steps):
                stages.append(.hypervisor(.init(
                    "exit", [("reason", .string("page-fault")), ("error_code", .hex(UInt64(code.rawValue)))],
                    text: "page fault \(code) on the shadow tables: exit to the hypervisor")))
                for step in steps { stages.append(Self.stage(for: step)) }
                stages.append(Self.outcomeStage(outcome))
            case .twoDimensionalWalk(let guestTrace, let mode, let secondStage, let references):
                stages += Self.twoDimensionalStages(guestTrace, mode: mode, secondStage: secondStage, references: references, l2: vm.vcpus[vcpu].l1Paging != nil)
            case .nestedExit(let fault, let outcome, let steps):
                let info = fault.information.map { " with \(fault.result.informationName) \($0.hex)" } ?? ""
                stages.append(.hypervisor(.init(
                    "exit",
                    [("reason", .string(fault.result.rawValue)), ("guest_physical_address", .hex(fault.guestPhysicalAddress))]
                        + (fault.information.map { [("information", JSONValue.hex($0))] } ?? []),
                    text: "second-stage fault (\(fault.result)\(info)) at guest-physical \(fault.guestPhysicalAddress.hex): exit to the hypervisor")))
                for step in steps { stages.append(Self.stage(for: step)) }
                stages.append(Self.outcomeStage(outcome))
            }
        }
        return AccessExplanation(vcpu: vcpu, command: command, registers: registers, stages: stages, outcome: Self.outcome(result))
    }

    /// A two-dimensional walk: the guest's walk, then each second-stage
    /// translation with what it was for — reading a guest entry, setting a
    /// guest entry's accessed/dirty flags (after the reads, in the walk's
    /// order), or the final address. When the translation of a guest entry's
    /// own address faults, that entry was never read: the guest walk is shown
    /// without it, and a step says where the walk stopped.
    static func twoDimensionalStages(
        _ guestTrace: WalkTrace, mode: PagingMode, secondStage: [SecondStageTranslation], references: Int, l2: Bool
    ) -> [AccessExplanation.Stage] {
        var stages: [AccessExplanation.Stage] = []
        let second = l2 ? "L0's shadow of L1's nested tables" : "the TDP tables"
        stages.append(.hypervisor(.init(
            "two-dimensional-walk", [("references", .number(references)), ("l2", .bool(l2))],
            text: "two-dimensional walk (\(references) memory reference\(references == 1 ? "" : "s")): the \(l2 ? "L2 guest's" : "guest's") own tables, each guest-physical address translated through \(second)")))
        let entryReads = guestTrace.steps.filter { if case .memory = $0.source { true } else { false } }.count
        var shown = guestTrace
        var unread: (level: Int, address: UInt64)?
        if let last = secondStage.last, last.pagingStructure, case .fault = last.result,
           secondStage.filter(\.pagingStructure).count == entryReads, let step = shown.steps.last, case .memory(let address) = step.source {
            // The walk stopped translating this entry's address: the entry itself was never read.
            unread = (step.level, address)
            shown.steps.removeLast()
        }
        if mode != .none, !shown.steps.isEmpty {
            stages.append(.walk(title: "\(l2 ? "L2's" : "guest's") tables (the hardware's walk; guest-physical addresses)", mode: mode, trace: shown))
        }
        var entriesTranslated = 0
        for step in secondStage {
            let purpose: String, what: String
            if !step.pagingStructure {
                (purpose, what) = ("final-address", "the final address")
            } else if entriesTranslated < entryReads {
                entriesTranslated += 1
                (purpose, what) = ("read-entry", "to read a guest paging-structure entry")
            } else {
                (purpose, what) = ("set-accessed-dirty", "to set accessed/dirty flags in a guest paging-structure entry, a second translation of its address")
            }
            var fields: [(String, JSONValue)] = [
                ("guest_physical_address", .hex(step.guestPhysicalAddress)), ("paging_structure", .bool(step.pagingStructure)),
                ("purpose", .string(purpose)), ("references", .number(step.references)),
            ]
            let outcome: String
            switch step.result {
            case .translated(let hpa, let shift, let writable):
                outcome = "host \(hpa.hex) (\(shift == 12 ? "4 KiB" : shift == 21 ? "2 MiB" : "1 GiB") page\(writable ? "" : ", read-only"))"
                fields += [("result", .string("translated")), ("host_physical_address", .hex(hpa)), ("page_shift", .number(Int(shift))), ("writable", .bool(writable))]
            case .fault(let fault):
                outcome = "fault: \(fault.result)" + (fault.information.map { " \($0.hex)" } ?? "")
                fields += [("result", .string(fault.result.rawValue))] + (fault.information.map { [("information", JSONValue.hex($0))] } ?? [])
            }
            stages.append(.hypervisor(.init(
                "second-stage", fields,
                text: "  second stage: guest-physical \(step.guestPhysicalAddress.hex) (\(what)) → \(outcome); \(step.references) reference\(step.references == 1 ? "" : "s")")))
        }
        if let unread {
            stages.append(.hypervisor(.init(
                "walk-stopped", [("level", .number(unread.level)), ("entry_address", .hex(unread.address))],
                text: "the walk stopped before reading the guest's level-\(unread.level) entry at guest-physical \(unread.address.hex): translating that address faulted in the second stage, so the entry was never read (and no accessed/dirty flag was written)")))
        }
        return stages
    }

    static func stage(for event: MMUEvent) -> AccessExplanation.Stage {
        func page(_ level: Int, _ gfn: UInt64, _ role: PageRole, _ local: Bool) -> String {
            local ? "local level-\(level) page (this vCPU's own, not in the hash; \(role))"
                : "level-\(level) shadow page for gfn \(gfn.hex) (\(role))"
        }
        func pageFields(_ level: Int, _ gfn: UInt64, _ role: PageRole, _ local: Bool) -> [(String, JSONValue)] {
            [("level", .number(level)), ("gfn", .hex(gfn)), ("role", .string("\(role)")), ("local", .bool(local))]
        }
        switch event {
        case .guestWalk(let trace, let mode):
            return .walk(title: "guest's own tables (the hypervisor's walk, guest physical addresses)", mode: mode, trace: trace)
        case .nestedWalk(let trace, let paging, let address, let access):
            let what = access.pagingStructure ? "an access to L2's page tables" : "L2's final address"
            switch paging {
            case .npt(let l1):
                // NPT: every access is a user access, of the kind the second stage judges it.
                return .nestedWalk(
                    title: "L1's nested page tables (the hypervisor's walk of nCR3's tables for \(what), L1-physical addresses)",
                    mode: l1.mode, ept: false, address: address, access: MemoryAccess(paging.judgedKind(access), .user), trace: trace)
            case .ept(let eptp, _):
                return .nestedWalk(
                    title: "L1's EPT tables (the hypervisor's walk for \(what), L1-physical addresses)",
                    mode: eptp.levels == 5 ? .level5 : .level4, ept: true, address: address, access: MemoryAccess(access.kind, .user), trace: trace)
            }
        case .pageFound(let level, let gfn, let role, let local):
            return .hypervisor(.init("page-found", pageFields(level, gfn, role, local), text: "found the \(page(level, gfn, role, local)) in the page hash"))
        case .pageCreated(let level, let gfn, let role, let local):
            return .hypervisor(.init("page-created", pageFields(level, gfn, role, local), text: "created a \(page(level, gfn, role, local))"))
        case .spteWritten(let level, let index, let address, let old, let new):
            return .hypervisor(.init(
                "spte-written",
                [("level", .number(level)), ("index", .number(index)), ("address", .hex(address)), ("old", .hex(old)), ("new", .hex(new))],
                text: "wrote entry \(index) of the level-\(level) shadow table (host \(address.hex)): \(old.hex) → \(new.hex) [\(SPTE(rawValue: new))]"))
        case .unsynced(let gfn):
            return .hypervisor(.init(
                "unsync", [("gfn", .hex(gfn))],
                text: "let the guest page table at gfn \(gfn.hex) go unsync: the guest may now write it without trapping, until it flushes"))
        case .writeProtected(let gfn):
            return .hypervisor(.init(
                "write-protect", [("gfn", .hex(gfn))],
                text: "kept the mapping read-only: gfn \(gfn.hex) holds a guest page table the hypervisor must see writes to"))
        case .note(let text):
            return .hypervisor(.init("decision", [], text: text))
        }
    }

    /// The exit's end: what the hypervisor decided, as a step.
    static func outcomeStage(_ outcome: FaultOutcome) -> AccessExplanation.Stage {
        var fields: [(String, JSONValue)]
        switch outcome {
        case .fixed: fields = [("outcome", .string("fixed"))]
        case .spurious: fields = [("outcome", .string("spurious"))]
        case .injectPageFault(let code): fields = [("outcome", .string("inject-page-fault")), ("error_code", .hex(UInt64(code.rawValue)))]
        case .emulate(let gpa, let mmio): fields = [("outcome", .string(mmio ? "emulate-mmio" : "emulate-page-table-write")), ("gpa", .hex(gpa))]
        case .reflectNestedFault(let fault):
            fields = [("outcome", .string("reflect-to-l1")), ("result", .string(fault.result.rawValue)), ("gpa", .hex(fault.guestPhysicalAddress))]
        case .kvmRunFails: fields = [("outcome", .string("kvm-run-fails"))]
        }
        return .hypervisor(.init("outcome", fields, text: "the hypervisor \(describe(outcome))"))
    }

    static func describe(_ outcome: FaultOutcome) -> String {
        switch outcome {
        case .fixed: "is done; the vCPU re-enters and retries"
        case .spurious: "found nothing to fix; the vCPU re-enters"
        case .injectPageFault(let code): "walked the guest's tables, found the guest's own fault, and injects #PF \(code)"
        case .emulate(let gpa, let mmio):
            mmio ? "emulates the access: guest physical \(gpa.hex) is MMIO (no memslot)"
                : "emulates the write: guest physical \(gpa.hex) holds a guest page table it write-protects"
        case .reflectNestedFault(let fault):
            "walked L1's nested tables, found L1's own fault, and reflects it to L1 (\(fault.result) at L2-physical \(fault.guestPhysicalAddress.hex))"
        case .kvmRunFails: "cannot start its walk (the special root's PAE entry is empty): KVM_RUN fails with EFAULT"
        }
    }

    public func writeRegister(vcpu: Int, _ register: RegisterName, _ value: UInt64) -> Bool {
        audited("\(register.rawValue) \(value.hex)") { vm.writeRegister(vcpu: vcpu, register.controlRegister, value) }
    }

    public func setAlignmentCheck(vcpu: Int, _ value: Bool) { vm.setAlignmentCheck(vcpu: vcpu, value) }

    public func invalidatePage(vcpu: Int, _ address: UInt64) {
        audited("invlpg \(address.hex)") { vm.invalidatePage(vcpu: vcpu, address) }
    }

    public func flush(vcpu: Int) { audited("flush") { vm.flush(vcpu: vcpu) } }
    public func poke(_ address: UInt64, width: Int, _ value: UInt64) { vm.poke(address, width: width, value) }
    public func store(_ address: UInt64, width: Int, _ value: UInt64) {
        audited("store \(address.hex)") { vm.store(address, width: width, value) }
    }
    public func peek(_ address: UInt64, width: Int) -> UInt64 { vm.peek(address, width: width) }

    public func zapAll() { audited("host zap-all") { vm.mmu.zapAllFast() } }
    public func invalidate(_ address: UInt64, size: UInt64) {
        audited("host invalidate") { vm.mmu.invalidateRange(address, size: size) }
    }
    public func setMaxShadowPages(_ count: Int) { audited("host max-shadow-pages") { vm.mmu.setMaxPages(count) } }
    public func startDirtyLog() { vm.mmu.startDirtyLogging() }
    public func stopDirtyLog() { vm.mmu.stopDirtyLogging() }
    public func readDirtyLog() -> [UInt64] { vm.mmu.harvestDirtyLog() }

    public func registers(vcpu: Int) -> ControlRegisters { vm.vcpus[vcpu].registers }

    public var statistics: MachineStatistics {
        let counters = vm.counters
        let hardware: [(Counter, Int)] = [
            (.accesses, counters.accesses),
            (.guestPageFaults, counters.guestPageFaults),
            (.guestGPFaults, counters.guestGeneralProtectionFaults),
            (.rejectedRegisterWrites, counters.rejectedRegisterWrites),
            (.stores, counters.stores),
            (.vmEntries, counters.vmEntries),
            (.hardwareWalks, counters.hardwareWalks),
            (.hardwareTLBHits, counters.hardwareTLBHits),
        ]
        let twoDimensional: [(Counter, Int)] = vm.mmu.mode.isTDP ? [
            (.walkReferences, counters.walkReferences),
            (.referencesPerWalkX100, counters.hardwareWalks == 0 ? 0 : counters.walkReferences * 100 / counters.hardwareWalks),
        ] : []
        let nested: [(Counter, Int)] = vm.vcpus.contains { $0.l1Paging != nil } ? [
            (.nestedFaultsToL1, counters.nestedFaultsToL1),
            (.nestedEmulations, counters.nestedEmulations),
        ] : []
        let memory: [(Counter, Int)] = [
            (.shadowPages, vm.mmu.usedPages),
            (.dirtyLogFalsePositives, vm.memory.falsePositives),
            (.hostTableFrames, vm.host.tableFramesInUse),
        ]
        return MachineStatistics(hardware + twoDimensional + nested + vm.mmu.statistics.counters + memory)
    }

    /// The root the vCPU's hardware uses now: L0's shadow of L1's tables while
    /// it runs L2, else the root of its own MMU context (nil before the first entry).
    public var hypervisor: (any HypervisorView)? { self }
    public var mmu: ShadowMMU { vm.mmu }
    public func l1Paging(vcpu: Int) -> NestedPaging? { vm.vcpus[vcpu].l1Paging }

    public func configure(regressions: Set<Regression>, fixes: Set<Deviation>, emulatedSupervisor: Bool) {
        vm.mmu.regressions = regressions
        vm.mmu.fixes = fixes
        vm.emulatesSupervisorAccesses = emulatedSupervisor
    }

    public func currentRoot(vcpu: Int) -> ShadowTableDump? {
        vm.vcpus[vcpu].l1Paging != nil ? vm.mmu.dumpNestedRoot(vcpu: vcpu) : vm.mmu.dumpRoot(vcpu: vcpu)
    }

    public func shadowRoot(vcpu: Int) -> JSONValue {
        guard let root = currentRoot(vcpu: vcpu) else { return .null }
        return Self.json(root, format: vm.mmu.spteFormat)
    }

    static func json(_ table: ShadowTableDump, format: SPTEFormat) -> JSONValue {
        let role = table.role
        var fields: [(String, JSONValue)] = [
            ("level", .number(table.level)), ("local", .bool(table.local)), ("direct", .bool(table.direct)),
            ("gfn", .hex(table.gfn)), ("quadrant", .number(table.quadrant)),
            ("role", .object([
                ("level", .number(role.level)), ("direct", .bool(role.direct)), ("quadrant", .number(role.quadrant)),
                ("access", .string(role.access.description)), ("has_4_byte_gpte", .bool(role.hasFourByteGPTE)),
                ("efer_nx", .bool(role.eferNX)), ("cr0_wp", .bool(role.cr0WP)),
                ("smep_andnot_wp", .bool(role.smepAndNotWP)), ("smap_andnot_wp", .bool(role.smapAndNotWP)), ("pke_andnot_wp", .bool(role.pkeAndNotWP)),
                ("passthrough", .bool(role.passthrough)), ("invalid", .bool(role.invalid)),
                ("guest_mode", .bool(role.guestMode)), ("ad_disabled", .bool(role.adDisabled)),
            ])),
        ]
        if table.unsync { fields.append(("unsync", .bool(true))) }
        if table.special { fields.insert(("special", .bool(true)), at: 2) }
        fields.append(("entries", .object(table.entries.map { index, entry in
            let value: JSONValue = switch entry {
            case .table(let child): json(child, format: format)
            case .leaf(let spte, let gfn, let frame):
                .object([("leaf", .bool(true)), ("gfn", .hex(gfn)), ("hpa", .hex(frame << 12)), ("spte", .hex(spte)),
                         ("flags", .string(format == .ept ? EPTEntry(rawValue: spte).description : SPTE(rawValue: spte).description))])
            case .mmio(let spte, let gfn):
                .object([("mmio", .bool(true)), ("gfn", .hex(gfn)), ("spte", .hex(spte))])
            }
            return (String(index), value)
        })))
        return .object(fields)
    }
}
