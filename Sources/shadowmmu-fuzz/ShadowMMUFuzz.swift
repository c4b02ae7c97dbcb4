import ArgumentParser
import Foundation
import InputFuzzing

/// `shadowmmu-fuzz`: a long, seeded mutation run over the tool's inputs (the
/// scenario parser, `run`, the Lackey trace parser). Each mutant is written
/// to `pending.input` in the findings folder before it is checked, so that a
/// trap leaves the input that caused it behind (scripts/fuzz-inputs.sh keeps
/// it); an input that breaks a promise without trapping is saved as
/// `violation-SEED-N.input`. The tests replay the corpus and every finding.
@main
struct ShadowMMUFuzz: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shadowmmu-fuzz",
        abstract: "Mutate the input corpus and check the scenario parser, run and the Lackey parser on every mutant.")

    @Option(help: "Seed of the mutations.")
    var seed: UInt64 = 1

    @Option(help: "Mutants to check, 1 to 1000000000.")
    var iterations = 100_000

    @Option(help: "The corpus folder (read recursively).")
    var corpus = "Tests/Fuzz/corpus"

    @Option(help: "The folder of findings: replayed with the corpus, and where new ones go.")
    var findings = "Tests/Fuzz/crashes"

    func validate() throws {
        guard (1...1_000_000_000).contains(iterations) else { throw ValidationError("--iterations must be from 1 to 1000000000, found \(iterations)") }
    }

    func run() throws {
        var inputs = try Self.inputs(under: corpus) + Self.inputs(under: findings)
        guard !inputs.isEmpty else {
            FileHandle.standardError.write(Data("shadowmmu-fuzz: no inputs under \(corpus) or \(findings)\n".utf8))
            throw ExitCode(2)
        }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: findings, isDirectory: &isFolder), isFolder.boolValue else {
            FileHandle.standardError.write(Data("shadowmmu-fuzz: the findings folder \(findings) does not exist; create it or pass --findings FOLDER\n".utf8))
            throw ExitCode(2)
        }
        let seeds = inputs.count
        var mutator = InputMutator(seed: seed)
        let pending = URL(fileURLWithPath: findings).appendingPathComponent("pending.input")
        var violations = 0, parsed = 0
        let started = Date()
        for iteration in 0..<iterations {
            let base = inputs[mutator.pick(inputs.count)], other = inputs[mutator.pick(inputs.count)]
            let mutant = mutator.mutate(base, other: other)
            try Data(mutant).write(to: pending)
            let outcome = InputFuzzing.check(mutant, file: pending.path)
            if case .success = outcome.scenario {
                parsed += 1
                // Mutants that parse lead deeper into the runner: keep some.
                if inputs.count < seeds + 2000 { inputs.append(mutant) }
            }
            if !outcome.violations.isEmpty {
                violations += 1
                let saved = URL(fileURLWithPath: findings).appendingPathComponent("violation-\(seed)-\(iteration).input")
                try Data(mutant).write(to: saved)
                print("violation at iteration \(iteration), saved to \(saved.path): \(outcome)")
            }
            if iteration % 1_000 == 999 {
                print("\(iteration + 1) mutants, \(parsed) parsed as scenarios, \(violations) violations, \(Int(Date().timeIntervalSince(started))) s")
                fflush(nil)  // every stream: the progress reaches a pipe as it is made
            }
        }
        try? FileManager.default.removeItem(at: pending)
        print("seed \(seed): \(iterations) mutants, \(parsed) parsed as scenarios, \(violations) violations")
        if violations > 0 { throw ExitCode(1) }
    }

    /// The files under `folder`, sorted by path, without `pending.input`.
    static func inputs(under folder: String) throws -> [[UInt8]] {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
        var paths: [String] = []
        while let path = walker.nextObject() as? String {
            var isFolder: ObjCBool = false
            let full = folder + "/" + path
            if FileManager.default.fileExists(atPath: full, isDirectory: &isFolder), !isFolder.boolValue, !path.hasSuffix("pending.input") {
                paths.append(full)
            }
        }
        return try paths.sorted().map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
    }
}
