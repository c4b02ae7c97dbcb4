import X86Paging
import ScenarioLanguage

extension AccessExplanation {
    /// The explanation in words a student can follow: one paragraph per stage,
    /// each paging-structure entry with its address, value, decoded flags and
    /// what the walk decided from it, then the verdict.
    public func text(line: Int) -> String {
        var out: [String] = []
        let who = switch command.memoryAccess.mode {
        case .user: "user-mode (CPL 3)"
        case .supervisor: "supervisor-mode"
        case .supervisorImplicit: "implicit supervisor-mode"
        }
        let size = command.kind == .fetch ? "" : " of \(command.width) byte\(command.width == 1 ? "" : "s")"
        out.append("Line \(line): \(who) \(command.kind.rawValue)\(size) at linear address \(command.address.hex) on vCPU \(vcpu)")
        out.append("Paging mode: \(registers.mode.longName)")
        out.append("  CR0 = \(registers.cr0)   CR3 = \(registers.cr3.hex)   CR4 = \(registers.cr4)")
        out.append("  EFER = \(registers.efer)   PKRU = \(registers.pkru)   EFLAGS.AC = \(registers.alignmentCheck ? 1 : 0)")
        if registers.mode == .pae, registers.model.latchesPDPTEs {
            out.append("  PDPTE registers = \(registers.pdptes)")
        }
        out.append("")
        if registers.mode == .none {
            out.append("Paging is off (CR0.PG=0): the linear address, truncated to 32 bits, is the physical address.")
        } else if !registers.mode.isCanonical(command.address) {
            out.append("The address is not canonical for \(registers.mode.longName): bits 63:\(registers.mode.linearAddressBits - 1) must all equal bit \(registers.mode.linearAddressBits - 1). The CPU raises #GP(0) without walking.")
        }
        for stage in stages {
            out.append(contentsOf: Self.text(for: stage, registers: registers, command: command))
            out.append("")
        }
        out.append("Result: " + resultText)
        return out.joined(separator: "\n") + "\n"
    }

