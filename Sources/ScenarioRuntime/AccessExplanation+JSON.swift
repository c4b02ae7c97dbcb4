import X86Paging
import ScenarioLanguage

extension AccessExplanation {
    /// The explanation as one JSON object, for tools: the access, the registers,
    /// each stage with every entry read, and the result in the contract's form.
    public func json(line: Int) -> JSONValue {
        return .object([
            ("line", .number(line)),
            ("vcpu", .number(vcpu)),
            ("access", .object([
                ("op", .string(command.kind.rawValue)), ("gva", .hex(command.address)), ("width", .number(command.width)),
                ("user", .bool(command.user)), ("implicit", .bool(command.implicit)),
            ])),
            ("mode", .string(registers.mode.description)),
            ("registers", .object([
                ("cr0", .hex(registers.cr0.rawValue)), ("cr3", .hex(registers.cr3)), ("cr4", .hex(registers.cr4.rawValue)),
                ("efer", .hex(registers.efer.rawValue)), ("pkru", .hex(UInt64(registers.pkru.rawValue))),
                ("rflags_ac", .bool(registers.alignmentCheck)),
                ("pdptes", .array((0..<4).map { .hex(registers.pdptes[$0]) })),
            ])),
            ("stages", .array(stages.map { Self.json(for: $0, registers: registers, command: command) })),
            ("result", Self.resultJSON(outcome)),
        ])
    }

    static func resultJSON(_ outcome: AccessOutcome) -> JSONValue {
        switch outcome {
        case .ok(let gpa, let value):
            .object([("result", .string("ok")), ("gpa", .hex(gpa))] + (value.map { [("value", JSONValue.hex($0))] } ?? []))
        case .pageFault(let code):
            .object([("result", .string("fault")), ("vector", .number(14)), ("error_code", .hex(code))])
        case .generalProtection:
            .object([("result", .string("gp"))])
        case .nestedFault(let fault):
            .object([("result", .string(fault.result.rawValue)), ("gpa", .hex(fault.guestPhysicalAddress))]
                + (fault.information.flatMap { info in fault.result.informationField.map { [($0, JSONValue.hex(info))] } } ?? []))
        }
    }

    static func json(for stage: Stage, registers: ControlRegisters, command: AccessCommand) -> JSONValue {
        func tlbEntry(_ entry: TLBEntry) -> JSONValue {
            .object([
                ("page", .hex(entry.pageBase)), ("page_shift", .number(Int(entry.pageShift))),
                ("user", .bool(entry.rights.user)), ("writable", .bool(entry.rights.writable)),
                ("execute_disable", .bool(entry.rights.executeDisable)), ("global", .bool(entry.global)),
                ("dirty", .bool(entry.dirty)), ("protection_key", .number(Int(entry.protectionKey))),
            ])
        }
        switch stage {
        case .tlbHit(let entry):
            return .object([("stage", .string("tlb")), ("result", .string("hit")), ("entry", tlbEntry(entry))])
        case .tlbEntryDropped(let entry, let reason):
            return .object([("stage", .string("tlb")), ("result", .string("dropped")), ("entry", tlbEntry(entry)), ("reason", .string(reason))])
        case .tlbMiss:
            return .object([("stage", .string("tlb")), ("result", .string("miss"))])
        case .note(let text):
            return .object([("stage", .string("note")), ("text", .string(text))])
        case .hypervisor(let step):
            return .object([("stage", .string("hypervisor")), ("action", .string(step.action))] + step.fields + [("text", .string(step.text))])
        case .walk(let title, let mode, let trace):
            return walkJSON(title: title, mode: mode, trace: trace, address: registers.linearAddress(command.address))
        case .nestedWalk(let title, let mode, let ept, let address, let access, let trace):
            var object = walkJSON(title: title, mode: mode, trace: trace, address: address)
            if case .object(var fields) = object {
                fields.insert(("l2_physical_address", .hex(address)), at: 2)
                fields.insert(("format", .string(ept ? "ept" : "npt")), at: 3)
                fields.insert(("access", .string("\(access)")), at: 4)
                object = .object(fields)
            }
            return object
        }
    }

    static func walkJSON(title: String, mode: PagingMode, trace: WalkTrace, address linear: UInt64) -> JSONValue {
        do {
            let steps: [JSONValue] = trace.steps.map { step in
                var fields: [(String, JSONValue)] = [
                    ("level", .number(step.level)), ("name", .string(mode.entryName(level: step.level))),
                    ("index", .number(mode.index(of: linear, level: step.level).0)),
                ]
                switch step.source {
                case .memory(let address): fields.append(("address", .hex(address)))
                case .pdpteRegister(let index): fields.append(("pdpte_register", .number(index)))
                }
                fields.append(("entry", .hex(step.entry)))
                switch step.decision {
                case .nextTable(let next): fields += [("decision", .string("next-table")), ("next", .hex(next))]
                case .page(let base, let shift): fields += [("decision", .string("page")), ("page", .hex(base)), ("page_shift", .number(shift))]
                case .notPresent: fields.append(("decision", .string("not-present")))
                case .reservedBits(let bits): fields += [("decision", .string("reserved")), ("reserved_bits", .hex(bits))]
                case .outsideMemory: fields.append(("decision", .string("outside-memory")))
                }
                return .object(fields)
            }
            var fields: [(String, JSONValue)] = [
                ("stage", .string("walk")), ("title", .string(title)), ("mode", .string(mode.description)),
                ("steps", .array(steps)), ("memory_references", .number(trace.memoryReferences.count)),
            ]
            if let rights = trace.rights {
                fields.append(("rights", .object([
                    ("user", .bool(rights.user)), ("writable", .bool(rights.writable)), ("execute_disable", .bool(rights.executeDisable)),
                ])))
                fields.append(("violations", .string(trace.violations?.description ?? "none")))
            }
            fields.append(("accessed_dirty_updates", .array(trace.updates.map {
                .object([("address", .hex($0.address)), ("old", .hex($0.old)), ("new", .hex($0.new))])
            })))
            return .object(fields)
        }
    }
}
