import KVMCatalogue
import Testing

/// The catalogue's names are what `--fix` and `--regress` accept and what the
/// scenarios under Tests/ShadowMMUTests are named after; each historical bug
/// says which fix it undoes.
@Suite("The catalogue of deviations and historical bugs")
struct CatalogueTests {
    static func isKebabCase(_ name: String) -> Bool {
        !name.isEmpty && name.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "-" } && !name.hasPrefix("-") && !name.hasSuffix("-")
    }

    @Test("every deviation and regression name is lower-case kebab-case")
    func namesAreKebabCase() {
        for name in Deviation.allCases.map(\.rawValue) + Regression.allCases.map(\.rawValue) {
            #expect(Self.isKebabCase(name), "\(name)")
        }
    }

    @Test("every regression names the fix it undoes, in a sentence, with an abbreviated commit when known")
    func regressionMetadata() {
        for regression in Regression.allCases {
            let metadata = regression.metadata
            #expect(!metadata.fixTitle.isEmpty && !metadata.summary.isEmpty, "\(regression.rawValue)")
            if let commit = metadata.commit {
                #expect(commit.count == 12 && commit.allSatisfy(\.isHexDigit), "\(regression.rawValue): commit \(commit)")
            }
        }
    }
}
