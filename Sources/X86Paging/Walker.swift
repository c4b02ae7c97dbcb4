/// The architectural reference walker: translates a linear address exactly as
/// the SDM specifies for the current paging mode, deciding not-present,
/// reserved-bit and permission faults with their error codes, and setting
/// accessed and dirty flags in the paging structures on success.
///
/// Every other configuration of the simulator (shadow paging, TDP, nested) is
/// checked against what this walker decides for the same guest.
public enum Walker {
    /// Translates `address` for `access` under `registers`.
    ///
    /// - Parameter setAccessedDirty: write A (every entry used) and D (the
    ///   leaf, for a write) into `memory` when the access is allowed.
    @inlinable
    public static func walk<Memory: PhysicalMemory, Tracer: WalkTracer>(
        _ address: UInt64, _ access: MemoryAccess, registers: ControlRegisters, memory: Memory,
        setAccessedDirty: Bool = true, tracer: inout Tracer
    ) -> WalkResult {
        let mode = registers.mode
        guard mode.isCanonical(address) else { return .generalProtection }
        let linear = registers.linearAddress(address)
        switch mode {
        case .none:
            return .translated(Translation(
                linearAddress: linear, physicalAddress: linear, pageShift: 12, rights: .unrestricted,
                protectionKey: 0, global: false, dirty: true, leafLevel: 0))
        case .bits32:
            return walk32(linear, access, registers: registers, memory: memory, setAccessedDirty: setAccessedDirty, tracer: &tracer)
        case .pae, .level4, .level5:
            return walk64(linear, access, registers: registers, memory: memory, setAccessedDirty: setAccessedDirty, tracer: &tracer)
        }
    }

    /// Untraced convenience form.
    @inlinable
    public static func walk<Memory: PhysicalMemory>(
        _ address: UInt64, _ access: MemoryAccess, registers: ControlRegisters, memory: Memory, setAccessedDirty: Bool = true
    ) -> WalkResult {
        var tracer = NoWalkTrace()
        return walk(address, access, registers: registers, memory: memory, setAccessedDirty: setAccessedDirty, tracer: &tracer)
    }

    /// Reserved bits of a present 64-bit entry at `level` (PAE, 4- and 5-level
    /// paging; SDM Vol. 3A §4.4.2, §4.5). `large` is PS=1 at a level where PS
    /// maps a page.
    @inlinable
    public static func reservedBits(mode: PagingMode, level: Int, large: Bool, model: CPUModel, executeDisableEnabled: Bool) -> UInt64 {
        let m = model.maxPhysicalAddressBits
        var reserved = mode == .pae ? bitRange(62, m) : bitRange(51, m)
        if !executeDisableEnabled { reserved |= bit(63) }
        if level >= 4 {
            reserved |= bit(7)
            if model.vendor == .amd { reserved |= bit(8) }
        } else if large {
            reserved |= level == 3 ? bitRange(29, 13) : bitRange(20, 13)
        }
        return reserved
    }

    /// Reserved bits of a present 4 MiB PDE in 32-bit paging (PSE-36: bits
    /// 21:(M'-19) with M' = min(MAXPHYADDR, 40)).
    @inlinable
    public static func reservedBits32BitLargePage(model: CPUModel) -> UInt64 {
        bitRange(21, min(model.maxPhysicalAddressBits, 40) - 19)
    }

    // MARK: - 64-bit formats

