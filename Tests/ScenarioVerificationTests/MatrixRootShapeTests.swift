import ScenarioLanguage
import ScenarioVerification
import Testing

/// The root shape `shadowmmu matrix` prints, row by row against DESIGN.md §4's
/// table (docs/DESIGN.md): the root's levels and how many of them are local
/// pages — upstream's special tables under `roots=special` — or a
/// passthrough page. Short, varied guests end in a CR3 load or a nested
/// entry often; the shape must still be the root's when complete.
@Suite struct MatrixRootShape {
    /// Root levels, local (or special) levels and passthrough that §4 gives
    /// `configuration` for the matrix guest `guest`.
    static func expected(_ configuration: MMUConfiguration, guest: String) -> (levels: Int, local: Int, passthrough: Bool) {
        let smallGuest = ["nonpaging", "32-bit", "32-bit-pse", "pae"]
        switch configuration {
        case .native:
            return (0, 0, false)
        case .shadow:
            if smallGuest.contains(guest) { return (3, 1, false) }                  // rows 1-3
            return (guest == "5-level" ? 5 : 4, 0, false)                           // row 4
        case .tdp(let format, let levels, let host, _):
            guard guest.hasPrefix("L1 ") else { return host == .pae32 ? (3, 1, false) : (levels, 0, false) }  // rows 6, 5
            let l1 = guest.dropFirst(3).split(separator: " ").first.map(String.init) ?? ""
            switch l1 {
            case "npt-32-bit", "npt-pae": return (levels, levels - 2, false)       // rows 7-10
            case "npt-4-level": return levels == 5 ? (5, 0, true) : (4, 0, false)  // rows 11, 12
            case "ept-4-level": return (4, 0, false)                               // row 12: EPT keeps L1's levels
            default: return (format == .ept ? 5 : levels, 0, false)                // row 12
            }
        }
    }

    @Test(arguments: [(UInt64(2), 50), (3, 120)])  // both ended with roots not yet rebuilt before the fix
    func everyRowHasItsDesignShape(seed: UInt64, length: Int) throws {
        let configurations = DifferentialChecker.configurations(roots: [.local, .localEager, .special])
        let rows = try ConfigurationMatrix.run(seed: seed, length: length, configurations: configurations)
        #expect(rows.count > 50)
        for row in rows {
            let want = Self.expected(row.configuration, guest: row.guest)
            let what = "\(row.configuration) \(row.guest) (seed \(seed), length \(length)): \(row.rootShape)"
            #expect(row.rootLevels == want.levels && row.localLevels == want.local && row.passthrough == want.passthrough, "\(what)")
            #expect(row.specialRoot == (row.configuration.roots == .special && want.local > 0), "\(what)")
        }
    }
}
