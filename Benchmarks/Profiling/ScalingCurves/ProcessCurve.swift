import Foundation
import BenchmarkGuests
import GuestWorkloads

/// Cost and memory as processes grow: the guest kernel's `processes`
/// workload (as `shadowmmu workload processes --size N` runs it: N
/// processes faulting their working sets in, round-robin for four rounds,
/// a context switch — a CR3 load — between each two runs). The kernel checks
/// every access against the tables it wrote and stops at the first wrong
/// one; a run that stopped draws no point.
///
/// Two times per point: the whole run's divided by its context switches
/// (what `shadowmmu workload --roots` prints; boot and the first round's
/// faults included, so it means little for a handful of processes), and the
/// steady state: rounds 2 to 4, timed from the workload's progress reports,
/// divided by their time slices (a context switch, then 40 accesses of which
/// 2 touch a new page; with one process there is nothing to switch to).
struct ProcessCurve {
    var counts = [1, 2, 4, 10, 30, 100, 300, 1000]

    static let columns = [
        "mmu", "processes", "repetitions", "context_switches", "run_us_per_switch", "steady_us_per_slice", "exits_per_switch",
        "faults_fixed_per_switch", "host_table_kib", "shadow_pages", "guest_memory_mib", "run_seconds",
    ]

    func run(repetitions: Int, progress: (String) -> Void) -> CurveTable {
        var table = CurveTable(name: "processes", columns: Self.columns)
        var rows: [String: [String]] = [:]
        var seconds: [String: [Double]] = [:]
        var steady: [String: [Double]] = [:]
        for repetition in 0..<repetitions {
            for count in counts {
                for mmu in CurveMMU.allCases {
                    progress("processes: \(count) under \(mmu.rawValue) (\(repetition + 1)/\(repetitions))")
                    let (run, time, steadySlice) = measure(mmu: mmu, processes: count)
                    seconds["\(mmu.rawValue) \(count)", default: []].append(time / 1e9)
                    steady["\(mmu.rawValue) \(count)", default: []].append(steadySlice)
                    // The counters are the same in every repetition (same seed); only the time varies.
                    rows["\(mmu.rawValue) \(count)"] = rowFigures(run)
                }
            }
        }
        for mmu in CurveMMU.allCases {
            for count in counts {
                let key = "\(mmu.rawValue) \(count)"
                let runSeconds = median(seconds[key]!)
                let figures = rows[key]!
                let switches = Double(figures[0])!
                table.append(
                    [mmu.rawValue, cell(count), cell(repetitions), figures[0], cell(runSeconds * 1e6 / switches, digits: 2),
                     cell(median(steady[key]!) / 1e3, digits: 2)]
                        + figures.dropFirst() + [cell(runSeconds, digits: 3)])
            }
        }
        return table
    }

    /// context switches, exits and faults fixed per switch, host table KiB,
    /// shadow pages, guest memory.
    func rowFigures(_ run: WorkloadRun) -> [String] {
        let switches = Double(run.kernel.contextSwitches)
        return [
            cell(run.kernel.contextSwitches),
            cell(Double(run.statistics[.exits]) / switches, digits: 2),
            cell(Double(run.statistics[.shadowFaultsFixed]) / switches, digits: 2),
            cell(run.statistics[.hostTableFrames] * 4),
            cell(run.statistics[.shadowPages]),
            cell(Int(run.memorySize >> 20)),
        ]
    }

    /// One run of the workload, the wall-clock nanoseconds it took (the
    /// kernel's boot included, which is the same at every count), and the
    /// nanoseconds per time slice of its last three rounds.
    func measure(mmu: CurveMMU, processes: Int) -> (WorkloadRun, Double, Double) {
        let options = WorkloadOptions(mode: .level4, mmu: mmu.workloadConfiguration, size: .count(processes), record: false)
        if let problem = Workload.problem(.processes, options: options) { fatalError("processes \(processes): \(problem)") }
        var run: WorkloadRun?
        let clock = ContinuousClock()
        var firstRoundEnd: ContinuousClock.Instant?
        var lastRoundEnd: ContinuousClock.Instant?
        // Progress counts time slices: `processes` per round, four rounds.
        let progress: (Int, Int) -> Void = { done, total in
            if done == processes { firstRoundEnd = clock.now }
            if done == total { lastRoundEnd = clock.now }
        }
        let time = nanoseconds { run = Workload.run(.processes, options: options, progress: progress) }
        guard let run else { fatalError("the workload did not run") }
        if let failure = run.failure { fatalError("processes \(processes) under \(mmu.rawValue): \(failure)") }
        require(run.kernel.processesCreated == processes, "processes \(processes): \(run.kernel.processesCreated) created")
        require(run.kernel.contextSwitches >= processes, "processes \(processes): only \(run.kernel.contextSwitches) context switches")
        require(run.statistics[.exits] > 0, "processes \(processes) under \(mmu.rawValue): no exit counted (no hypervisor?)")
        guard let firstRoundEnd, let lastRoundEnd else { fatalError("processes \(processes): the workload reported no rounds") }
        let steady = lastRoundEnd - firstRoundEnd
        let steadyNanoseconds = Double(steady.components.seconds) * 1e9 + Double(steady.components.attoseconds) / 1e9
        return (run, time, steadyNanoseconds / Double(3 * processes))
    }
}
