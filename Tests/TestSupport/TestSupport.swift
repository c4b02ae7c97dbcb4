import Foundation
import ScenarioLanguage
import ScenarioRuntime

// What several test targets need: where the repository's files are, the
// contract's hexadecimal form, and a scenario run to its printed lines.
// Assertions stay in the test targets (this target does not import Testing).

/// The repository's root folder (this file is `Tests/TestSupport/TestSupport.swift`).
package let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A file or folder of the repository, by its path from the root (`examples/tour.scenario`).
package func repositoryFile(_ path: String) -> URL { repositoryRoot.appendingPathComponent(path) }

/// `0x…` in lowercase, as the contract prints numbers.
package func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// The JSON lines a scenario prints and its failed expectations, under its own
/// `mmu` line or under `mmu` when given.
package func printedRun(
    _ text: String, name: String = "test.scenario", mmu: MMUConfiguration? = nil
) throws -> (printed: [String], failures: [ExpectationFailure]) {
    var scenario = try ScenarioParser.parse(text, fileName: name)
    if let mmu { scenario.mmu = mmu }
    let runner = try ScenarioRunner(scenario)
    var printed: [String] = []
    var failures: [ExpectationFailure] = []
    runner.run(observe: { if $0.isPrinted { printed.append($0.json) } }, expectationFailed: { failures.append($0) })
    return (printed, failures)
}

/// The JSON lines a scenario prints under `mmu native`, and its failed expectations.
package func referenceRun(_ text: String, name: String = "test.scenario") throws -> (printed: [String], failures: [ExpectationFailure]) {
    try printedRun(text, name: name, mmu: .native)
}
