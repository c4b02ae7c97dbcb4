import KVMCatalogue
import ScenarioVerification
import ShadowMMU

/// Verdicts counted: passes, deviations by name, failures. An item (a
/// file's configuration for `check`, a guest for `fuzz`) fails if one of its
/// verdicts does, else is a deviation if one of them is, else passes.
struct VerdictTally {
    var passes = 0
    var failures = 0
    /// Items whose worst verdict is a deviation.
    var deviationCount = 0
    /// By deviation name; an item counts once for each deviation it shows
    /// (a set that had to be fixed together counts for each of its members).
    var deviations: [String: Int] = [:]
    /// Where each deviation name was first counted (a guest's name, a file).
    var firstSeen: [String: String] = [:]

    var total: Int { passes + failures + deviationCount }

    mutating func add(_ verdicts: [DifferentialChecker.Verdict], at place: String = "") {
        switch Self.worst(verdicts) {
        case .fail:
            failures += 1
        case .pass:
            passes += 1
        case .deviation(let set):
            deviationCount += 1
            for name in set.map(\.rawValue) {
                deviations[name, default: 0] += 1
                if firstSeen[name] == nil { firstSeen[name] = place }
            }
        }
    }

    /// An item's verdict: a failure if one of its verdicts is, else the
    /// deviations they showed together, else a pass.
    static func worst(_ verdicts: [DifferentialChecker.Verdict]) -> DifferentialChecker.Verdict {
        if verdicts.contains(.fail) { return .fail }
        var deviations: Set<Deviation> = []
        for case .deviation(let set) in verdicts { deviations.formUnion(set) }
        return deviations.isEmpty ? .pass : .deviation(deviations)
    }

    mutating func merge(_ other: VerdictTally) {
        passes += other.passes
        failures += other.failures
        deviationCount += other.deviationCount
        for (name, count) in other.deviations { deviations[name, default: 0] += count }
        for (name, place) in other.firstSeen where firstSeen[name] == nil { firstSeen[name] = place }
    }

    /// "efer-nx-forced×2, cr0-wp-emulation-smap×1", in `Deviation.allCases` order.
    var deviationList: String {
        func rank(_ name: String) -> Int {
            Deviation.allCases.firstIndex { $0.rawValue == name } ?? Deviation.allCases.count
        }
        return deviations.keys.sorted { (rank($0), $0) < (rank($1), $1) }.map { "\($0)×\(deviations[$0]!)" }.joined(separator: ", ")
    }

    /// "N deviation (NAME×k, …)" or "0 deviation".
    var deviationPart: String { deviations.isEmpty ? "0 deviation" : "\(deviationCount) deviation (\(deviationList))" }

    /// "N pass, N deviation (NAME×k, …), N FAIL".
    var summary: String { "\(passes) pass, \(deviationPart), \(failures) FAIL" }
}
