import MMUEncoding
import X86Paging

/// What the hypervisor's walk of the guest's page tables found, per level
/// (KVM's `guest_walker`): the guest table at each level and the rights with
/// which it is reached — what the shadow pages for those tables are keyed by.
///
/// A `WalkTracer` over the reference walker, with fixed storage so that a
/// fault allocates nothing. Levels above the guest's top level (padding
/// levels of a taller root) keep table gfn 0 and full rights.
public struct GuestWalk: WalkTracer {
    /// Guest frame of the table holding the entry of each level (index = level).
    public var tableGFN = SIMD8<UInt64>(repeating: 0)
    /// The entry read at each level.
    public var entries = SIMD8<UInt64>(repeating: 0)
    /// Rights of the entry at each level (`AccessRights.rawValue`).
    var entryRights = SIMD8<UInt8>(repeating: AccessRights.all.rawValue)
    /// Level of the leaf (1 = 4 KiB page); 0 until the walk maps a page.
    public var leafLevel = 0
    var hasExecuteDisable = true
    /// The walked tables are EPT tables (an L1 hypervisor's, shadowed for L2).
    var eptEntries = false
    /// PAE paging: a level-3 entry is a PDPTE, which has no R/W, U/S or XD
    /// bits and restricts nothing (read from memory on every walk when the
    /// PDPTEs are not latched, as for an AMD L1's nested tables).
    var pdptes = false

    public init(guestMode: PagingMode) {
        hasExecuteDisable = guestMode != .bits32
        pdptes = guestMode == .pae
    }

    /// A walk of an L1 hypervisor's nested tables: EPT entries, or NPT
    /// entries in the format of L1's own paging mode.
    public init(nested: NestedPaging) {
        switch nested {
        case .ept: eptEntries = true
        case .npt(let l1):
            hasExecuteDisable = l1.mode != .bits32
            pdptes = l1.mode == .pae
        }
    }

    /// The rights one entry grants, in KVM's encoding; for EPT, readable
    /// stands where user would be (KVM's shadow EPT does the same).
    func rights(of entry: UInt64) -> AccessRights {
        eptEntries ? AccessRights(eptEntry: entry) : AccessRights(guestEntry: entry, hasExecuteDisable: hasExecuteDisable)
    }

    public mutating func record(_ step: WalkStep) {
        switch step.source {
        case .memory(let address): tableGFN[step.level] = address >> 12
        case .pdpteRegister: break
        }
        entries[step.level] = step.entry
        if case .pdpteRegister = step.source {
            entryRights[step.level] = AccessRights.all.rawValue
        } else if pdptes, step.level == 3 {
            entryRights[step.level] = AccessRights.all.rawValue
        } else {
            entryRights[step.level] = rights(of: step.entry).rawValue
        }
        switch step.decision {
        case .nextTable(let table): tableGFN[step.level - 1] = table >> 12
        case .page: leafLevel = step.level
        default: break
        }
    }

    public mutating func record(_ update: AccessedDirtyUpdate) {}
    public mutating func record(rights: EffectiveRights, violations: PermissionViolations) {}

    /// Rights with which the table at `level` is reached: the AND of the
    /// entries above it (KVM's `pt_access`).
    public func tableAccess(_ level: Int) -> AccessRights {
        var rights = AccessRights.all
        var above = level + 1
        while above <= 5 {
            rights.formIntersection(AccessRights(rawValue: entryRights[above]))
            above += 1
        }
        return rights
    }

    /// Rights of the whole translation: the AND over every level (KVM's `pte_access`).
    public var pageAccess: AccessRights { tableAccess(leafLevel - 1) }
}
