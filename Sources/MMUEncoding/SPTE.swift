import HostPlatform
import X86Paging

/// The entry format of the tables the hypervisor builds: x86 page tables
/// (shadow paging and AMD NPT) or Intel EPT.
public enum SPTEFormat: Hashable, Sendable {
    case x86
    case ept
}

/// A shadow page-table entry: an entry of a table the hypervisor built and the
/// hardware walks, in the 64-bit (PAE / long-mode) format.
///
/// Layout, as KVM uses it on x86-64: P 0, W 1, U 2, A 5, D 6, PS 7,
/// MMU-writable 10 (may be made writable: not write-protected for a shadowed
/// page table), shadow-present 11 (the software "this entry is in use"),
/// address 12–45, protection key 59–62 (ours: see `leaf(frame:access:…)`), NX 63.
/// MMIO sptes set reserved bit 51 so the hardware faults with RSVD, and carry
/// the memslot generation in bits 52–58 (ignored bits; never with PK in use).
public struct SPTE: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let present: UInt64 = 1 << 0
    public static let writable: UInt64 = 1 << 1
    public static let user: UInt64 = 1 << 2
    public static let accessed: UInt64 = 1 << 5
    public static let dirty: UInt64 = 1 << 6
    public static let pageSize: UInt64 = 1 << 7
    public static let mmuWritable: UInt64 = 1 << 10
    /// EPT keeps MMU-writable in an ignored high bit (bit 10 is user-execute there).
    public static let eptMMUWritable: UInt64 = 1 << 58
    public static func mmuWritable(_ format: SPTEFormat) -> UInt64 { format == .ept ? eptMMUWritable : mmuWritable }
    public static let shadowPresent: UInt64 = 1 << 11
    public static let executeDisable: UInt64 = 1 << 63
    public static let addressMask: UInt64 = bitRange(HostMemory.maxPhysicalAddressBits - 1, 12)
    @usableFromInline static let mmioMarker: UInt64 = 1 << 51
    static let mmioGenerationShift: UInt64 = 52
    static let mmioGenerationMask: UInt64 = 0x7f

    public static let empty = SPTE(rawValue: 0)

    /// In use by the MMU (KVM's `is_shadow_present_pte`), whatever the hardware bits say.
    @inlinable public var isShadowPresent: Bool { rawValue & Self.shadowPresent != 0 }
    @inlinable public var isWritable: Bool { rawValue & Self.writable != 0 }
    /// Whether this present entry of a level-`level` table maps a page (PS, or level 1).
    @inlinable public func isLeaf(atLevel level: Int) -> Bool { level == 1 || rawValue & Self.pageSize != 0 }
    @inlinable public var isMMIO: Bool { rawValue & Self.mmioMarker != 0 && rawValue & Self.shadowPresent == 0 }
    /// Host frame number the entry points to.
    @inlinable public var frame: UInt64 { (rawValue & Self.addressMask) >> 12 }

    /// A non-leaf entry: full rights, restrictions live in leaves and child roles.
    public static func nonLeaf(child frame: UInt64, format: SPTEFormat = .x86) -> SPTE {
        switch format {
        case .x86: SPTE(rawValue: frame << 12 | present | writable | user | accessed | shadowPresent)
        case .ept: SPTE(rawValue: frame << 12 | 0x7 | shadowPresent)
        }
    }

    /// An entry of a PAE root that the hardware loads into a PDPTE register:
    /// only P and the address are architectural; bit 11 (ignored in a PDPTE)
    /// marks it shadow-present. No R/W, U/S, A or NX: those are reserved there.
    public static func paeRootEntry(child frame: UInt64) -> SPTE {
        SPTE(rawValue: frame << 12 | present | shadowPresent)
    }

    /// A 4 KiB leaf mapping host frame `frame` with `access`. In EPT format
    /// `user` grants read (KVM's shadow EPT encoding: ACC_USER means readable;
    /// a TDP map has every right), execute as `access` says, write-back memory type.
    public static func leaf(
        frame: UInt64, access: AccessRights, writable: Bool, mmuWritable: Bool, protectionKey: Int, format: SPTEFormat = .x86,
        large: Bool = false
    ) -> SPTE {
        let size = large ? pageSize : 0
        if format == .ept {
            var value = frame << 12 | (access.contains(.user) ? 0x1 : 0) | 6 << 3 | shadowPresent | size
            if access.contains(.execute) { value |= 0x4 }
            if writable { value |= self.writable }
            if mmuWritable { value |= eptMMUWritable }
            return SPTE(rawValue: value)
        }
        var value = frame << 12 | present | accessed | shadowPresent | UInt64(protectionKey) << 59 | size
        if access.contains(.user) { value |= user }
        if !access.contains(.execute) { value |= executeDisable }
        if writable { value |= Self.writable | dirty }
        if mmuWritable { value |= Self.mmuWritable }
        return SPTE(rawValue: value)
    }

    /// An MMIO spte for `gfn`, valid while the memslot generation is `generation`:
    /// a reserved-bit fault for x86 tables; for EPT, write+execute without read
    /// (an EPT misconfiguration).
    public static func mmio(gfn: UInt64, generation: UInt64, format: SPTEFormat = .x86) -> SPTE {
        let low: UInt64 = format == .ept ? 0x6 : present
        return SPTE(rawValue: low | mmioMarker | (gfn << 12 & addressMask) | (generation & mmioGenerationMask) << mmioGenerationShift)
    }

    public var mmioGFN: UInt64 { (rawValue & Self.addressMask) >> 12 }
    public var mmioGeneration: UInt64 { rawValue >> Self.mmioGenerationShift & Self.mmioGenerationMask }

    /// The rights a leaf in `format` grants (for EPT, readable as `user`).
    public func access(_ format: SPTEFormat) -> AccessRights {
        format == .ept ? AccessRights(eptEntry: rawValue) : access
    }

    /// The rights an x86-format leaf grants.
    public var access: AccessRights {
        var rights: AccessRights = []
        if rawValue & Self.writable != 0 { rights.insert(.write) }
        if rawValue & Self.user != 0 { rights.insert(.user) }
        if rawValue & Self.executeDisable == 0 { rights.insert(.execute) }
        return rights
    }

    public var description: String {
        if rawValue == 0 { return "empty" }
        if isMMIO { return "mmio gfn=\(mmioGFN.hex) gen=\(mmioGeneration)" }
        var flags: [String] = []
        if rawValue & Self.present != 0 { flags.append("P") }
        if rawValue & Self.writable != 0 { flags.append("W") }
        if rawValue & Self.user != 0 { flags.append("U") }
        if rawValue & Self.accessed != 0 { flags.append("A") }
        if rawValue & Self.dirty != 0 { flags.append("D") }
        if rawValue & Self.mmuWritable != 0 { flags.append("MW") }
        if rawValue & Self.executeDisable != 0 { flags.append("NX") }
        return "\((frame << 12).hex) \(flags.joined(separator: " "))"
    }
}
