/// Control register 0.
public struct CR0: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let protectionEnable = CR0(rawValue: 1 << 0)
    public static let monitorCoprocessor = CR0(rawValue: 1 << 1)
    public static let emulation = CR0(rawValue: 1 << 2)
    public static let taskSwitched = CR0(rawValue: 1 << 3)
    public static let extensionType = CR0(rawValue: 1 << 4)
    public static let numericError = CR0(rawValue: 1 << 5)
    public static let writeProtect = CR0(rawValue: 1 << 16)
    public static let alignmentMask = CR0(rawValue: 1 << 18)
    public static let notWriteThrough = CR0(rawValue: 1 << 29)
    public static let cacheDisable = CR0(rawValue: 1 << 30)
    public static let paging = CR0(rawValue: 1 << 31)

    /// The value after RESET: CD, NW and ET set.
    public static let resetValue = CR0(rawValue: 0x6000_0010)
    /// Bits 31:0 that exist; a MOV that sets another of bits 31:0 ignores it.
    static let definedBits: UInt64 = 0xe005_003f
    /// Bits whose change reloads the PDPTE registers when PAE paging is in use.
    static let pdpteReloadBits: UInt64 = CR0.cacheDisable.rawValue | CR0.notWriteThrough.rawValue | CR0.paging.rawValue

    public func contains(_ flag: CR0) -> Bool { rawValue & flag.rawValue != 0 }
    public var pg: Bool { contains(.paging) }
    public var pe: Bool { contains(.protectionEnable) }
    public var wp: Bool { contains(.writeProtect) }

    public var description: String {
        let names = flagNames(rawValue, [
            (1, "PE"), (2, "MP"), (4, "EM"), (8, "TS"), (16, "ET"), (32, "NE"), (1 << 16, "WP"), (1 << 18, "AM"),
            (1 << 29, "NW"), (1 << 30, "CD"), (1 << 31, "PG"),
        ])
        return "\(rawValue.hex) [\(names)]"
    }
}
