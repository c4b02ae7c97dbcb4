/// The architectural state that decides how a linear address is translated:
/// CR0, CR3, CR4, EFER, PKRU, EFLAGS.AC and the PDPTE registers.
///
/// Writes go through `write(_:_:memory:)`, which applies the architecture's
/// validity rules (`ControlRegisters+Writes.swift`); a rejected write is a #GP
/// and leaves every register as it was.
public struct ControlRegisters: Hashable, Sendable {
    public let model: CPUModel
    public internal(set) var cr0: CR0
    public internal(set) var cr3: UInt64
    public internal(set) var cr4: CR4
    public internal(set) var efer: EFER
    /// PKRU (WRPKRU has no failure mode here).
    public var pkru: PKRU
    /// EFLAGS.AC: lets explicit supervisor accesses to user pages pass SMAP.
    public var alignmentCheck: Bool
    /// Meaningful only in PAE paging with `model.latchesPDPTEs`.
    public internal(set) var pdptes: PDPTERegisters
    /// Derived from CR0, CR4 and EFER; kept up to date by every write.
    public private(set) var mode: PagingMode

    public init(model: CPUModel = CPUModel()) {
        self.model = model
        cr0 = .resetValue
        cr3 = 0
        cr4 = CR4(rawValue: 0)
        efer = EFER(rawValue: 0)
        pkru = PKRU(rawValue: 0)
        alignmentCheck = false
        pdptes = PDPTERegisters()
        mode = .none
    }

    mutating func updateMode() {
        mode = PagingMode(cr0: cr0, cr4: cr4, efer: efer)
    }

    @inlinable public var maxPhysicalAddressBits: Int { model.maxPhysicalAddressBits }
    /// EFER.NXE in a mode where it has meaning (PAE, 4-level, 5-level).
    @inlinable public var executeDisableEnabled: Bool { cr4.contains(.pae) && efer.contains(.nxe) }
    /// The PCID tagging TLB entries: CR3[11:0] with CR4.PCIDE, else 0.
    @inlinable public var pcid: Int { cr4.contains(.pcide) ? Int(cr3 & 0xfff) : 0 }
    /// Physical address of the top-level paging structure.
    @inlinable public var rootTableAddress: UInt64 {
        switch mode {
        case .none: 0
        case .bits32: cr3 & 0xffff_f000
        case .pae: cr3 & 0xffff_ffe0
        case .level4, .level5: cr3 & bitRange(maxPhysicalAddressBits - 1, 12)
        }
    }

    /// The linear address the walk uses: truncated to 32 bits outside long mode.
    @inlinable
    public func linearAddress(_ address: UInt64) -> UInt64 {
        mode.isLongMode ? address : address & 0xffff_ffff
    }
}

extension ControlRegisters {
    /// Paging state loaded as a whole, without the checks and side effects of
    /// MOV: what a VM entry does when it loads the host-built root into the
    /// hardware (CR0, CR3, CR4, EFER and, for a PAE root, the PDPTE registers
    /// read from the root table). The caller guarantees the combination is
    /// architecturally valid.
    public init(
        model: CPUModel, cr0: CR0, cr3: UInt64, cr4: CR4, efer: EFER, pkru: PKRU = PKRU(rawValue: 0),
        alignmentCheck: Bool = false, pdptes: PDPTERegisters = PDPTERegisters()
    ) {
        self.init(model: model)
        self.cr0 = cr0
        self.cr3 = cr3
        self.cr4 = cr4
        self.efer = efer
        self.pkru = pkru
        self.alignmentCheck = alignmentCheck
        self.pdptes = pdptes
        updateMode()
    }
}

extension ControlRegisters {
    /// These registers as the paging hardware sees them under a hypervisor that
    /// keeps CR0.WP set (shadow paging) — with EFER.LMA as the hardware's own
    /// mode has it, since protection keys exist only in long mode.
    public func withHardwareWriteProtect(longMode: Bool) -> ControlRegisters {
        var copy = self
        copy.cr0 = CR0(rawValue: cr0.rawValue | CR0.writeProtect.rawValue)
        copy.efer = EFER(rawValue: longMode ? efer.rawValue | EFER.lma.rawValue : efer.rawValue & ~EFER.lma.rawValue)
        copy.cr4 = CR4(rawValue: longMode ? cr4.rawValue : cr4.rawValue & ~CR4.pke.rawValue)
        return copy
    }
}
