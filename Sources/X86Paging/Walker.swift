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
    /// - Parameters:
    ///   - address: the linear address (truncated to 32 bits outside long mode).
    ///   - access: what is accessed, and by whom.
    ///   - registers: the paging state that decides the walk.
    ///   - memory: physical memory holding the paging structures.
    ///   - setAccessedDirty: write A (every entry used) and D (the leaf, for
    ///     a write) into `memory` when the access is allowed.
    ///   - tracer: receives each entry read, each A/D write and the
    ///     permission check.
    @inlinable
    public static func walk<Memory: PhysicalMemory, Tracer: WalkTracer>(
        _ address: UInt64, _ access: MemoryAccess, registers: ControlRegisters, memory: Memory,
        setAccessedDirty: Bool = true, tracer: inout Tracer
    ) -> WalkResult {
        guard registers.mode.isCanonical(address) else { return .generalProtection }
        return walkTables(registers.linearAddress(address), access, registers: registers, memory: memory,
                          setAccessedDirty: setAccessedDirty, tracer: &tracer)
    }

    /// Translates a guest-physical address through nested page tables in the
    /// host's own format (AMD NPT, nCR3 in `registers.cr3`). A physical
    /// address is neither canonical nor not: its bits index the tables as
    /// they are, so the caller must first check that it fits their width
    /// (32 bits for legacy tables, 48 for 4-level, 57 for 5-level); the
    /// result is never `.generalProtection`.
    @inlinable
    public static func walkPhysical<Memory: PhysicalMemory, Tracer: WalkTracer>(
        _ physicalAddress: UInt64, _ access: MemoryAccess, registers: ControlRegisters, memory: Memory, tracer: inout Tracer
    ) -> WalkResult {
        walkTables(physicalAddress, access, registers: registers, memory: memory, setAccessedDirty: true, tracer: &tracer)
    }

    /// The walk of the tables themselves, for an address already reduced to
    /// what indexes them.
    @inlinable
    static func walkTables<Memory: PhysicalMemory, Tracer: WalkTracer>(
        _ linear: UInt64, _ access: MemoryAccess, registers: ControlRegisters, memory: Memory,
        setAccessedDirty: Bool, tracer: inout Tracer
    ) -> WalkResult {
        switch registers.mode {
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
        ReservedBits64(mode: mode, model: model, executeDisableEnabled: executeDisableEnabled).mask(level: level, large: large)
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
        let reservedBits = ReservedBits64(mode: mode, model: model, executeDisableEnabled: nxe)
        let addressMask = reservedBits.addressMask
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
            level = mode.rawValue  // `levels`, which other modules cannot inline
        }

        // PS maps a page in a PDE, and in a PDPTE outside PAE paging.
        let largePageLevel = mode == .pae ? 2 : 3
        while true {
            // Levels are 1...5, so shifts stay below 64 and tables below 2^52:
            // wrapping arithmetic spares overflow and over-shift checks.
            let shift = 12 &+ 9 &* (level &- 1)
            let entryAddress = table &+ (linear &>> UInt64(shift) & 511) &* 8
            guard memory.contains(entryAddress, width: 8) else {
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: ~0, entrySize: 8, decision: .outsideMemory))
                return .pageFault(registers.errorCodeBase(for: access))
            }
            let entry = memory.load(entryAddress, width: 8)
            if entry & 1 == 0 {
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .notPresent))
                return .pageFault(registers.errorCodeBase(for: access))
            }
            let large = entry & EntryBit.pageSize != 0 && level >= 2 && level <= largePageLevel
            let reserved = entry & reservedBits.mask(level: level, large: large)
            if reserved != 0 {
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .reservedBits(reserved)))
                return .pageFault(PageFaultErrorCode(rawValue: registers.errorCodeBase(for: access).rawValue | 0x9))
            }
            path.append(entryAddress, entry)

            if level == 1 || large {
                let offsetMask: UInt64 = (1 &<< UInt64(shift)) &- 1
                let base = entry & addressMask & ~offsetMask
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .page(base: base, shift: shift)))
                // U/S and R/W are ANDed over the entries, XD ORed.
                let rights = EffectiveRights(
                    user: path.allEntries & EntryBit.user != 0, writable: path.allEntries & EntryBit.writable != 0,
                    executeDisable: nxe && path.anyEntry & EntryBit.executeDisable != 0)
                let key = registers.isLongMode ? Int(entry >> 59 & 0xf) : 0
                return finish(
                    linear: linear, physical: base | linear & offsetMask, shift: shift, leafLevel: level, rights: rights, key: key,
                    leaf: entry, path: path, entrySize: 8, access: access, registers: registers, memory: memory,
                    setAccessedDirty: setAccessedDirty, tracer: &tracer)
            }
            table = entry & addressMask
            tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .nextTable(table)))
            level &-= 1
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
        if registers.cr4.rawValue & ControlBit.cr4PSE != 0, pde & EntryBit.pageSize != 0 {
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
                leaf: pde, path: path, entrySize: 4, access: access, registers: registers, memory: memory,
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
            leaf: pte, path: path, entrySize: 4, access: access, registers: registers, memory: memory,
            setAccessedDirty: setAccessedDirty, tracer: &tracer)
    }

    // MARK: - Permission check and accessed/dirty flags

    /// `leaf` is the last entry of `path` (passed as a value, so that the
    /// common case never reads the path back from memory).
    @inlinable @inline(__always)
    static func finish<Memory: PhysicalMemory, Tracer: WalkTracer>(
        linear: UInt64, physical: UInt64, shift: Int, leafLevel: Int, rights: EffectiveRights, key: Int,
        leaf: UInt64, path: borrowing EntryPath, entrySize: Int, access: MemoryAccess, registers: ControlRegisters, memory: Memory,
        setAccessedDirty: Bool, tracer: inout Tracer
    ) -> WalkResult {
        let violations = registers.permissionViolations(rights, protectionKey: key, access)
        tracer.record(rights: rights, violations: violations)
        if !violations.isEmpty {
            return .pageFault(registers.permissionFaultCode(violations, access))
        }
        var dirty = leaf & EntryBit.dirty != 0
        // Usually every entry already has A (and the leaf D, for a write):
        // then there is nothing to write and the loop is skipped.
        let upToDate = path.allEntries & EntryBit.accessed != 0 && (access.kind != .write || dirty)
        if setAccessedDirty, !upToDate {
            for index in 0..<path.count {
                let old = path.value(index)
                var new = old | EntryBit.accessed
                if index == path.count - 1, access.kind == .write { new |= EntryBit.dirty }
                if new != old {
                    memory.store(path.address(index), width: entrySize, new)
                    tracer.record(AccessedDirtyUpdate(address: path.address(index), entrySize: entrySize, old: old, new: new))
                }
            }
            if access.kind == .write { dirty = true }
        }
        let global = registers.cr4.rawValue & ControlBit.cr4PGE != 0 && leaf & EntryBit.global != 0
        return .translated(Translation(
            linearAddress: linear, physicalAddress: physical, pageShift: shift, rights: rights, protectionKey: key,
            global: global, dirty: dirty, leafLevel: leafLevel))
    }
}

