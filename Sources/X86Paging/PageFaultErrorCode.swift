/// The error code a #PF pushes (SDM Vol. 3A §4.7).
public struct PageFaultErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// 0: not-present page; 1: protection violation or reserved bit.
    public static let present = PageFaultErrorCode(rawValue: 1 << 0)
    public static let write = PageFaultErrorCode(rawValue: 1 << 1)
    /// The access was a user-mode access (CPL 3, not implicit).
    public static let user = PageFaultErrorCode(rawValue: 1 << 2)
    public static let reservedBit = PageFaultErrorCode(rawValue: 1 << 3)
    /// Instruction fetch (reported only with SMEP or PAE+NXE).
    public static let instructionFetch = PageFaultErrorCode(rawValue: 1 << 4)
    public static let protectionKey = PageFaultErrorCode(rawValue: 1 << 5)

    public func contains(_ flag: PageFaultErrorCode) -> Bool { rawValue & flag.rawValue != 0 }
    public mutating func insert(_ flag: PageFaultErrorCode) { rawValue |= flag.rawValue }

    public var description: String {
        let names = flagNames(rawValue, [(1, "P"), (2, "W"), (4, "U"), (8, "RSVD"), (16, "I/D"), (32, "PK")])
        return "\(rawValue.hex) [\(names.isEmpty ? "not-present read" : names)]"
    }
}
