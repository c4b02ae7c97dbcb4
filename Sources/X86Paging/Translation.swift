/// A successful translation of a linear address.
public struct Translation: Hashable, Sendable {
    /// The linear address walked (truncated to 32 bits outside long mode).
    public var linearAddress: UInt64
    /// The physical address of the accessed byte.
    public var physicalAddress: UInt64
    /// log2 of the page size: 12, 21 (2 MiB), 22 (4 MiB) or 30 (1 GiB).
    public var pageShift: Int
    public var rights: EffectiveRights
    /// The leaf's protection key (0 outside 4/5-level paging).
    public var protectionKey: Int
    /// The leaf is global (G=1 with CR4.PGE=1).
    public var global: Bool
    /// The leaf's dirty flag after the walk.
    public var dirty: Bool
    /// Level of the leaf entry (0 without paging).
    public var leafLevel: Int

    public init(linearAddress: UInt64, physicalAddress: UInt64, pageShift: Int, rights: EffectiveRights, protectionKey: Int, global: Bool, dirty: Bool, leafLevel: Int) {
        self.linearAddress = linearAddress
        self.physicalAddress = physicalAddress
        self.pageShift = pageShift
        self.rights = rights
        self.protectionKey = protectionKey
        self.global = global
        self.dirty = dirty
        self.leafLevel = leafLevel
    }

    /// Physical base of the page.
    public var pageBase: UInt64 { physicalAddress & ~((1 << UInt64(pageShift)) - 1) }
}

/// The outcome of one translation: architectural faults are values.
public enum WalkResult: Hashable, Sendable {
    case translated(Translation)
    /// A #PF with this error code (CR2 is the linear address).
    case pageFault(PageFaultErrorCode)
    /// A #GP: the address is not canonical.
    case generalProtection
}
