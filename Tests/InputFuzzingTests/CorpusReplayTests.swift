import Foundation
import InputFuzzing
import Testing

/// The fuzz corpus and every finding, replayed: each input must parse (and
/// run) or be refused with a located diagnostic, and never break a promise.
/// A trap here is the bug the finding recorded coming back. The long run is
/// scripts/fuzz-inputs.sh; these tests only replay (docs/fuzzing.md).
@Suite struct FuzzCorpusReplay {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz")

    /// Every committed input, by path relative to Tests/Fuzz, sorted.
    static let inputs: [String] = {
        guard let walker = FileManager.default.enumerator(atPath: root.path) else { return [] }
        var paths: [String] = []
        while let path = walker.nextObject() as? String {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: root.appendingPathComponent(path).path, isDirectory: &isFolder),
               !isFolder.boolValue, !path.hasSuffix(".md"), !path.hasSuffix("pending.input") {
                paths.append(path)
            }
        }
        return paths.sorted()
    }()

    @Test func theCorpusHoldsScenariosAndTraces() {
        #expect(Self.inputs.contains { $0.hasPrefix("corpus/scenario/") })
        #expect(Self.inputs.contains { $0.hasPrefix("corpus/lackey/") })
    }

    @Test(arguments: inputs)
    func anInputParsesOrIsRefusedWithALocatedDiagnostic(_ path: String) throws {
        let file = Self.root.appendingPathComponent(path)
        let bytes = Array(try Data(contentsOf: file))
        let outcome = InputFuzzing.check(bytes, file: file.path)
        #expect(outcome.violations.isEmpty, "\(path): \(outcome)")
        if path.hasPrefix("corpus/scenario/") {
            #expect((try? outcome.scenario.get()) != nil, "a corpus scenario runs: \(path): \(outcome)")
        }
        if path.hasPrefix("corpus/lackey/") {
            #expect((try? outcome.trace.get()) != nil, "a corpus trace parses: \(path): \(outcome)")
        }
    }

    @Test func theMutatorIsDeterministic() {
        let input = Array("machine memory=64M\nmmu shadow\nread 0x1000\n".utf8)
        var first = InputMutator(seed: 7), second = InputMutator(seed: 7), other = InputMutator(seed: 8)
        let a = (0..<50).map { _ in first.mutate(input, other: input) }
        let b = (0..<50).map { _ in second.mutate(input, other: input) }
        let c = (0..<50).map { _ in other.mutate(input, other: input) }
        #expect(a == b)
        #expect(a != c)
    }

    /// The refusals the oracle checks are real ones: a diagnostic that
    /// points past the input would be reported.
    @Test func theOracleSeesARefusalAndAnAcceptance() {
        let refused = InputFuzzing.check(Array("machine memory=64T\n".utf8))
        guard case .failure(let error) = refused.scenario else {
            Issue.record("memory=64T parsed")
            return
        }
        #expect(error.line == 1 && error.column == 16)
        let accepted = InputFuzzing.check(Array("==1== Lackey\nI  00401000,4\n L 7ff000398,8\n".utf8))
        #expect((try? accepted.trace.get()) == 2)
        #expect(refused.violations.isEmpty && accepted.violations.isEmpty)
    }
}
