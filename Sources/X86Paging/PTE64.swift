/// A 64-bit paging-structure entry: PAE paging, 4-level and 5-level paging
/// (PDPTE, PDE, PTE, PML4E, PML5E). Also the format of shadow page-table
/// entries (sptes) that KVM builds for a guest.
///
/// Bit 7 is PS in a PDPTE/PDE (1 GiB / 2 MiB page) and PAT in a PTE; bit 12 is
/// PAT in a large-page entry. Bits 62:59 hold the protection key of a leaf
/// (4/5-level paging with CR4.PKE). Bit 63 is XD (execute-disable) when
/// EFER.NXE=1, reserved otherwise.
public struct PTE64: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let present = PTE64(rawValue: 1 << 0)
    public static let writable = PTE64(rawValue: 1 << 1)
    public static let user = PTE64(rawValue: 1 << 2)
    public static let writeThrough = PTE64(rawValue: 1 << 3)
    public static let cacheDisable = PTE64(rawValue: 1 << 4)
    public static let accessed = PTE64(rawValue: 1 << 5)
    public static let dirty = PTE64(rawValue: 1 << 6)
    public static let pageSize = PTE64(rawValue: 1 << 7)
    public static let global = PTE64(rawValue: 1 << 8)
    public static let executeDisable = PTE64(rawValue: 1 << 63)

    public func contains(_ flag: PTE64) -> Bool { rawValue & flag.rawValue == flag.rawValue }
    public var isPresent: Bool { contains(.present) }
    /// Bits 62:59.
    public var protectionKey: Int { Int(rawValue >> 59 & 0xf) }
    /// Bits (M-1):12.
    public func frameAddress(maxPhysicalAddressBits: Int) -> UInt64 {
        rawValue & bitRange(maxPhysicalAddressBits - 1, 12)
    }

    public var description: String {
        let names = flagNames(rawValue, [
            (1, "P"), (2, "RW"), (4, "US"), (8, "PWT"), (16, "PCD"), (32, "A"), (64, "D"), (128, "PS"), (256, "G"),
            (1 << 63, "XD"),
        ])
        let key = protectionKey != 0 ? " PKEY=\(protectionKey)" : ""
        return "\(rawValue.hex) [\(names)\(key)]"
    }
}
