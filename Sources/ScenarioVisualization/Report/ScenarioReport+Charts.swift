import ScenarioLanguage
import ScenarioRuntime
/// The report's two charts as inline SVG: per-command bars (exits and
/// faults) and counters over time (lines). Plain geometry, no scripts; each
/// bar and point carries a `<title>` the browser shows on hover.
extension ScenarioReport {
    static let seriesColours = ["#dc2626", "#2563eb", "#d97706", "#059669"]

    struct ChartFrame {
        var width = 900.0
        var height = 220.0
        var left = 48.0
        var right = 16.0
        var top = 16.0
        var bottom = 30.0
        var plotWidth: Double { width - left - right }
        var plotHeight: Double { height - top - bottom }
    }

    static func number(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }

    /// The commands in chart columns: one per command, or when there are
    /// more commands than the plot has pixels, consecutive commands binned
    /// so that no column is narrower than a pixel.
    func bins(_ frame: ChartFrame) -> [ArraySlice<Step>] {
        let size = max(1, Int((Double(steps.count) / frame.plotWidth).rounded(.up)))
        return stride(from: 0, to: steps.count, by: size).map { steps[$0..<min($0 + size, steps.count)] }
    }

    /// "line 12" or "lines 12–40".
    static func lines(_ bin: ArraySlice<Step>) -> String {
        guard let first = bin.first?.line, let last = bin.last?.line else { return "" }
        return first == last ? "line \(first)" : "lines \(first)–\(last)"
    }

    /// Axes, the y maximum, ticks labelled with scenario lines, and a marker per picture line.
    func axes(_ frame: ChartFrame, maximum: Int, xLabel: String, bins: [ArraySlice<Step>]) -> [String] {
        let n = Self.number
        var out: [String] = []
        let x0 = frame.left, y0 = frame.top + frame.plotHeight
        out.append("<line class=\"axis\" x1=\"\(n(x0))\" y1=\"\(n(frame.top))\" x2=\"\(n(x0))\" y2=\"\(n(y0))\" stroke=\"#6b7280\"/>")
        out.append("<line class=\"axis\" x1=\"\(n(x0))\" y1=\"\(n(y0))\" x2=\"\(n(x0 + frame.plotWidth))\" y2=\"\(n(y0))\" stroke=\"#6b7280\"/>")
        out.append("<text x=\"\(n(x0 - 6))\" y=\"\(n(frame.top + 10))\" text-anchor=\"end\" font-size=\"10\">\(maximum)</text>")
        out.append("<text x=\"\(n(x0 - 6))\" y=\"\(n(y0))\" text-anchor=\"end\" font-size=\"10\">0</text>")
        let binned = bins.contains { $0.count > 1 } ? ", \(bins.first?.count ?? 1) commands per column" : ""
        out.append("<text x=\"\(n(x0 + frame.plotWidth / 2))\" y=\"\(n(frame.height - 4))\" text-anchor=\"middle\" font-size=\"10\">\(PageTableGraph.htmlEscaped(xLabel + binned))</text>")
        let count = max(bins.count, 1)
        let tickEvery = max(1, Int((Double(count) / 10).rounded(.up)))
        for index in stride(from: 0, to: bins.count, by: tickEvery) {
            let x = x0 + (Double(index) + 0.5) * frame.plotWidth / Double(count)
            let line = bins[index].first?.line ?? 0
            out.append("<text class=\"tick\" x=\"\(n(x))\" y=\"\(n(y0 + 12))\" text-anchor=\"middle\" font-size=\"9\" fill=\"#6b7280\">\(line)</text>")
        }
        for picture in pictures {
            // After the last column whose commands come before or on the picture's line.
            let index = bins.lastIndex { ($0.first?.line ?? 0) <= picture.line }.map { $0 + 1 } ?? 0
            let x = x0 + Double(index) * frame.plotWidth / Double(count)
            out.append("<line class=\"picture-marker\" x1=\"\(n(x))\" y1=\"\(n(frame.top))\" x2=\"\(n(x))\" y2=\"\(n(y0))\" stroke=\"#7c3aed\" stroke-dasharray=\"3,3\"><title>tables drawn after line \(picture.line)</title></line>")
        }
        return out
    }

