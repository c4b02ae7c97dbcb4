import KVMCatalogue
import ScenarioLanguage
import ScenarioRuntime
import ShadowMMU
/// Everything `shadowmmu report` shows of one run: each command with its
/// outcome and what it cost the hypervisor (counter deltas), the counters
/// after every command, and page-table pictures at chosen lines. Rendered as
/// one self-contained HTML page by `html`.
public struct ScenarioReport: Sendable {
    /// One executed command.
    public struct Step: Sendable, Equatable {
        /// Position among the scenario's commands (0-based): the x axis of the charts.
        public var index: Int
        public var line: Int
        public var vcpu: Int
        /// The command word (`read`, `cr3`, `host zap-all`, …).
        public var command: String
        /// What the command printed (an access's outcome, a peek's value), if anything.
        public var observation: Observation?
        /// The failed `expect` on this line, if it failed.
        public var expectationFailure: String?
        /// Counters that changed while the command ran, by name.
        public var deltas: [String: Int]
        /// Every counter after the command ran.
        public var counters: [String: Int]

        public func delta(_ name: String) -> Int { deltas[name] ?? 0 }
    }

    /// A table picture: the tables after line `line` ran.
    public struct Picture: Sendable {
        public var line: Int
        public var graph: PageTableGraph
    }

    public var fileName: String
    public var configuration: String
    /// The scenario file's lines, as numbered in diagnostics.
    public var sourceLines: [String]
    public var steps: [Step]
    /// The machine's counter names, in its stable order.
    public var counterNames: [String]
    public var pictures: [Picture]

    /// Counters named in the timeline: exits to the hypervisor, faults it
    /// fixed (shadow or TDP), and page faults delivered to the guest.
    public static let timelineCounters = ["exits", "shadow_faults_fixed", "guest_page_faults"]
    /// Counters drawn over time (those the machine has).
    public static let chartedCounters = ["exits", "shadow_pages", "guest_page_faults", "vm_entries"]

    /// Runs `scenario` (whose text is `source`) command by command and takes
    /// a picture after each line of `pictureLines` (after the last command
    /// when empty). Lines must be lines of the file (see `PageTableGraph.checkLine`).
    public static func run(
        _ scenario: Scenario, source: String, pictureLines: [Int] = [], maxEntriesPerNode: Int = PageTableGraph.defaultMaxEntriesPerNode,
        regressions: Set<Regression> = [], fixes: Set<Deviation> = []
    ) throws(ScenarioError) -> ScenarioReport {
        let sourceLines = Self.lines(of: source)
        for line in pictureLines { try PageTableGraph.checkLine(line, lineCount: sourceLines.count, fileName: scenario.fileName) }
        let runner = try ScenarioRunner(scenario, regressions: regressions, fixes: fixes)
        let machine = runner.machine
        var pending = pictureLines.isEmpty ? [sourceLines.count] : Array(Set(pictureLines)).sorted()
        var pictures: [Picture] = []
        func takePictures(before line: Int?) {
            while let next = pending.first, line.map({ next < $0 }) ?? true {
                pending.removeFirst()
                let graph = PageTableGraph(
                    machine: machine, scenario: scenario, title: "\(scenario.fileName) after line \(next) — \(scenario.mmu)",
                    maxEntriesPerNode: maxEntriesPerNode)
                pictures.append(Picture(line: next, graph: graph))
            }
        }
        var counters = Dictionary(machine.statistics.printed, uniquingKeysWith: { first, _ in first })
        let counterNames = machine.statistics.printed.map(\.name)
        var steps: [Step] = []
        var vcpu = 0
        for (index, command) in scenario.commands.enumerated() {
            takePictures(before: command.line)
            if case .selectVCPU(let selected) = command.action { vcpu = selected }
            var observation: Observation?
            var failure: String?
            runner.step(observe: { observation = $0 }, expectationFailed: { failure = "expected \($0.expected), got \($0.actual)" })
            let after = Dictionary(machine.statistics.printed, uniquingKeysWith: { first, _ in first })
            var deltas: [String: Int] = [:]
            for (name, value) in after where value != counters[name] { deltas[name] = value - (counters[name] ?? 0) }
            counters = after
            steps.append(Step(
                index: index, line: command.line, vcpu: vcpu, command: command.action.name, observation: observation,
                expectationFailure: failure, deltas: deltas, counters: after))
        }
        takePictures(before: nil)
        return ScenarioReport(
            fileName: scenario.fileName, configuration: "\(scenario.mmu)", sourceLines: sourceLines, steps: steps,
            counterNames: counterNames, pictures: pictures)
    }

    /// A file's lines as the parser numbers them (a final newline ends the last line).
    public static func lines(of text: String) -> [String] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0.hasSuffix("\r") ? $0.dropLast() : $0) }
        if text.hasSuffix("\n") { lines.removeLast() }
        return lines
    }

    /// A counter's value after the last command (0 when the machine has no such counter).
    public func total(_ name: String) -> Int { steps.last?.counters[name] ?? 0 }

    /// How many accesses ended each way.
    public var outcomeCounts: (ok: Int, fault: Int, gp: Int) {
        var counts = (ok: 0, fault: 0, gp: 0)
        for step in steps {
            guard case .access(_, let outcome) = step.observation?.event else { continue }
            switch outcome {
            case .ok: counts.ok += 1
            case .pageFault, .nestedFault: counts.fault += 1
            case .generalProtection: counts.gp += 1
            }
        }
        return counts
    }

    public var expectationFailures: Int { steps.filter { $0.expectationFailure != nil }.count }
}
