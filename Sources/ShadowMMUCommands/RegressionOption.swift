import KVMCatalogue
import ArgumentParser
import ShadowMMU

/// `--regress NAME`: switch a known, fixed bug back on in the hypervisor's
/// MMU, to see what it did and that the checker catches it.
struct RegressionOption: ParsableArguments {
    @Option(
        name: .customLong("regress"),
        help: ArgumentHelp(
            "Switch a fixed bug back on (\(Regression.allCases.map(\.rawValue).joined(separator: ", "))); repeatable.",
            valueName: "name"))
    var names: [String] = []

    func validate() throws {
        for name in names where Regression(rawValue: name) == nil {
            throw ValidationError("unknown regression '\(name)'; expected one of: \(Regression.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    var regressions: Set<Regression> { Set(names.compactMap(Regression.init(rawValue:))) }
}
