/// The EPT pointer (VMCS field EPTP): where Intel's second-stage tables start.
public struct EPTPointer: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// An EPTP for a `levels`-level (4 or 5) table at `root`, write-back.
    public init(root: UInt64, levels: Int, accessedDirty: Bool) {
        rawValue = root | UInt64(levels - 1) << 3 | 6 | (accessedDirty ? 1 << 6 : 0)
    }

    /// Page-walk length: bits 5:3 plus one (4 or 5).
    public var levels: Int { Int(rawValue >> 3 & 7) + 1 }
    /// Bit 6: the processor sets EPT accessed and dirty flags.
    public var accessedDirtyEnabled: Bool { rawValue & 1 << 6 != 0 }
    public func root(maxPhysicalAddressBits: Int) -> UInt64 { rawValue & bitRange(maxPhysicalAddressBits - 1, 12) }

    public var description: String { "\(rawValue.hex) [\(levels)-level\(accessedDirtyEnabled ? " A/D" : "")]" }
}

/// What a second-stage (TDP) translation is for.
public struct NestedAccess: Hashable, Sendable {
    public var kind: MemoryAccess.Kind
    /// An access to a guest paging-structure entry (not the final address).
    /// A `.write` of one is the walk's update of an accessed or dirty flag.
    public var pagingStructure: Bool
    /// A load of the guest's PDPTE registers by a MOV to CR0/CR3/CR4 (PAE
    /// paging under EPT): a read of paging structures with no linear address,
    /// which EPT treats as a read even when its accessed/dirty flags are on
    /// (SDM Vol. 3C, "EPT Violations"; it sets no EPT dirty flag).
    public var pdpteLoad: Bool

    public init(_ kind: MemoryAccess.Kind, pagingStructure: Bool = false) {
        self.kind = kind
        self.pagingStructure = pagingStructure
        self.pdpteLoad = false
    }

    /// The read of a PDPTE register's entry at a MOV to a control register.
    public static let pdpteRegisterLoad: NestedAccess = {
        var access = NestedAccess(.read, pagingStructure: true)
        access.pdpteLoad = true
        return access
    }()

    /// Whether EPT judges this access as a read and a write: the update of a
    /// guest accessed/dirty flag (a locked read-modify-write), and with EPT
    /// accessed/dirty flags on, every access to guest paging structures but
    /// a PDPTE register load (SDM Vol. 3C "EPT Violations"; kvm-unit-tests
    /// `ept_access_test_paddr_*`).
    @inlinable
    public func isReadWriteUnderEPT(accessedDirtyEnabled: Bool) -> Bool {
        pagingStructure && !pdpteLoad && (kind == .write || accessedDirtyEnabled)
    }
}

/// A second-stage fault: an EPT violation or misconfiguration, or an AMD
/// nested page fault (#NPF), with the information the manuals define.
public struct NestedFault: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// EPT violation with its exit qualification.
        case eptViolation(qualification: UInt64)
        case eptMisconfiguration
        /// #NPF with EXITINFO1 (page-fault-style code, bit 32 final GPA,
        /// bit 33 guest paging-structure access).
        case nestedPageFault(exitInfo1: UInt64)
    }

    /// The guest-physical address accessed (the entry's address for a guest
    /// paging-structure access).
    public var guestPhysicalAddress: UInt64
    public var kind: Kind

    public init(guestPhysicalAddress: UInt64, kind: Kind) {
        self.guestPhysicalAddress = guestPhysicalAddress
        self.kind = kind
    }
}

/// Intel EPT: translates a guest-physical address through EPT tables
/// (SDM Vol. 3C "EPT"), deciding not-present (violation), misconfiguration
/// and permission violations, and setting EPT accessed/dirty flags when the
/// EPTP enables them.
public enum EPTWalker {
    /// Reserved bits of a present EPT entry at `level` (misconfiguration).
    @inlinable
    public static func reservedBits(level: Int, large: Bool, maxPhysicalAddressBits: Int) -> UInt64 {
        var reserved = bitRange(51, maxPhysicalAddressBits)
        if level >= 4 {
            reserved |= bitRange(7, 3)
        } else if large {
            reserved |= level == 3 ? bitRange(29, 12) : bitRange(20, 12)
        } else if level > 1 {
            reserved |= bitRange(6, 3)
        }
        return reserved
    }

