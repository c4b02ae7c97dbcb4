import Foundation

/// The SVG plots of docs/scaling.md, each drawn from one curve's CSV file:
/// what is plotted against what, one line per MMU (and per figure, where a
/// plot compares two).
enum ScalingPlots {
    /// A line: `column` of the rows of `mmu`, labelled `label`.
    struct Line {
        var label: String
        var mmu: String
        var column: String
        var dashed = false
    }

    struct Plot {
        var file: String
        var table: String
        var title: String
        var xColumn: String
        var xLabel: String
        var yLabel: String
        var lines: [Line]
        var reference: (y: Double, label: String)? = nil
    }

    static func both(_ column: String, _ what: String = "", dashed: Bool = false) -> [Line] {
        CurveMMU.allCases.map { Line(label: $0.rawValue + what, mmu: $0.rawValue, column: column, dashed: dashed) }
    }

    static let plots: [Plot] = [
        Plot(file: "guest-memory-first-touch", table: "guest-memory", title: "First-touch fault vs guest memory",
             xColumn: "guest_memory_bytes", xLabel: "guest memory", yLabel: "ns per fault (p50 of 64-fault batches)",
             lines: both("first_touch_ns_p50_best", " p50, best run") + both("first_touch_ns_p50", " p50, median run", dashed: true),
             reference: (400, "issue 14 aim: 400 ns")),
        Plot(file: "guest-memory-access", table: "guest-memory", title: "Reads after warm-up vs guest memory",
             xColumn: "guest_memory_bytes", xLabel: "guest memory", yLabel: "ns per read",
             lines: both("tlb_hit_ns", " TLB hit") + both("tlb_miss_ns", " TLB miss", dashed: true)),
        Plot(file: "guest-memory-heap", table: "guest-memory", title: "Heap per touched page vs guest memory",
             xColumn: "guest_memory_bytes", xLabel: "guest memory", yLabel: "heap bytes per page faulted in",
             lines: both("fault_heap_bytes_per_page")),
        Plot(file: "processes-switch", table: "processes", title: "Time per context switch vs processes",
             xColumn: "processes", xLabel: "processes", yLabel: "µs per time slice (switch + 40 accesses)",
             lines: both("steady_us_per_slice", " steady state") + both("run_us_per_switch", " whole run / switches", dashed: true)),
        Plot(file: "processes-exits", table: "processes", title: "Exits per context switch vs processes",
             xColumn: "processes", xLabel: "processes", yLabel: "exits per context switch",
             lines: both("exits_per_switch")),
        Plot(file: "processes-host-tables", table: "processes", title: "Host table memory vs processes",
             xColumn: "processes", xLabel: "processes", yLabel: "KiB of host tables at the end",
             lines: both("host_table_kib")),
        Plot(file: "vcpus-access", table: "vcpus", title: "Faults, TLB hits and CR3 switches vs vCPUs",
             xColumn: "vcpus", xLabel: "vCPUs", yLabel: "ns per operation",
             lines: both("first_touch_ns", " first touch") + both("cr3_switch_read_ns", " CR3 switch + read", dashed: true)
                + both("tlb_hit_ns", " TLB hit")),
        Plot(file: "vcpus-remote-flush", table: "vcpus", title: "Remote flush vs vCPUs",
             xColumn: "vcpus", xLabel: "vCPUs", yLabel: "ns per invalidation round",
             lines: both("remote_flush_round_ns") + both("remote_flush_round_ns_per_vcpu", " per vCPU", dashed: true)),
        Plot(file: "vcpus-memory", table: "vcpus", title: "Heap per vCPU vs vCPUs",
             xColumn: "vcpus", xLabel: "vCPUs", yLabel: "heap bytes per vCPU",
             lines: both("vm_heap_bytes_per_vcpu", " machine (vCPU, TLB)") + both("fault_heap_bytes_per_vcpu", " faults (MMU tables)", dashed: true)),
    ]

    /// Writes every plot whose table is in `directory` as `<file>.svg` there;
    /// returns the files written.
    static func write(in directory: URL) throws -> [String] {
        var tables: [String: CurveTable] = [:]
        var written: [String] = []
        for plot in plots {
            if tables[plot.table] == nil {
                let url = directory.appendingPathComponent(plot.table + ".csv")
                guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
                tables[plot.table] = try CurveTable(name: plot.table, csv: text)
            }
            let table = tables[plot.table]!
            let xs = try table.numbers(plot.xColumn)
            let labels = table.distinct(plot.xColumn).compactMap(Double.init)
            let ticks = labels.map { (x: $0, label: plot.xColumn == "guest_memory_bytes" ? memoryLabel($0) : LinePlot.tickLabel($0)) }
            require(!xs.isEmpty, "\(plot.table).csv has no rows")
            let series = try plot.lines.map { line in
                LinePlot.Series(
                    label: line.label,
                    points: Array(zip(try table.numbers(plot.xColumn) { $0["mmu"] == line.mmu }, try table.numbers(line.column) { $0["mmu"] == line.mmu }))
                        .map { (x: $0.0, y: $0.1) },
                    dashed: line.dashed)
            }
            let plotted = LinePlot(
                title: plot.title, subtitle: subtitle(table), xLabel: plot.xLabel, yLabel: plot.yLabel, xTicks: ticks, series: series,
                reference: plot.reference)
            try plotted.svg.write(to: directory.appendingPathComponent(plot.file + ".svg"), atomically: true, encoding: .utf8)
            written.append(plot.file + ".svg")
        }
        return written
    }

    /// What was held fixed, from the table's own columns.
    static func subtitle(_ table: CurveTable) -> String {
        let first = { (column: String) in table.distinct(column).first ?? "?" }
        switch table.name {
        case "guest-memory": return "4-level guest, \(first("touched_pages")) pages touched spread over all memory; median of \(first("repetitions")) runs"
        case "processes": return "guest kernel's processes workload, 4-level guest, 4 rounds round-robin; \(first("repetitions")) run(s)"
        default: return "4-level guest, \(first("pages_per_vcpu")) pages per vCPU in two address spaces each; median of \(first("repetitions")) runs"
        }
    }

    static func memoryLabel(_ bytes: Double) -> String {
        bytes >= Double(1 << 30) ? "\(Int(bytes) >> 30) GiB" : "\(Int(bytes) >> 20) MiB"
    }
}
