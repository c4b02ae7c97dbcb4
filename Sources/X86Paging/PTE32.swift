/// A 32-bit paging-structure entry (32-bit paging: PDE or PTE).
///
/// Bit 7 is PS in a PDE (a 4 MiB page when CR4.PSE=1) and PAT in a PTE.
/// A 4 MiB PDE carries physical-address bits 39:32 in bits 20:13 (PSE-36).
public struct PTE32: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let present = PTE32(rawValue: 1 << 0)
    public static let writable = PTE32(rawValue: 1 << 1)
    public static let user = PTE32(rawValue: 1 << 2)
    public static let writeThrough = PTE32(rawValue: 1 << 3)
    public static let cacheDisable = PTE32(rawValue: 1 << 4)
    public static let accessed = PTE32(rawValue: 1 << 5)
    public static let dirty = PTE32(rawValue: 1 << 6)
    public static let pageSize = PTE32(rawValue: 1 << 7)
    public static let global = PTE32(rawValue: 1 << 8)

    public func contains(_ flag: PTE32) -> Bool { rawValue & flag.rawValue == flag.rawValue }
    public var isPresent: Bool { contains(.present) }
    /// Bits 31:12: the next table, or the 4 KiB frame.
    public var frameAddress: UInt64 { UInt64(rawValue & 0xffff_f000) }
    /// The 4 MiB page's base address, PSE-36 bits included, limited to
    /// `min(maxPhysicalAddressBits, 40)` bits.
    public func largePageAddress(maxPhysicalAddressBits: Int) -> UInt64 {
        let low = UInt64(rawValue & 0xffc0_0000)
        let high = (UInt64(rawValue) >> 13 & 0xff) << 32
        return (low | high) & bitRange(min(maxPhysicalAddressBits, 40) - 1, 0)
    }

    public var description: String {
        let names = flagNames(UInt64(rawValue), [
            (1, "P"), (2, "RW"), (4, "US"), (8, "PWT"), (16, "PCD"), (32, "A"), (64, "D"), (128, "PS"), (256, "G"),
        ])
        return "\(UInt64(rawValue).hex) [\(names)]"
    }
}
