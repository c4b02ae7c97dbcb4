import Benchmark
import BenchmarkGuests
import CTraceReplay
import Foundation
import GuestWorkloads

/// Trace replay against a plain-C replayer doing the same job over the same
/// file (issue 14): a generated TLB-friendly Lackey trace (a loop striding
/// 64 bytes over 16 MiB twice, 1.8 M records, about 26 MB) replayed by
/// `CTraceReplay` (streaming parser, demand-mapped 4-level tables, a
/// 1024-entry TLB, a full walk with checks and A/D updates per miss) and by
/// `TraceReplay.replayFile` under `mmu native` and `mmu shadow` (the same,
/// plus the guest kernel's check of every result against its own tables,
/// and two passes over the file: survey, then replay), keeping no scenario
/// text, as the command does without `--emit` (`record: false`).
/// Aim: at most 2x (200 %) the C replayer's time.
func registerTraceReplayBenchmarks() {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("shadowmmu-bench-stride.lackey").path
    let ratio = BenchmarkMetric.custom("replay time / plain C replay time (%)", polarity: .prefersSmaller, useScalingFactor: false)
    let configuration = Benchmark.Configuration(
        metrics: [ratio], scalingFactor: .one, maxDuration: .seconds(20), maxIterations: 5,
        setup: { _ = ctrace_write_stride_trace(path, 16 << 20, 2) })
    for name in ["native", "shadow"] {
        Benchmark("Trace replay, mmu \(name) vs plain C", configuration: configuration) { benchmark in
            var result = CTraceReplayResult()
            let cTime = nanoseconds { _ = ctrace_replay(path, &result) }
            var records = 0
            let swiftTime = nanoseconds {
                let run = try? TraceReplay.replayFile(path, options: WorkloadOptions(mode: .level4, mmu: MMUName.configuration(named: name)!, record: false))
                records = run?.trace.first { $0.0 == "records" }?.1 ?? -1
            }
            precondition(UInt64(records) == result.records, "the replays disagree: \(records) vs \(result.records) records")
            benchmark.measurement(ratio, Int((100 * swiftTime / cTime).rounded()))
        }
    }
}
