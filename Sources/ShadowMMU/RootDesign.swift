/// How the MMU builds the tables of a root that have no guest table of the
/// same shape behind them: the PAE root of a guest with at most three levels
/// (or of a 3-level direct map), and the padding levels above a 32-bit or PAE
/// L1's nested tables on a 4- or 5-level host (DESIGN.md §4, rows 1-3 and
/// 6-10). Every other root is an ordinary hashed shadow page under all three.
public enum RootDesign: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    /// The series ("local shadow pages"): those tables are shadow pages local
    /// to the vCPU, created at root load and freed at unload; their entries
    /// are filled on demand, one fault per GiB, and a nested fault re-points a
    /// level-3 entry whose nPDPTE changed (P9). The default.
    case local
    /// The same local pages, with every entry filled at root load, as upstream
    /// does: what the series' "one-off" pages cost, apart from its on-demand
    /// entries (the optimization the cover letter leaves for later).
    case localEager = "local-eager"
    /// Upstream KVM just before the series (v5.18): raw per-vCPU `pae_root`,
    /// `pml4_root` and `pml5_root` tables without page headers; the four PAE
    /// entries filled at root load, each child a root of its own
    /// (`root_count`, no parent pointer); L1's nPDPTEs read once, at load —
    /// the stale-nPDPTE bug (`Deviation.nptPDPTEsReadAtRootLoad`).
    case special

    public var description: String { rawValue }
}