    @inlinable
    static func walk64<Memory: PhysicalMemory, Tracer: WalkTracer>(
        _ linear: UInt64, _ access: MemoryAccess, registers: ControlRegisters, memory: Memory,
        setAccessedDirty: Bool, tracer: inout Tracer
    ) -> WalkResult {
        let mode = registers.mode
        let model = registers.model
        let nxe = registers.executeDisableEnabled
        let addressMask = bitRange(model.maxPhysicalAddressBits - 1, 12)
        var path = EntryPath()
        var level: Int
        var table: UInt64

        if mode == .pae {
            let index = Int(linear >> 30 & 3)
            let pdpte: UInt64
            if model.latchesPDPTEs {
                pdpte = registers.pdptes[index]
                if pdpte & 1 == 0 {
                    tracer.record(WalkStep(level: 3, source: .pdpteRegister(index), entry: pdpte, entrySize: 8, decision: .notPresent))
                    return .pageFault(registers.errorCodeBase(for: access))
                }
                tracer.record(WalkStep(level: 3, source: .pdpteRegister(index), entry: pdpte, entrySize: 8, decision: .nextTable(pdpte & addressMask)))
            } else {
                // AMD nested paging: the PDPTE is an ordinary memory reference.
                let entryAddress = registers.cr3 & 0xffff_ffe0 + UInt64(index * 8)
                guard memory.contains(entryAddress, width: 8) else {
                    tracer.record(WalkStep(level: 3, source: .memory(entryAddress), entry: ~0, entrySize: 8, decision: .outsideMemory))
                    return .pageFault(registers.errorCodeBase(for: access))
                }
                pdpte = memory.load(entryAddress, width: 8)
                if pdpte & 1 == 0 {
                    tracer.record(WalkStep(level: 3, source: .memory(entryAddress), entry: pdpte, entrySize: 8, decision: .notPresent))
                    return .pageFault(registers.errorCodeBase(for: access))
                }
                let reserved = pdpte & PDPTERegisters.reservedBits(maxPhysicalAddressBits: model.maxPhysicalAddressBits)
                if reserved != 0 {
                    tracer.record(WalkStep(level: 3, source: .memory(entryAddress), entry: pdpte, entrySize: 8, decision: .reservedBits(reserved)))
                    return .pageFault(PageFaultErrorCode(rawValue: registers.errorCodeBase(for: access).rawValue | 0x9))
                }
                tracer.record(WalkStep(level: 3, source: .memory(entryAddress), entry: pdpte, entrySize: 8, decision: .nextTable(pdpte & addressMask)))
            }
            table = pdpte & addressMask
            level = 2
        } else {
            table = registers.rootTableAddress
            level = mode.levels
        }

        var user = true
        var writable = true
        var executeDisable = false
        while true {
            let shift = 12 + 9 * (level - 1)
            let entryAddress = table + (linear >> UInt64(shift) & 511) * 8
            guard memory.contains(entryAddress, width: 8) else {
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: ~0, entrySize: 8, decision: .outsideMemory))
                return .pageFault(registers.errorCodeBase(for: access))
            }
            let entry = memory.load(entryAddress, width: 8)
            if entry & 1 == 0 {
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .notPresent))
                return .pageFault(registers.errorCodeBase(for: access))
            }
            let large = entry & PTE64.pageSize.rawValue != 0 && (level == 2 || (level == 3 && mode != .pae))
            let reserved = entry & reservedBits(mode: mode, level: level, large: large, model: model, executeDisableEnabled: nxe)
            if reserved != 0 {
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .reservedBits(reserved)))
                return .pageFault(PageFaultErrorCode(rawValue: registers.errorCodeBase(for: access).rawValue | 0x9))
            }
            user = user && entry & PTE64.user.rawValue != 0
            writable = writable && entry & PTE64.writable.rawValue != 0
            executeDisable = executeDisable || (nxe && entry & PTE64.executeDisable.rawValue != 0)
            path.append(entryAddress, entry)

            if level == 1 || large {
                let offsetMask: UInt64 = (1 << UInt64(shift)) - 1
                let base = entry & addressMask & ~offsetMask
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .page(base: base, shift: shift)))
                let rights = EffectiveRights(user: user, writable: writable, executeDisable: executeDisable)
                let key = mode.isLongMode ? Int(entry >> 59 & 0xf) : 0
                return finish(
                    linear: linear, physical: base | linear & offsetMask, shift: shift, leafLevel: level, rights: rights, key: key,
                    path: path, entrySize: 8, access: access, registers: registers, memory: memory,
                    setAccessedDirty: setAccessedDirty, tracer: &tracer)
            }
            table = entry & addressMask
            tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .nextTable(table)))
            level -= 1
        }
    }

    // MARK: - 32-bit paging

    @inlinable
    static func walk32<Memory: PhysicalMemory, Tracer: WalkTracer>(
        _ linear: UInt64, _ access: MemoryAccess, registers: ControlRegisters, memory: Memory,
        setAccessedDirty: Bool, tracer: inout Tracer
    ) -> WalkResult {
        var path = EntryPath()
        let pdeAddress = registers.rootTableAddress + (linear >> 22 & 0x3ff) * 4
        guard memory.contains(pdeAddress, width: 4) else {
            tracer.record(WalkStep(level: 2, source: .memory(pdeAddress), entry: 0xffff_ffff, entrySize: 4, decision: .outsideMemory))
            return .pageFault(registers.errorCodeBase(for: access))
        }
        let pde = memory.load(pdeAddress, width: 4)
        if pde & 1 == 0 {
            tracer.record(WalkStep(level: 2, source: .memory(pdeAddress), entry: pde, entrySize: 4, decision: .notPresent))
            return .pageFault(registers.errorCodeBase(for: access))
        }
        path.append(pdeAddress, pde)
        if registers.cr4.contains(.pse), pde & UInt64(PTE32.pageSize.rawValue) != 0 {
            let reserved = pde & reservedBits32BitLargePage(model: registers.model)
            if reserved != 0 {
                tracer.record(WalkStep(level: 2, source: .memory(pdeAddress), entry: pde, entrySize: 4, decision: .reservedBits(reserved)))
                return .pageFault(PageFaultErrorCode(rawValue: registers.errorCodeBase(for: access).rawValue | 0x9))
            }
            let base = PTE32(rawValue: UInt32(pde)).largePageAddress(maxPhysicalAddressBits: registers.maxPhysicalAddressBits)
            tracer.record(WalkStep(level: 2, source: .memory(pdeAddress), entry: pde, entrySize: 4, decision: .page(base: base, shift: 22)))
            let rights = EffectiveRights(user: pde & 4 != 0, writable: pde & 2 != 0, executeDisable: false)
            return finish(
                linear: linear, physical: base | linear & 0x3f_ffff, shift: 22, leafLevel: 2, rights: rights, key: 0,
                path: path, entrySize: 4, access: access, registers: registers, memory: memory,
                setAccessedDirty: setAccessedDirty, tracer: &tracer)
        }
        let table = pde & 0xffff_f000
        tracer.record(WalkStep(level: 2, source: .memory(pdeAddress), entry: pde, entrySize: 4, decision: .nextTable(table)))
        let pteAddress = table + (linear >> 12 & 0x3ff) * 4
        guard memory.contains(pteAddress, width: 4) else {
            tracer.record(WalkStep(level: 1, source: .memory(pteAddress), entry: 0xffff_ffff, entrySize: 4, decision: .outsideMemory))
            return .pageFault(registers.errorCodeBase(for: access))
        }
        let pte = memory.load(pteAddress, width: 4)
        if pte & 1 == 0 {
            tracer.record(WalkStep(level: 1, source: .memory(pteAddress), entry: pte, entrySize: 4, decision: .notPresent))
            return .pageFault(registers.errorCodeBase(for: access))
        }
        path.append(pteAddress, pte)
        let base = pte & 0xffff_f000
        tracer.record(WalkStep(level: 1, source: .memory(pteAddress), entry: pte, entrySize: 4, decision: .page(base: base, shift: 12)))
        let rights = EffectiveRights(user: pde & pte & 4 != 0, writable: pde & pte & 2 != 0, executeDisable: false)
        return finish(
            linear: linear, physical: base | linear & 0xfff, shift: 12, leafLevel: 1, rights: rights, key: 0,
            path: path, entrySize: 4, access: access, registers: registers, memory: memory,
            setAccessedDirty: setAccessedDirty, tracer: &tracer)
    }

    // MARK: - Permission check and accessed/dirty flags

    @inlinable
    static func finish<Memory: PhysicalMemory, Tracer: WalkTracer>(
        linear: UInt64, physical: UInt64, shift: Int, leafLevel: Int, rights: EffectiveRights, key: Int,
        path: EntryPath, entrySize: Int, access: MemoryAccess, registers: ControlRegisters, memory: Memory,
        setAccessedDirty: Bool, tracer: inout Tracer
    ) -> WalkResult {
        let violations = registers.permissionViolations(rights, protectionKey: key, access)
        tracer.record(rights: rights, violations: violations)
        if !violations.isEmpty {
            return .pageFault(registers.permissionFaultCode(violations, access))
        }
        let leaf = path.value(path.count - 1)
        var dirty = leaf & PTE64.dirty.rawValue != 0
        if setAccessedDirty {
            for index in 0..<path.count {
                let old = path.value(index)
                var new = old | PTE64.accessed.rawValue
                if index == path.count - 1, access.kind == .write { new |= PTE64.dirty.rawValue }
                if new != old {
                    memory.store(path.address(index), width: entrySize, new)
                    tracer.record(AccessedDirtyUpdate(address: path.address(index), entrySize: entrySize, old: old, new: new))
                }
            }
            if access.kind == .write { dirty = true }
        }
        let global = registers.cr4.contains(.pge) && leaf & PTE64.global.rawValue != 0
        return .translated(Translation(
            linearAddress: linear, physicalAddress: physical, pageShift: shift, rights: rights, protectionKey: key,
            global: global, dirty: dirty, leafLevel: leafLevel))
    }
}

/// The entries a walk used, top-down, without allocating (at most five).
@usableFromInline
struct EntryPath {
    @usableFromInline var addresses: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
    @usableFromInline var values: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
    @usableFromInline var count = 0

    @inlinable init() {}

    @inlinable
    mutating func append(_ address: UInt64, _ value: UInt64) {
        switch count {
        case 0: addresses.0 = address; values.0 = value
        case 1: addresses.1 = address; values.1 = value
        case 2: addresses.2 = address; values.2 = value
        case 3: addresses.3 = address; values.3 = value
        default: addresses.4 = address; values.4 = value
        }
        count += 1
    }

    @inlinable
    func address(_ index: Int) -> UInt64 {
        switch index {
        case 0: addresses.0
        case 1: addresses.1
        case 2: addresses.2
        case 3: addresses.3
        default: addresses.4
        }
    }

    @inlinable
    func value(_ index: Int) -> UInt64 {
        switch index {
        case 0: values.0
        case 1: values.1
        case 2: values.2
        case 3: values.3
        default: values.4
        }
    }
}