    /// Translates `gpa` for `access`. The access to a guest paging-structure
    /// entry counts as a write when the EPTP enables A/D flags.
    @inlinable
    public static func translate<Memory: PhysicalMemory, Tracer: WalkTracer>(
        _ gpa: UInt64, _ access: NestedAccess, eptp: EPTPointer, memory: Memory, maxPhysicalAddressBits: Int,
        linearAddressValid: Bool = true, tracer: inout Tracer
    ) -> NestedTranslation {
        let addressMask = bitRange(maxPhysicalAddressBits - 1, 12)
        let readWrite = access.isReadWriteUnderEPT(accessedDirtyEnabled: eptp.accessedDirtyEnabled)
        // Bits 0-2 of the qualification, and the rights the access needs.
        let needed: UInt64 = if readWrite { 3 } else {
            switch access.kind {
            case .read: 1
            case .write: 2
            case .fetch: 4
            }
        }
        // The EPT dirty flag: a data write, and every judged-as-write access.
        let setsDirty = readWrite || (access.kind == .write && !access.pagingStructure)
        var qualification = needed
        if linearAddressValid, !access.pdpteLoad { qualification |= 1 << 7 | (access.pagingStructure ? 0 : 1 << 8) }
        var table = eptp.root(maxPhysicalAddressBits: maxPhysicalAddressBits)
        var level = eptp.levels
        // 4-level EPT translates 48 bits of guest-physical address, 5-level 57:
        // an address beyond is an EPT violation (no entry is read).
        if gpa >> UInt64(12 + 9 * level) != 0 {
            return .fault(NestedFault(guestPhysicalAddress: gpa, kind: .eptViolation(qualification: qualification)))
        }
        var rights: UInt64 = 7
        // The entries walked (for A/D updates): fixed storage, no allocation per walk.
        var pathAddresses = SIMD8<UInt64>(repeating: 0)
        var pathEntries = SIMD8<UInt64>(repeating: 0)
        var pathLength = 0
        while true {
            let shift = 12 + 9 * (level - 1)
            let entryAddress = table + (gpa >> UInt64(shift) & 511) * 8
            guard memory.contains(entryAddress, width: 8) else {
                // An EPT table outside memory reads as not present (as for the guest's own tables).
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: 0, entrySize: 8, decision: .outsideMemory))
                return .fault(NestedFault(guestPhysicalAddress: gpa, kind: .eptViolation(qualification: qualification)))
            }
            let entry = memory.load(entryAddress, width: 8)
            if entry & 7 == 0 {
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .notPresent))
                return .fault(NestedFault(guestPhysicalAddress: gpa, kind: .eptViolation(qualification: qualification)))
            }
            let large = entry & EPTEntry.pageSize.rawValue != 0 && (level == 2 || level == 3)
            let leaf = level == 1 || large
            var misconfigured = entry & reservedBits(level: level, large: large, maxPhysicalAddressBits: maxPhysicalAddressBits) != 0
            misconfigured = misconfigured || entry & 3 == 2 || entry & 7 == 4  // write without read; execute-only (unsupported)
            if leaf, entry >> 3 & 7 == 2 || entry >> 3 & 7 == 3 || entry >> 3 & 7 == 7 { misconfigured = true }
            if misconfigured {
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .reservedBits(entry)))
                return .fault(NestedFault(guestPhysicalAddress: gpa, kind: .eptMisconfiguration))
            }
            rights &= entry & 7
            pathAddresses[pathLength] = entryAddress
            pathEntries[pathLength] = entry
            pathLength += 1
            if leaf {
                let offsetMask: UInt64 = (1 << UInt64(shift)) - 1
                let base = entry & addressMask & ~offsetMask
                tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .page(base: base, shift: shift)))
                if rights & needed != needed {
                    return .fault(NestedFault(guestPhysicalAddress: gpa, kind: .eptViolation(qualification: qualification | rights << 3)))
                }
                if eptp.accessedDirtyEnabled {
                    for index in 0..<pathLength {
                        let address = pathAddresses[index], old = pathEntries[index]
                        var new = old | EPTEntry.accessed.rawValue
                        if index == pathLength - 1, setsDirty { new |= EPTEntry.dirty.rawValue }
                        if new != old {
                            memory.store(address, width: 8, new)
                            tracer.record(AccessedDirtyUpdate(address: address, entrySize: 8, old: old, new: new))
                        }
                    }
                }
                return .translated(hostPhysicalAddress: base | gpa & offsetMask, pageShift: shift, writable: rights & 2 != 0)
            }
            table = entry & addressMask
            tracer.record(WalkStep(level: level, source: .memory(entryAddress), entry: entry, entrySize: 8, decision: .nextTable(table)))
            level -= 1
        }
    }
}

/// The outcome of one second-stage translation.
public enum NestedTranslation: Hashable, Sendable {
    /// `writable`: the second stage also allows writes to this page.
    case translated(hostPhysicalAddress: UInt64, pageShift: Int, writable: Bool)
    case fault(NestedFault)
}
