// Scaling curves (issue 14): cost and memory of the MMU as guest memory,
// processes and vCPUs grow, each point measured in this run and checked
// (a wrong translation or a broken workload stops the run). A plain release
// executable, not a package-benchmark target: each curve is one pass over
// its points, written as CSV, then drawn as SVG.
//
//   swift build -c release --product ScalingCurves
//   .build/release/ScalingCurves measure [--quick] [--curve memory|processes|vcpus]... DIR
//   .build/release/ScalingCurves plot DIR
//
// `measure` writes DIR/guest-memory.csv, DIR/processes.csv and DIR/vcpus.csv
// (and prints them); `plot` draws the SVG plots from whichever are there.
// scripts/scaling-plots.sh runs both into docs/scaling/.
import Foundation

/// The three curves, as `--curve` names them.
enum Curve: String, CaseIterable {
    case memory, processes, vcpus
}

func usage() -> Never {
    FileHandle.standardError.write(Data("usage: ScalingCurves measure [--quick] [--curve memory|processes|vcpus]... DIR\n       ScalingCurves plot DIR\n".utf8))
    exit(2)
}

func progress(_ message: String) {
    FileHandle.standardError.write(Data("\(message)\n".utf8))
}

var arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first, ["measure", "plot"].contains(command) else { usage() }
arguments.removeFirst()
var quick = false
var curves: [Curve] = []
var directory: String?
while let argument = arguments.first {
    arguments.removeFirst()
    switch argument {
    case "--quick" where command == "measure": quick = true
    case "--curve" where command == "measure":
        guard let name = arguments.first, let curve = Curve(rawValue: name) else { usage() }
        arguments.removeFirst()
        curves.append(curve)
    default:
        guard directory == nil, !argument.hasPrefix("-") else { usage() }
        directory = argument
    }
}
guard let directory else { usage() }
let output = URL(fileURLWithPath: directory, isDirectory: true)
do {
    try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
    if command == "plot" {
        for file in try ScalingPlots.write(in: output) { print("wrote \(directory)/\(file)") }
        exit(0)
    }
    for curve in curves.isEmpty ? Curve.allCases : curves {
        let start = ContinuousClock.now
        let table: CurveTable
        switch curve {
        case .memory:
            // Quick: fewer pages and reads, one run; the sizes stay (sparse, so 64 GiB costs no more).
            var memory = GuestMemoryCurve()
            if quick { (memory.pages, memory.hitReads, memory.missReads) = (2048, 1 << 17, 1 << 16) }
            table = memory.run(repetitions: quick ? 1 : 7, progress: progress)
        case .processes:
            var processes = ProcessCurve()
            if quick { processes.counts = [1, 2, 4, 10, 30, 100] }
            table = processes.run(repetitions: quick ? 1 : 3, progress: progress)
        case .vcpus:
            var vcpus = VCPUCurve()
            if quick { (vcpus.rounds, vcpus.hitReads) = (50, 1 << 16) }
            table = vcpus.run(repetitions: quick ? 1 : 7, progress: progress)
        }
        try table.csv.write(to: output.appendingPathComponent(table.name + ".csv"), atomically: true, encoding: .utf8)
        print("# \(table.name).csv (\(Int((ContinuousClock.now - start).components.seconds)) s)")
        print(table.csv)
    }
} catch {
    progress("ScalingCurves: \(error)")
    exit(1)
}
