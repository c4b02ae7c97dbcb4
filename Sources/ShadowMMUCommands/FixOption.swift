import KVMCatalogue
import ArgumentParser
import ShadowMMU

/// `--fix NAME`: make the hypervisor's MMU architectural where KVM is not
/// (a named deviation, docs/deviations.md); `--fix all` for every one.
struct FixOption: ParsableArguments {
    @Option(
        name: .customLong("fix"),
        help: ArgumentHelp(
            "Make a KVM deviation from the architecture architectural (\(Deviation.allCases.map(\.rawValue).joined(separator: ", ")), or all); repeatable.",
            valueName: "name"))
    var names: [String] = []

    func validate() throws {
        for name in names where name != "all" && Deviation(rawValue: name) == nil {
            throw ValidationError("unknown deviation '\(name)'; expected all or one of: \(Deviation.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    var fixes: Set<Deviation> {
        names.contains("all") ? Set(Deviation.allCases) : Set(names.compactMap(Deviation.init(rawValue:)))
    }
}
