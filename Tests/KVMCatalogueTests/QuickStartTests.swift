import KVMCatalogue
import Testing

// The quick start of the KVMCatalogue catalogue, compiled and run.
@Suite struct KVMCatalogueQuickStart {
    @Test func theZooWithItsFixes() {
        var printed: [String] = []
        func print(_ items: String...) { printed.append(items.joined(separator: " ")) }

        for regression in Regression.allCases {
            let fix = regression.metadata
            print(regression.rawValue, fix.commit ?? "-", fix.fixTitle)
        }
        let fixes: Set<Deviation> = [.eferNXForced]     // what `--fix efer-nx-forced` sets

        #expect(printed.count == Regression.allCases.count)
        #expect(printed.contains { $0.hasPrefix("link-without-sync 65855ed8b034 KVM: X86: Synchronize") }, "\(printed)")
        #expect(fixes.map(\.rawValue) == ["efer-nx-forced"])
    }
}
