import ArgumentParser
import ScenarioLanguage
import ScenarioVerification

/// `--roots`: the root designs `check`, `fuzz` and `matrix` run every
/// configuration under (DESIGN.md §4): the series' local pages, upstream's
/// special roots, or the local pages filled at load.
struct RootsOption: ParsableArguments {
    enum Choice: String, ExpressibleByArgument, CaseIterable {
        case local, special
        case localEager = "local-eager"
        case both, all

        var designs: [RootsDesign] {
            switch self {
            case .local: [.local]
            case .special: [.special]
            case .localEager: [.localEager]
            case .both: [.local, .special]
            case .all: [.local, .localEager, .special]
            }
        }
    }

    @Option(
        help: ArgumentHelp(
            "Root designs to run each configuration under: local (the series), special (upstream before it), local-eager, both (local and special) or all three.",
            valueName: "design"))
    var roots: Choice = .both

    var designs: [RootsDesign] { roots.designs }

    /// Every configuration under the chosen designs.
    var configurations: [MMUConfiguration] { DifferentialChecker.configurations(roots: designs) }
}
