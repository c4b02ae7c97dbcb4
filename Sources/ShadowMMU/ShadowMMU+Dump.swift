import MMUEncoding
import X86Paging

/// A snapshot of one shadow page and what its present entries lead to, for
/// `--dump-shadow` and drawings.
public struct ShadowTableDump: Sendable {
    public enum Entry: Sendable {
        case table(ShadowTableDump)
        /// A leaf mapping guest frame `gfn` (host frame `hostFrame`).
        case leaf(spte: UInt64, gfn: UInt64, hostFrame: UInt64)
        case mmio(spte: UInt64, gfn: UInt64)
    }

    public var level: Int
    public var local: Bool
    /// One of upstream's special root tables (`pae_root`, `pml4_root`,
    /// `pml5_root`; `RootDesign.special`): no shadow page behind it.
    public var special: Bool
    public var direct: Bool
    public var gfn: UInt64
    public var quadrant: Int
    public var role: PageRole
    public var unsync: Bool
    public var hostFrame: UInt64
    /// Present entries, by index.
    public var entries: [(index: Int, entry: Entry)]
}

extension ShadowMMU {
    /// The current root of `vcpu` as a tree, or nil before the first entry.
    public func dumpRoot(vcpu: Int) -> ShadowTableDump? {
        contexts[vcpu].root.map(dump)
    }

    /// The root of `vcpu`'s nested context (the shadow of its L1's nested tables).
    public func dumpNestedRoot(vcpu: Int) -> ShadowTableDump? {
        nestedContexts[vcpu]?.root.map(dump)
    }

    func dump(_ page: ShadowPage) -> ShadowTableDump {
        var entries: [(index: Int, entry: ShadowTableDump.Entry)] = []
        for index in 0..<512 {
            let spte = SPTE(rawValue: host.entry(page.spteAddress(index)))
            if spte.isMMIO {
                entries.append((index, .mmio(spte: spte.rawValue, gfn: spte.mmioGFN)))
            } else if spte.isShadowPresent {
                if page.role.level > 1, let child = child(of: spte) {
                    entries.append((index, .table(dump(child))))
                } else {
                    entries.append((index, .leaf(spte: spte.rawValue, gfn: mappedGFN(page, index) ?? 0, hostFrame: spte.frame)))
                }
            }
        }
        return ShadowTableDump(
            level: page.role.level, local: page.isLocal, special: page.isSpecialRoot, direct: page.role.direct, gfn: page.gfn,
            quadrant: page.role.quadrant, role: page.role, unsync: page.unsync, hostFrame: page.frame, entries: entries)
    }
}
