import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime

/// The fuzz target over the tool's inputs: any bytes, given to the scenario
/// parser (and, when they parse, run under their own `mmu` line) and to the
/// Lackey trace parser. Each must either accept the input or refuse it with a
/// located diagnostic — never trap, never report a place outside the input.
///
/// `check` is the one oracle: the corpus replay test calls it on every
/// committed input, and `shadowmmu-fuzz` on every input it mutates.
public enum InputFuzzing {
    /// What the tools made of one input.
    public struct Outcome: Sendable, CustomStringConvertible {
        /// The scenario's observable lines when it parsed and ran, or its diagnostic.
        public var scenario: Result<Int, ScenarioError>
        /// The trace's record count, or its diagnostic.
        public var trace: Result<Int, ScenarioError>
        /// Broken promises: a diagnostic outside the input, a printed scenario
        /// that does not read back as the same scenario. Empty when all held.
        public var violations: [String]

        public var description: String {
            func text(_ result: Result<Int, ScenarioError>, _ unit: String) -> String {
                switch result {
                case .success(let count): "\(count) \(unit)"
                case .failure(let error): "refused: \(error)"
                }
            }
            return "scenario \(text(scenario, "observations")); trace \(text(trace, "records"))"
                + (violations.isEmpty ? "" : "; VIOLATED: " + violations.joined(separator: "; "))
        }
    }

    /// The file name diagnostics carry.
    static let fileName = "input"

    /// Checks `bytes`. With `file`, a file already holding exactly `bytes`,
    /// the trace is also streamed from it by `LackeyTraceReader`, as
    /// `workload --trace` reads one, and must give the same records or the
    /// same diagnostic as the in-memory parser.
    public static func check(_ bytes: [UInt8], file: String? = nil) -> Outcome {
        // Invalid UTF-8 becomes U+FFFD, as `ScenarioFile.load` reads a file.
        let text = String(decoding: bytes, as: UTF8.self)
        // Lines as the parsers count them: at each LF scalar ("\r\n" is one
        // Character, so splitting the String at "\n" would miss it).
        let lineCount = text.unicodeScalars.reduce(1) { $1 == "\n" ? $0 + 1 : $0 }
        var violations: [String] = []
        func checkLocation(_ error: ScenarioError, _ what: String) {
            if error.file != fileName { violations.append("\(what) diagnostic names file '\(error.file)'") }
            if error.line < 1 || error.line > max(lineCount, 1) { violations.append("\(what) diagnostic at line \(error.line) of \(lineCount)") }
            if error.column < 1 { violations.append("\(what) diagnostic at column \(error.column)") }
            if error.message.isEmpty { violations.append("\(what) diagnostic without a message") }
        }

        let scenario: Result<Int, ScenarioError>
        do {
            let parsed = try ScenarioParser.parse(text, fileName: fileName)
            violations += roundTripProblems(parsed)
            let runner = try ScenarioRunner(parsed)
            var observations = 0
            runner.run(observe: { observation in
                if observation.isPrinted {
                    observations += 1
                    _ = observation.json
                }
            })
            scenario = .success(observations)
        } catch {
            checkLocation(error, "scenario")
            scenario = .failure(error)
        }

        let trace: Result<Int, ScenarioError>
        var records: [LackeyTrace.Record] = []
        do {
            records = try LackeyTrace.parse(text, fileName: fileName).records
            trace = .success(records.count)
        } catch {
            checkLocation(error, "trace")
            trace = .failure(error)
        }
        if let file { violations += streamingProblems(file, records: records, trace: trace) }
        return Outcome(scenario: scenario, trace: trace, violations: violations)
    }

    /// Where the streaming reader of `file` departs from the in-memory parse.
    static func streamingProblems(_ file: String, records: [LackeyTrace.Record], trace: Result<Int, ScenarioError>) -> [String] {
        var streamed: [LackeyTrace.Record] = []
        var streamError: ScenarioError?
        do {
            let reader = try LackeyTraceReader(path: file)
            while let record = try reader.next() { streamed.append(record) }
        } catch {
            streamError = ScenarioError(file: fileName, line: error.line, column: error.column, message: error.message)
        }
        switch trace {
        case .success where streamError != nil:
            return ["the streaming reader refuses what the parser accepts: \(streamError!)"]
        case .success where streamed != records:
            return ["the streaming reader reads \(streamed.count) records, the parser \(records.count)"]
        case .failure(let error) where streamError != error:
            return ["the streaming reader says \(streamError.map { "\($0)" } ?? "nothing is wrong"), the parser \(error)"]
        default:
            return []
        }
    }

    /// The printer's text of a parsed scenario must parse to the same machine,
    /// MMU and actions (one printer, one parser: habit 15 of STYLE.md).
    static func roundTripProblems(_ scenario: Scenario) -> [String] {
        let printed = scenario.scenarioText
        let again: Scenario
        do {
            again = try ScenarioParser.parse(printed, fileName: fileName)
        } catch {
            return ["the printed scenario does not parse: \(error)"]
        }
        var problems: [String] = []
        if again.machine != scenario.machine { problems.append("printed machine reads back as \(again.machine.scenarioText)") }
        if again.mmu != scenario.mmu { problems.append("printed mmu reads back as \(again.mmu.scenarioText)") }
        let actions = scenario.commands.map(\.action), actionsAgain = again.commands.map(\.action)
        if actions != actionsAgain {
            let index = zip(actions, actionsAgain).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(actions.count, actionsAgain.count)
            problems.append("printed command \(index + 1) reads back differently (\(printed.split(separator: "\n").dropFirst(2).dropFirst(index).first ?? "missing"))")
        }
        return problems
    }
}
