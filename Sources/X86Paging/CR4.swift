/// Control register 4.
public struct CR4: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let vme = CR4(rawValue: 1 << 0)
    public static let pvi = CR4(rawValue: 1 << 1)
    public static let tsd = CR4(rawValue: 1 << 2)
    public static let de = CR4(rawValue: 1 << 3)
    /// Page-size extensions: 4 MiB pages in 32-bit paging.
    public static let pse = CR4(rawValue: 1 << 4)
    public static let pae = CR4(rawValue: 1 << 5)
    public static let mce = CR4(rawValue: 1 << 6)
    /// Global pages survive MOV CR3.
    public static let pge = CR4(rawValue: 1 << 7)
    public static let pce = CR4(rawValue: 1 << 8)
    public static let osfxsr = CR4(rawValue: 1 << 9)
    public static let osxmmexcpt = CR4(rawValue: 1 << 10)
    public static let umip = CR4(rawValue: 1 << 11)
    /// 57-bit linear addresses (5-level paging) in long mode.
    public static let la57 = CR4(rawValue: 1 << 12)
    public static let vmxe = CR4(rawValue: 1 << 13)
    public static let smxe = CR4(rawValue: 1 << 14)
    public static let fsgsbase = CR4(rawValue: 1 << 16)
    /// Process-context identifiers in CR3[11:0].
    public static let pcide = CR4(rawValue: 1 << 17)
    public static let osxsave = CR4(rawValue: 1 << 18)
    /// Supervisor-mode execution prevention.
    public static let smep = CR4(rawValue: 1 << 20)
    /// Supervisor-mode access prevention.
    public static let smap = CR4(rawValue: 1 << 21)
    /// Protection keys for user-mode pages (PKRU).
    public static let pke = CR4(rawValue: 1 << 22)
    /// Protection keys for supervisor-mode pages (IA32_PKRS).
    public static let pks = CR4(rawValue: 1 << 24)

    /// Every bit a MOV to CR4 may set on the modelled CPU; any other bit is #GP.
    static let definedBits: UInt64 = 0x0177_7fff
    /// Bits whose change reloads the PDPTE registers when PAE paging is in use.
    static let pdpteReloadBits: UInt64 = CR4.pge.rawValue | CR4.pse.rawValue | CR4.pae.rawValue | CR4.smep.rawValue
    /// Bits whose change flushes the whole TLB, global entries included.
    static let tlbFlushBits: UInt64 = CR4.pge.rawValue | CR4.pae.rawValue | CR4.pse.rawValue | CR4.smep.rawValue
        | CR4.smap.rawValue | CR4.pke.rawValue | CR4.pcide.rawValue | CR4.pks.rawValue

    public func contains(_ flag: CR4) -> Bool { rawValue & flag.rawValue != 0 }

    public var description: String {
        let names = flagNames(rawValue, [
            (1 << 4, "PSE"), (1 << 5, "PAE"), (1 << 7, "PGE"), (1 << 12, "LA57"), (1 << 17, "PCIDE"),
            (1 << 20, "SMEP"), (1 << 21, "SMAP"), (1 << 22, "PKE"), (1 << 24, "PKS"),
        ])
        return "\(rawValue.hex) [\(names)]"
    }
}