    var resultText: String {
        switch outcome {
        case .ok(let gpa, let value):
            "the access completes at guest physical address \(gpa.hex)" + (value.map { "; it reads \($0.hex)" } ?? "") + "."
        case .pageFault(let code):
            "page fault (#PF, vector 14) delivered to the guest with error code \(PageFaultErrorCode(rawValue: code)); CR2 = \(command.address.hex)."
        case .generalProtection:
            "general-protection fault (#GP(0)) delivered to the guest."
        case .nestedFault(let fault):
            "L1's nested tables deny it: \(fault.result == .npf ? "a nested page fault (#NPF)" : fault.result == .eptViolation ? "an EPT violation" : "an EPT misconfiguration") is delivered to the L1 hypervisor at L2-physical address \(fault.guestPhysicalAddress.hex)" + (fault.information.map { " (\(fault.result.informationName) \($0.hex))" } ?? "") + "."
        }
    }

    static func text(for stage: Stage, registers: ControlRegisters, command: AccessCommand) -> [String] {
        switch stage {
        case .tlbHit(let entry):
            return [
                "TLB: hit. A translation of this page is cached: page \(entry.pageBase.hex) (\(pageSizeName(Int(entry.pageShift)))), \(entry.rights)\(entry.global ? ", global" : ""), D=\(entry.dirty ? 1 : 0).",
                "  The CPU checks the cached rights against the current CR0/CR4/EFER/PKRU/AC and does not walk the tables.",
            ]
        case .tlbEntryDropped(let entry, let reason):
            return ["TLB: a translation is cached (page \(entry.pageBase.hex), \(entry.rights), D=\(entry.dirty ? 1 : 0)) but \(reason)."]
        case .tlbMiss:
            return ["TLB: miss. No translation of this page is cached, so the CPU walks the page tables."]
        case .note(let text):
            return [text]
        case .hypervisor(let step):
            return [step.text]
        case .walk(let title, let mode, let trace):
            return walkText(
                title: title, mode: mode, trace: trace, address: registers.linearAddress(command.address), addressName: "linear address",
                access: command.memoryAccess)
        case .nestedWalk(let title, let mode, let ept, let address, let access, let trace):
            return walkText(
                title: title, mode: mode, trace: trace, address: address, addressName: "L2-physical address", access: access, ept: ept)
        }
    }

    static func walkText(
        title: String, mode: PagingMode, trace: WalkTrace, address linear: UInt64, addressName: String, access: MemoryAccess,
        ept: Bool = false
    ) -> [String] {
        var out = ["Walk of the \(title) (\(ept ? "EPT, \(mode.levels) levels" : mode.longName)) for \(addressName) \(linear.hex):"]
        for (number, step) in trace.steps.enumerated() {
            let name = mode.entryName(level: step.level)
            let (index, bits) = mode.index(of: linear, level: step.level)
            let flags = ept ? EPTEntry(rawValue: step.entry).description
                : step.entrySize == 4 ? PTE32(rawValue: UInt32(truncatingIfNeeded: step.entry)).description : PTE64(rawValue: step.entry).description
            let source = switch step.source {
            case .memory(let address): "read \(step.entrySize) bytes at \(address.hex)"
            case .pdpteRegister(let register): "PDPTE register \(register) (latched at the last PDPTE load by MOV CR3 or a paging-related MOV CR0/CR4; no memory reference)"
            }
            out.append("  \(number + 1). \(ept ? "EPT " : "")\(name) index \(index) (\(addressName) bits \(bits)): \(source)")
            if case .outsideMemory = step.decision {
                out.append("     the entry's address lies outside guest memory")
            } else {
                out.append("     value \(flags)")
            }
            out.append("     → " + decisionText(step, mode: mode))
        }
        out.append("  Memory references: \(trace.memoryReferences.count)")
        if let rights = trace.rights {
            out.append("Rights along the path: \(rights) (R/W and U/S are ANDed over every level, XD is ORed).")
            let violations = trace.violations ?? []
            if violations.isEmpty {
                out.append("Permission check: a \(access) is allowed.")
            } else {
                out.append("Permission check: a \(access) breaks: \(violations).")
            }
        }
        let faults = trace.rights == nil || trace.violations?.isEmpty == false
        if !trace.updates.isEmpty {
            out.append("Accessed/dirty flags written by the CPU:")
            for update in trace.updates {
                let set = [(UInt64(1) << 5, "A"), (UInt64(1) << 6, "D")].filter { update.new & $0.0 != 0 && update.old & $0.0 == 0 }.map(\.1)
                out.append("  at \(update.address.hex): \(update.old.hex) → \(update.new.hex) (sets \(set.joined(separator: " and ")))")
            }
            if faults { out.append("  The access still faults: no other accessed or dirty flag is written for it.") }
        } else if faults {
            out.append("Accessed/dirty flags: none written (the access faults).")
        } else {
            out.append("Accessed/dirty flags: already set where needed; nothing written.")
        }
        return out
    }

    static func decisionText(_ step: WalkStep, mode: PagingMode) -> String {
        switch step.decision {
        case .nextTable(let address):
            "present, no reserved bit set: the next table (\(mode.tableName(level: step.level - 1))) is at \(address.hex)"
        case .page(let base, let shift):
            "present, no reserved bit set: it maps a \(pageSizeName(shift)) page at \(base.hex)"
        case .notPresent:
            "not present (P=0): the walk stops with a not-present page fault"
        case .reservedBits(let bits):
            "present but reserved bits \(bits.hex) are set: the walk stops with a reserved-bit page fault (P=1, RSVD=1)"
        case .outsideMemory:
            "treated as not present (KVM's behaviour for a table outside guest memory): not-present page fault"
        }
    }

    static func pageSizeName(_ shift: Int) -> String {
        switch shift {
        case 12: "4 KiB"
        case 21: "2 MiB"
        case 22: "4 MiB"
        case 30: "1 GiB"
        default: "2^\(shift)-byte"
        }
    }
}

extension PagingMode {
    /// The name for prose: "4-level paging", "paging disabled".
    public var longName: String {
        switch self {
        case .none: "paging disabled"
        case .bits32: "32-bit paging"
        case .pae: "PAE paging"
        case .level4: "4-level paging"
        case .level5: "5-level paging"
        }
    }

    /// The SDM's name of an entry at `level` in this mode.
    public func entryName(level: Int) -> String {
        switch level {
        case 5: "PML5E"
        case 4: "PML4E"
        case 3: "PDPTE"
        case 2: "PDE"
        case 1: "PTE"
        default: "entry"
        }
    }

    /// The SDM's name of the table holding entries of `level`.
    public func tableName(level: Int) -> String {
        switch level {
        case 5: "PML5 table"
        case 4: "PML4 table"
        case 3: "page-directory-pointer table"
        case 2: "page directory"
        default: "page table"
        }
    }

    /// The index into the table at `level` and the linear-address bits it comes from.
    public func index(of linear: UInt64, level: Int) -> (Int, String) {
        switch self {
        case .bits32:
            level == 2 ? (Int(linear >> 22 & 0x3ff), "31:22") : (Int(linear >> 12 & 0x3ff), "21:12")
        case .pae where level == 3:
            (Int(linear >> 30 & 3), "31:30")
        default:
            {
                let low = 12 + 9 * (level - 1)
                return (Int(linear >> UInt64(low) & 511), "\(low + 8):\(low)")
            }()
        }
    }
}
