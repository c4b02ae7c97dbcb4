/// The paging mode a CPU is in, decided by CR0.PG, CR4.PAE, EFER.LMA and
/// CR4.LA57 (SDM Vol. 3A §4.1).
public enum PagingMode: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// CR0.PG=0: linear addresses are physical addresses (32 bits).
    case none = 0
    /// 32-bit paging: two levels of 4-byte entries, 4 MiB pages with CR4.PSE.
    case bits32 = 2
    /// PAE paging: four PDPTE registers, then two levels of 8-byte entries.
    case pae = 3
    /// 4-level paging (IA-32e).
    case level4 = 4
    /// 5-level paging (IA-32e with CR4.LA57).
    case level5 = 5

    public init(cr0: CR0, cr4: CR4, efer: EFER) {
        if !cr0.pg {
            self = .none
        } else if !cr4.contains(.pae) {
            self = .bits32
        } else if !efer.contains(.lma) {
            self = .pae
        } else {
            self = cr4.contains(.la57) ? .level5 : .level4
        }
    }

    /// Number of paging-structure levels (KVM's `role.level` of a root for this
    /// guest): 0, 2, 3, 4 or 5.
    public var levels: Int { rawValue }

    /// Entry size in bytes.
    public var entrySize: Int { self == .bits32 ? 4 : 8 }

    /// Whether linear addresses are 64-bit and must be canonical.
    public var isLongMode: Bool { self == .level4 || self == .level5 }

    /// Width of a linear address: 32, 48 or 57 bits.
    public var linearAddressBits: Int {
        switch self {
        case .none, .bits32, .pae: 32
        case .level4: 48
        case .level5: 57
        }
    }

    /// Whether `address` is canonical in this mode. In 32-bit modes every
    /// address is usable: it is truncated to 32 bits.
    @inlinable
    public func isCanonical(_ address: UInt64) -> Bool {
        switch self {
        case .level4: return UInt64(bitPattern: Int64(bitPattern: address << 16) >> 16) == address
        case .level5: return UInt64(bitPattern: Int64(bitPattern: address << 7) >> 7) == address
        default: return true
        }
    }

    public var description: String {
        switch self {
        case .none: "nonpaging"
        case .bits32: "32-bit"
        case .pae: "PAE"
        case .level4: "4-level"
        case .level5: "5-level"
        }
    }
}