/// The reserved bits of present 64-bit entries for one mode, CPU model and
/// EFER.NXE (SDM Vol. 3A §4.4.2, §4.5), computed once per walk rather than
/// once per level.
@usableFromInline
struct ReservedBits64 {
    /// Every level: physical-address bits above MAXPHYADDR (bits 63:M with
    /// PAE, 51:M otherwise), and XD without EFER.NXE.
    @usableFromInline let common: UInt64
    /// PML4Es and PML5Es also reserve PS, and on AMD bit 8.
    @usableFromInline let topLevels: UInt64
    /// Bits M-1:12: the address field of an entry.
    @usableFromInline let addressMask: UInt64

    @inlinable @inline(__always)
    init(mode: PagingMode, model: CPUModel, executeDisableEnabled: Bool) {
        // MAXPHYADDR is 32...52: the shifts stay below 64 without checks.
        let belowMaxPhysical: UInt64 = (1 &<< UInt64(truncatingIfNeeded: model.maxPhysicalAddressBits)) &- 1
        var common = ~belowMaxPhysical & (mode == .pae ? ~(1 << 63) : (1 << 52) - 1)  // bits 62:M, or 51:M
        if !executeDisableEnabled { common |= 1 << 63 }
        self.common = common
        topLevels = common | 1 << 7 | (model.vendor == .amd ? 1 << 8 : 0)
        addressMask = belowMaxPhysical & ~0xfff
    }

    /// For the entry at `level`; `large` is PS=1 where PS maps a page, whose
    /// address bits below the page size are reserved.
    @inlinable @inline(__always)
    func mask(level: Int, large: Bool) -> UInt64 {
        if level >= 4 { return topLevels }
        if large { return common | (level == 3 ? bitRange(29, 13) : bitRange(20, 13)) }
        return common
    }
}

/// Flags of paging-structure entries, as literals for the inlinable walkers:
/// the values of `PTE64`'s flags (bits 0–8 are the same in `PTE32`), which
/// are `static let`s and cost a call per use in another module (see
/// `ControlBit`).
@usableFromInline
enum EntryBit {
    @inlinable static var writable: UInt64 { 1 << 1 }
    @inlinable static var user: UInt64 { 1 << 2 }
    @inlinable static var accessed: UInt64 { 1 << 5 }
    @inlinable static var dirty: UInt64 { 1 << 6 }
    @inlinable static var pageSize: UInt64 { 1 << 7 }
    @inlinable static var global: UInt64 { 1 << 8 }
    @inlinable static var executeDisable: UInt64 { 1 << 63 }
}

/// The entries a walk used, top-down, without allocating (at most five).
@usableFromInline
struct EntryPath {
    @usableFromInline var addresses: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
    @usableFromInline var values: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
    @usableFromInline var count = 0
    /// The AND of every entry's value: a bit set in all of them (A, U/S, R/W).
    @usableFromInline var allEntries: UInt64 = ~0
    /// The OR of every entry's value: a bit set in any of them (XD).
    @usableFromInline var anyEntry: UInt64 = 0

    @inlinable init() {}

    // The tuples are indexed through their bytes: one store or load, where
    // a `switch` over the index costs a jump table on every level of a walk.

    @inlinable
    mutating func append(_ address: UInt64, _ value: UInt64) {
        precondition(count < 5, "a walk uses at most five entries")
        let offset = count &* 8
        withUnsafeMutableBytes(of: &addresses) { $0.storeBytes(of: address, toByteOffset: offset, as: UInt64.self) }
        withUnsafeMutableBytes(of: &values) { $0.storeBytes(of: value, toByteOffset: offset, as: UInt64.self) }
        allEntries &= value
        anyEntry |= value
        count &+= 1
    }

    @inlinable
    func address(_ index: Int) -> UInt64 {
        precondition(index >= 0 && index < count, "no such entry")
        return withUnsafeBytes(of: addresses) { $0.load(fromByteOffset: index &* 8, as: UInt64.self) }
    }

    @inlinable
    func value(_ index: Int) -> UInt64 {
        precondition(index >= 0 && index < count, "no such entry")
        return withUnsafeBytes(of: values) { $0.load(fromByteOffset: index &* 8, as: UInt64.self) }
    }
}
