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
    @inlinable public var executeDisableEnabled: Bool { cr4.rawValue & ControlBit.cr4PAE != 0 && efer.rawValue & ControlBit.eferNXE != 0 }
    /// The PCID tagging TLB entries: CR3[11:0] with CR4.PCIDE, else 0.
    @inlinable @inline(__always) public var pcid: Int { cr4.rawValue & ControlBit.cr4PCIDE != 0 ? Int(cr3 & 0xfff) : 0 }
    /// 4- or 5-level paging: 64-bit linear addresses (`PagingMode.isLongMode`,
    /// which other modules cannot inline).
    @inlinable @inline(__always) var isLongMode: Bool { mode == .level4 || mode == .level5 }
    /// Physical address of the top-level paging structure.
    @inlinable @inline(__always) public var rootTableAddress: UInt64 {
        switch mode {
        case .none: 0
        case .bits32: cr3 & 0xffff_f000
        case .pae: cr3 & 0xffff_ffe0
        case .level4, .level5: cr3 & bitRange(maxPhysicalAddressBits - 1, 12)
        }
    }

    /// The linear address the walk uses: truncated to 32 bits outside long mode.
    @inlinable @inline(__always)
    public func linearAddress(_ address: UInt64) -> UInt64 {
        isLongMode ? address : address & 0xffff_ffff
    }
}

/// The CR0, CR4 and EFER bits that inlinable hot paths test, as literals
/// with the values of the flags of `CR0`, `CR4` and `EFER`. Those flags are
/// `static let`s, which code inlined into another module reads through a
/// call to a lazy initializer, once per use: more than the rest of a TLB hit.
@usableFromInline
enum ControlBit {
    @inlinable static var cr0WriteProtect: UInt64 { 1 << 16 }
    @inlinable static var cr4PSE: UInt64 { 1 << 4 }
    @inlinable static var cr4PAE: UInt64 { 1 << 5 }
    @inlinable static var cr4PGE: UInt64 { 1 << 7 }
    @inlinable static var cr4PCIDE: UInt64 { 1 << 17 }
    @inlinable static var cr4SMEP: UInt64 { 1 << 20 }
    @inlinable static var cr4SMAP: UInt64 { 1 << 21 }
    @inlinable static var cr4PKE: UInt64 { 1 << 22 }
    @inlinable static var eferLMA: UInt64 { 1 << 10 }
    @inlinable static var eferNXE: UInt64 { 1 << 11 }
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
