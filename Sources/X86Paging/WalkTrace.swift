/// One paging-structure entry a walk used, and what the walk decided from it.
public struct WalkStep: Hashable, Sendable {
    /// Where the entry came from.
    public enum Source: Hashable, Sendable {
        /// Read from memory at this physical address (a memory reference).
        case memory(UInt64)
        /// A PAE PDPTE register (no memory reference).
        case pdpteRegister(Int)
    }

    public enum Decision: Hashable, Sendable {
        /// The entry points to the next table, at this physical address.
        case nextTable(UInt64)
        /// The entry maps a page of `1 << shift` bytes at `base`.
        case page(base: UInt64, shift: Int)
        /// P=0: a not-present page fault.
        case notPresent
        /// These reserved bits are set: a reserved-bit page fault.
        case reservedBits(UInt64)
        /// The entry would be read from outside guest memory: treated as not present.
        case outsideMemory
    }

    /// 5 = PML5E … 1 = PTE; PAE PDPTEs are level 3, 32-bit PDEs level 2.
    public var level: Int
    public var source: Source
    public var entry: UInt64
    /// 4 or 8 bytes.
    public var entrySize: Int
    public var decision: Decision

    public init(level: Int, source: Source, entry: UInt64, entrySize: Int, decision: Decision) {
        self.level = level
        self.source = source
        self.entry = entry
        self.entrySize = entrySize
        self.decision = decision
    }
}

/// An accessed/dirty-flag write the walk made to a paging-structure entry.
public struct AccessedDirtyUpdate: Hashable, Sendable {
    public var address: UInt64
    public var entrySize: Int
    public var old: UInt64
    public var new: UInt64

    public init(address: UInt64, entrySize: Int, old: UInt64, new: UInt64) {
        self.address = address
        self.entrySize = entrySize
        self.old = old
        self.new = new
    }
}

/// Receives what a walk does, step by step. The walkers are generic over it so
/// that an untraced walk (`NoWalkTrace`) compiles to nothing extra.
public protocol WalkTracer {
    mutating func record(_ step: WalkStep)
    mutating func record(_ update: AccessedDirtyUpdate)
    /// The permission check after a complete walk: the rights the entries
    /// granted and the rules the access broke (empty when it may proceed).
    mutating func record(rights: EffectiveRights, violations: PermissionViolations)
}

/// The tracer of hot paths: records nothing.
public struct NoWalkTrace: WalkTracer {
    @inlinable public init() {}
    @inlinable @inline(__always) public mutating func record(_ step: WalkStep) {}
    @inlinable @inline(__always) public mutating func record(_ update: AccessedDirtyUpdate) {}
    @inlinable @inline(__always) public mutating func record(rights: EffectiveRights, violations: PermissionViolations) {}
}

/// A full record of one walk: every entry read, in order, and every A/D write.
public struct WalkTrace: WalkTracer, Hashable, Sendable {
    public var steps: [WalkStep] = []
    public var updates: [AccessedDirtyUpdate] = []
    /// Set when the walk reached a leaf and checked permissions.
    public var rights: EffectiveRights?
    public var violations: PermissionViolations?

    public init() {}

    public mutating func record(rights: EffectiveRights, violations: PermissionViolations) {
        self.rights = rights
        self.violations = violations
    }

    public mutating func record(_ step: WalkStep) { steps.append(step) }
    public mutating func record(_ update: AccessedDirtyUpdate) { updates.append(update) }

    /// Physical addresses read, in order (PDPTE registers are not memory references).
    public var memoryReferences: [UInt64] {
        steps.compactMap { if case .memory(let address) = $0.source { address } else { nil } }
    }
}