    /// The opening tag of a chart: as wide as the page, the drawing scaled with it.
    static func chartTag(_ kind: String, _ frame: ChartFrame, label: String) -> String {
        let n = Self.number
        return "<svg class=\"chart \(kind)-chart\" id=\"\(kind)-chart\" width=\"100%\" viewBox=\"0 0 \(n(frame.width)) \(n(frame.height))\" preserveAspectRatio=\"xMinYMin meet\" font-family=\"sans-serif\" role=\"img\" aria-label=\"\(label)\">"
    }

    /// Bars per command (or per column of binned commands): for each
    /// timeline counter, what those commands added.
    public var timelineSVG: String {
        let frame = ChartFrame()
        let n = Self.number
        let bins = bins(frame)
        func delta(_ bin: ArraySlice<Step>, _ name: String) -> Int { bin.reduce(0) { $0 + $1.delta(name) } }
        let maximum = max(1, bins.flatMap { bin in Self.timelineCounters.map { delta(bin, $0) } }.max() ?? 1)
        var out = [Self.chartTag("timeline", frame, label: "exits and faults per command")]
        out += axes(frame, maximum: maximum, xLabel: "scenario line", bins: bins)
        let slot = frame.plotWidth / Double(max(bins.count, 1))
        let barWidth = max(slot / Double(Self.timelineCounters.count + 1), 0.5)
        for (column, bin) in bins.enumerated() {
            let what = bin.count == 1 ? "\(Self.lines(bin)): \(bin.first!.command)" : "\(Self.lines(bin)) (\(bin.count) commands)"
            let tooltip = what + " — " + Self.timelineCounters.map { "\($0) \(delta(bin, $0))" }.joined(separator: ", ")
            for (series, name) in Self.timelineCounters.enumerated() where delta(bin, name) > 0 {
                let value = Double(delta(bin, name))
                let height = value / Double(maximum) * frame.plotHeight
                let x = frame.left + Double(column) * slot + (Double(series) + 0.5) * barWidth
                out.append("<rect class=\"bar bar-\(name)\" x=\"\(n(x))\" y=\"\(n(frame.top + frame.plotHeight - height))\" width=\"\(n(barWidth))\" height=\"\(n(height))\" fill=\"\(Self.seriesColours[series])\"><title>\(PageTableGraph.htmlEscaped(tooltip))</title></rect>")
            }
        }
        out.append("</svg>")
        return out.joined(separator: "\n")
    }

    /// The counters the machine has among `chartedCounters`.
    public var chartedCounterNames: [String] { Self.chartedCounters.filter(counterNames.contains) }

    /// One line per charted counter: its value after each command (after
    /// each column's last command when binned).
    public var countersSVG: String {
        let frame = ChartFrame()
        let n = Self.number
        let names = chartedCounterNames
        let bins = bins(frame)
        let maximum = max(1, names.map(total).max() ?? 1, steps.flatMap { step in names.map { step.counters[$0] ?? 0 } }.max() ?? 1)
        var out = [Self.chartTag("counters", frame, label: "counters over time")]
        out += axes(frame, maximum: maximum, xLabel: "scenario line (value after the command)", bins: bins)
        let slot = frame.plotWidth / Double(max(bins.count, 1))
        for (series, name) in names.enumerated() {
            let colour = Self.seriesColours[series % Self.seriesColours.count]
            let points = bins.enumerated().map { column, bin in
                let x = frame.left + (Double(column) + 0.5) * slot
                let y = frame.top + frame.plotHeight - Double(bin.last?.counters[name] ?? 0) / Double(maximum) * frame.plotHeight
                return "\(n(x)),\(n(y))"
            }
            out.append("<polyline class=\"series series-\(name)\" points=\"\(points.joined(separator: " "))\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"><title>\(name): \(total(name)) at the end</title></polyline>")
        }
        out.append("</svg>")
        return out.joined(separator: "\n")
    }
}
