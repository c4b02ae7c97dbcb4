/// An Intel EPT paging-structure entry.
///
/// Bits 2:0 are read, write and execute (supervisor-execute with MBEC); an
/// entry is present when any of them (or user-execute with MBEC) is set.
/// Bits 5:3 are the memory type of a leaf, bit 6 ignore-PAT, bit 7 marks a
/// 1 GiB / 2 MiB page, bits 8 and 9 are the accessed and dirty flags (when
/// EPTP enables them), bit 10 user-execute (MBEC), bit 63 suppress-#VE.
public struct EPTEntry: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let read = EPTEntry(rawValue: 1 << 0)
    public static let write = EPTEntry(rawValue: 1 << 1)
    public static let execute = EPTEntry(rawValue: 1 << 2)
    public static let ignorePAT = EPTEntry(rawValue: 1 << 6)
    public static let pageSize = EPTEntry(rawValue: 1 << 7)
    public static let accessed = EPTEntry(rawValue: 1 << 8)
    public static let dirty = EPTEntry(rawValue: 1 << 9)
    public static let userExecute = EPTEntry(rawValue: 1 << 10)
    public static let suppressVE = EPTEntry(rawValue: 1 << 63)

    /// Memory types for bits 5:3.
    public enum MemoryType: UInt64, Sendable {
        case uncacheable = 0, writeCombining = 1, writeThrough = 4, writeProtected = 5, writeBack = 6
    }

    public func contains(_ flag: EPTEntry) -> Bool { rawValue & flag.rawValue == flag.rawValue }
    /// Any of R, W, X set (MBEC's user-execute is not modelled as presence).
    public var isPresent: Bool { rawValue & 0x7 != 0 }
    public var memoryTypeBits: UInt64 { rawValue >> 3 & 0x7 }
    public var memoryType: MemoryType? { MemoryType(rawValue: memoryTypeBits) }
    public func frameAddress(maxPhysicalAddressBits: Int) -> UInt64 {
        rawValue & bitRange(maxPhysicalAddressBits - 1, 12)
    }

    public init(address: UInt64, flags: EPTEntry, memoryType: MemoryType = .writeBack) {
        rawValue = address | flags.rawValue | memoryType.rawValue << 3
    }

    public var description: String {
        let names = flagNames(rawValue, [
            (1, "R"), (2, "W"), (4, "X"), (64, "IPAT"), (128, "PS"), (256, "A"), (512, "D"), (1024, "XU"), (1 << 63, "SVE"),
        ])
        return "\(rawValue.hex) [\(names) MT=\(memoryTypeBits)]"
    }
}
