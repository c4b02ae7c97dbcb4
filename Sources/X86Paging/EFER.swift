/// The extended feature enable register (MSR 0xC000_0080).
public struct EFER: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let sce = EFER(rawValue: 1 << 0)
    /// Long mode enable: long mode becomes active when paging is enabled.
    public static let lme = EFER(rawValue: 1 << 8)
    /// Long mode active (read-only: set by the processor).
    public static let lma = EFER(rawValue: 1 << 10)
    /// No-execute enable: makes bit 63 of 64-bit entries XD instead of reserved.
    public static let nxe = EFER(rawValue: 1 << 11)
    /// Secure virtual machine enable (AMD SVM).
    public static let svme = EFER(rawValue: 1 << 12)
    public static let ffxsr = EFER(rawValue: 1 << 14)

    /// Bits a WRMSR may set; any other bit is #GP.
    static let definedBits: UInt64 = 0x5d01

    public func contains(_ flag: EFER) -> Bool { rawValue & flag.rawValue != 0 }

    public var description: String {
        let names = flagNames(rawValue, [(1, "SCE"), (1 << 8, "LME"), (1 << 10, "LMA"), (1 << 11, "NXE"), (1 << 12, "SVME"), (1 << 14, "FFXSR")])
        return "\(rawValue.hex) [\(names)]"
    }
}
