import MMUEncoding
import X86Paging

/// One 4 KiB table the hypervisor built (KVM's `kvm_mmu_page`): its 512
/// sptes live in host memory at `frame`; this object is the bookkeeping.
public final class ShadowPage {
    /// The guest frame shadowed (indirect), or the first gfn mapped (direct).
    /// Local pages have gfn 0.
    public let gfn: UInt64
    @exclusivity(unchecked) public internal(set) var role: PageRole
    /// Host frame holding the sptes.
    public let frame: UInt64
    /// Host addresses of the sptes that point to this page.
    @exclusivity(unchecked) public internal(set) var parentSPTEs = ParentSPTEs()
    /// How many vCPU roots (current or cached) hold this page.
    @exclusivity(unchecked) public internal(set) var rootCount = 0
    /// A leaf table the guest may write without trapping; resynchronized on
    /// INVLPG and TLB flushes.
    @exclusivity(unchecked) public internal(set) var unsync = false
    /// Number of set bits in `unsyncChildBitmap`.
    @exclusivity(unchecked) public internal(set) var unsyncChildren = 0
    /// Which entries lead (possibly indirectly) to an unsync page.
    @exclusivity(unchecked) var unsyncChildBitmap: [UInt64]
    /// Emulated guest writes since the page was last used for translation.
    @exclusivity(unchecked) var writeFloodingCount = 0
    /// The MMU generation the page was created in (fast zap).
    let generation: UInt64
    /// The vCPU owning a local page or a special root table; nil for pages in
    /// the hash.
    public let owner: Int?
    /// One of upstream KVM's special root tables (`pae_root`, `pml4_root`,
    /// `pml5_root`, under `RootDesign.special`): a raw per-vCPU table with no
    /// page header in KVM. The model keeps this object only to hold the
    /// table's frame and level; nothing treats it as a shadow page (not
    /// hashed, not local, no parent pointers, never zapped or synced).
    public let isSpecialRoot: Bool
    /// Creation order, unique per MMU: reclaim takes the oldest pages first,
    /// and the hardware tells one root from the next by it.
    public let serial: Int

    init(gfn: UInt64, role: PageRole, frame: UInt64, generation: UInt64, owner: Int?, serial: Int, isSpecialRoot: Bool = false) {
        self.isSpecialRoot = isSpecialRoot
        self.gfn = gfn
        self.role = role
        self.frame = frame
        self.generation = generation
        self.owner = owner
        self.serial = serial
        // Only tables above the leaves link children that can be unsync.
        unsyncChildBitmap = role.level > 1 ? [UInt64](repeating: 0, count: 8) : []
    }

    /// Local to one vCPU: not in the hash, never shared, never write-protected.
    public var isLocal: Bool { owner != nil && !isSpecialRoot }
    /// Shadows a guest table (KVM's `sp_has_gptes`).
    public var hasGuestPTEs: Bool { !role.direct && !role.passthrough && owner == nil }

    /// The entry of this table that `address` selects (KVM's `SPTE_INDEX`):
    /// the nine address bits above the 12 + 9 × (level − 1) the levels below
    /// translate.
    func index(of address: UInt64) -> Int { Int(address >> UInt64(12 + 9 * (role.level - 1)) & 511) }

    /// Host address of spte `index`.
    @inlinable
    public func spteAddress(_ index: Int) -> UInt64 { frame << 12 + UInt64(index) * 8 }

    /// The gfn a direct page's entry `index` maps: direct pages map a
    /// linear range of gfns.
    func directGFN(_ index: Int) -> UInt64 { gfn + UInt64(index) << UInt64(9 * (role.level - 1)) }

    func markUnsyncChild(_ index: Int) -> Bool {
        let word = index >> 6, bit = UInt64(1) << UInt64(index & 63)
        if unsyncChildBitmap[word] & bit != 0 { return false }
        unsyncChildBitmap[word] |= bit
        unsyncChildren += 1
        return true
    }

    func clearUnsyncChild(_ index: Int) {
        let word = index >> 6, bit = UInt64(1) << UInt64(index & 63)
        if !unsyncChildBitmap.isEmpty, unsyncChildBitmap[word] & bit != 0 {
            unsyncChildBitmap[word] &= ~bit
            unsyncChildren -= 1
        }
    }

    func hasUnsyncChild(_ index: Int) -> Bool {
        !unsyncChildBitmap.isEmpty && unsyncChildBitmap[index >> 6] & (UInt64(1) << UInt64(index & 63)) != 0
    }
}

/// The sptes that point to a shadow page (KVM's `parent_ptes`). Nearly
/// every page has exactly one parent, which is kept inline (as KVM keeps a
/// single entry in the list head itself); only further parents take an
/// array, so a page with one parent allocates nothing for them.
public struct ParentSPTEs: Sequence, Equatable, ExpressibleByArrayLiteral, CustomStringConvertible {
    /// No spte lives at this host address (they are below 2^52).
    private static let none = UInt64.max
    private var first = ParentSPTEs.none
    private var others: [UInt64] = []

    public init() {}
    public init(arrayLiteral sptes: UInt64...) { for sptep in sptes { append(sptep) } }

    public var isEmpty: Bool { first == Self.none }
    public var count: Int { isEmpty ? 0 : 1 + others.count }

    mutating func append(_ sptep: UInt64) {
        if first == Self.none { first = sptep } else { others.append(sptep) }
    }

    /// Removes one occurrence of `sptep`, if it is there.
    mutating func remove(_ sptep: UInt64) {
        if first == sptep {
            first = others.isEmpty ? Self.none : others.removeFirst()
        } else if let position = others.firstIndex(of: sptep) {
            others.remove(at: position)
        }
    }

    public struct Iterator: IteratorProtocol {
        let parents: ParentSPTEs
        var position = 0
        public mutating func next() -> UInt64? {
            defer { position += 1 }
            if position == 0 { return parents.isEmpty ? nil : parents.first }
            return position <= parents.others.count ? parents.others[position - 1] : nil
        }
    }

    public func makeIterator() -> Iterator { Iterator(parents: self) }
    public func contains(_ sptep: UInt64) -> Bool { !isEmpty && (first == sptep || others.contains(sptep)) }
    public static func == (a: ParentSPTEs, b: ParentSPTEs) -> Bool { Array(a) == Array(b) }
    public var description: String { Array(self).description }
}

/// The hash key of a shadow page.
struct PageKey: Hashable {
    var gfn: UInt64
    var role: PageRole
}
