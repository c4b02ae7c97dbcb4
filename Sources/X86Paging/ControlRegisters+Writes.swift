/// What a register write did besides changing the register.
public struct RegisterWriteEffects: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Invalidate the TLB's non-global entries for the (new) current PCID.
    public static let flushNonGlobal = RegisterWriteEffects(rawValue: 1 << 0)
    /// Invalidate every TLB entry, global ones included.
    public static let flushAll = RegisterWriteEffects(rawValue: 1 << 1)
    /// The PDPTE registers were (re)loaded.
    public static let pdptesLoaded = RegisterWriteEffects(rawValue: 1 << 2)
    /// The paging mode changed.
    public static let modeChanged = RegisterWriteEffects(rawValue: 1 << 3)
}

/// The outcome of a MOV to a control register, WRMSR to EFER or WRPKRU.
public enum RegisterWriteResult: Hashable, Sendable {
    case accepted(RegisterWriteEffects)
    /// The architecture rejects the value: #GP(0), nothing changed.
    case generalProtection

    public var isAccepted: Bool {
        if case .accepted = self { true } else { false }
    }
}

/// The registers a guest can write.
public enum ControlRegister: String, Hashable, Sendable, CaseIterable {
    case cr0, cr3, cr4, efer, pkru
}

extension ControlRegisters {
    /// Whether PAE paging is in use (CR0.PG, CR4.PAE, not long mode).
    public var isPAEPaging: Bool { mode == .pae }

    /// Writes `value` to `register` with the architectural checks and side
    /// effects. `memory` is read for PDPTE loads.
    public mutating func write<Memory: PhysicalMemory>(_ register: ControlRegister, _ value: UInt64, memory: Memory) -> RegisterWriteResult {
        let oldMode = mode
        var candidate = self
        let outcome: RegisterWriteEffects?
        switch register {
        case .cr0: outcome = candidate.writeCR0(value, memory: memory)
        case .cr3: outcome = candidate.writeCR3(value, memory: memory)
        case .cr4: outcome = candidate.writeCR4(value, memory: memory)
        case .efer: outcome = candidate.writeEFER(value)
        case .pkru:
            guard value >> 32 == 0 else { return .generalProtection }
            candidate.pkru = PKRU(rawValue: UInt32(value))
            outcome = []
        }
        guard var effects = outcome else { return .generalProtection }
        candidate.updateMode()
        if candidate.mode != oldMode { effects.insert([.modeChanged, .flushAll]) }
        self = candidate
        return .accepted(effects)
    }

    /// Loads the PDPTE registers from CR3 if PDPTEs are latched; `false` if a
    /// present entry has a reserved bit.
    mutating func reloadPDPTEs<Memory: PhysicalMemory>(memory: Memory) -> Bool {
        guard model.latchesPDPTEs else { return true }
        guard let loaded = PDPTERegisters.load(cr3: cr3, memory: memory, maxPhysicalAddressBits: maxPhysicalAddressBits) else {
            return false
        }
        pdptes = loaded
        return true
    }

    private mutating func writeCR0<Memory: PhysicalMemory>(_ value: UInt64, memory: Memory) -> RegisterWriteEffects? {
        guard value >> 32 == 0 else { return nil }
        var new = CR0(rawValue: value)
        if new.contains(.notWriteThrough), !new.contains(.cacheDisable) { return nil }
        if new.pg, !new.pe { return nil }
        // Writes to the undefined bits of 31:0 are ignored; ET is hard-wired to 1.
        new = CR0(rawValue: value & CR0.definedBits | CR0.extensionType.rawValue)
        let old = cr0
        let enablingPaging = new.pg && !old.pg
        if enablingPaging, efer.contains(.lme), !cr4.contains(.pae) { return nil }
        if !new.pg, old.pg {
            // Every long-mode access here is a 64-bit-mode access, and 64-bit
            // mode cannot clear PG; nor can anyone while CR4.PCIDE=1.
            if efer.contains(.lma) || cr4.contains(.pcide) { return nil }
        }
        var effects: RegisterWriteEffects = []
        cr0 = new
        if new.pg, efer.contains(.lme) {
            efer.rawValue |= EFER.lma.rawValue
        } else if !new.pg {
            efer.rawValue &= ~EFER.lma.rawValue
        }
        let paePagingAfter = new.pg && cr4.contains(.pae) && !efer.contains(.lma)
        if paePagingAfter, (old.rawValue ^ new.rawValue) & CR0.pdpteReloadBits != 0 {
            guard reloadPDPTEs(memory: memory) else { return nil }
            effects.insert(.pdptesLoaded)
        }
        if (old.rawValue ^ new.rawValue) & CR0.paging.rawValue != 0 { effects.insert(.flushAll) }
        return effects
    }

    private mutating func writeCR3<Memory: PhysicalMemory>(_ value: UInt64, memory: Memory) -> RegisterWriteEffects? {
        var new = value
        var keepTranslations = false
        if efer.contains(.lma) {
            if cr4.contains(.pcide), new & bit(63) != 0 {
                keepTranslations = true
                new &= ~bit(63)
            }
            if new & bitRange(63, maxPhysicalAddressBits) != 0 { return nil }
        }
        cr3 = new
        var effects: RegisterWriteEffects = keepTranslations ? [] : .flushNonGlobal
        if mode == .pae {
            guard reloadPDPTEs(memory: memory) else { return nil }
            effects.insert(.pdptesLoaded)
        }
        return effects
    }

    private mutating func writeCR4<Memory: PhysicalMemory>(_ value: UInt64, memory: Memory) -> RegisterWriteEffects? {
        guard value & ~CR4.definedBits == 0 else { return nil }
        let new = CR4(rawValue: value)
        let old = cr4
        let changed = old.rawValue ^ new.rawValue
        if efer.contains(.lma) {
            if !new.contains(.pae) { return nil }
            if changed & CR4.la57.rawValue != 0 { return nil }
        }
        if new.contains(.pcide), !old.contains(.pcide) {
            if cr3 & 0xfff != 0 || !efer.contains(.lma) { return nil }
        }
        cr4 = new
        var effects: RegisterWriteEffects = []
        let paePagingAfter = cr0.pg && new.contains(.pae) && !efer.contains(.lma)
        if paePagingAfter, changed & CR4.pdpteReloadBits != 0 {
            guard reloadPDPTEs(memory: memory) else { return nil }
            effects.insert(.pdptesLoaded)
        }
        if changed & CR4.tlbFlushBits != 0 { effects.insert(.flushAll) }
        return effects
    }

    private mutating func writeEFER(_ value: UInt64) -> RegisterWriteEffects? {
        guard value & ~EFER.definedBits == 0 else { return nil }
        if cr0.pg, (value ^ efer.rawValue) & EFER.lme.rawValue != 0 { return nil }
        // LMA is owned by the processor: the written value of that bit is ignored.
        let new = value & ~EFER.lma.rawValue | efer.rawValue & EFER.lma.rawValue
        let changed = new ^ efer.rawValue
        efer = EFER(rawValue: new)
        // Flushing on an NXE change keeps cached translations consistent with
        // the reserved-bit rules of the new value (bit 63 becomes reserved).
        return changed & EFER.nxe.rawValue != 0 ? .flushAll : []
    }
}
