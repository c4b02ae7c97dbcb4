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

    /// Axes, the y maximum, command-index ticks and a marker per picture line.
    func axes(_ frame: ChartFrame, maximum: Int, xLabel: String) -> [String] {
        let n = Self.number
        var out: [String] = []
        let x0 = frame.left, y0 = frame.top + frame.plotHeight
        out.append("<line class=\"axis\" x1=\"\(n(x0))\" y1=\"\(n(frame.top))\" x2=\"\(n(x0))\" y2=\"\(n(y0))\" stroke=\"#6b7280\"/>")
        out.append("<line class=\"axis\" x1=\"\(n(x0))\" y1=\"\(n(y0))\" x2=\"\(n(x0 + frame.plotWidth))\" y2=\"\(n(y0))\" stroke=\"#6b7280\"/>")
        out.append("<text x=\"\(n(x0 - 6))\" y=\"\(n(frame.top + 10))\" text-anchor=\"end\" font-size=\"10\">\(maximum)</text>")
        out.append("<text x=\"\(n(x0 - 6))\" y=\"\(n(y0))\" text-anchor=\"end\" font-size=\"10\">0</text>")
        out.append("<text x=\"\(n(x0 + frame.plotWidth / 2))\" y=\"\(n(frame.height - 4))\" text-anchor=\"middle\" font-size=\"10\">\(PageTableGraph.htmlEscaped(xLabel))</text>")
        let count = max(steps.count, 1)
        let tickEvery = max(1, Int((Double(count) / 10).rounded(.up)))
        for index in stride(from: 0, to: steps.count, by: tickEvery) {
            let x = x0 + (Double(index) + 0.5) * frame.plotWidth / Double(count)
            out.append("<text x=\"\(n(x))\" y=\"\(n(y0 + 12))\" text-anchor=\"middle\" font-size=\"9\" fill=\"#6b7280\">\(index)</text>")
        }
        for picture in pictures {
            // After the last command with a line ≤ the picture's line.
            let index = steps.lastIndex { $0.line <= picture.line }.map { $0 + 1 } ?? 0
            let x = x0 + Double(index) * frame.plotWidth / Double(count)
            out.append("<line class=\"picture-marker\" x1=\"\(n(x))\" y1=\"\(n(frame.top))\" x2=\"\(n(x))\" y2=\"\(n(y0))\" stroke=\"#7c3aed\" stroke-dasharray=\"3,3\"><title>tables drawn after line \(picture.line)</title></line>")
        }
        return out
    }

    /// Bars per command: for each timeline counter, what that command added.
    public var timelineSVG: String {
        let frame = ChartFrame()
        let n = Self.number
        let maximum = max(1, steps.flatMap { step in Self.timelineCounters.map { step.delta($0) } }.max() ?? 1)
        var out = ["<svg class=\"chart timeline-chart\" id=\"timeline-chart\" width=\"\(n(frame.width))\" height=\"\(n(frame.height))\" viewBox=\"0 0 \(n(frame.width)) \(n(frame.height))\" font-family=\"sans-serif\" role=\"img\" aria-label=\"exits and faults per command\">"]
        out += axes(frame, maximum: maximum, xLabel: "command index")
        let slot = frame.plotWidth / Double(max(steps.count, 1))
        let barWidth = max(slot / Double(Self.timelineCounters.count + 1), 0.5)
        for step in steps {
            let tooltip = "line \(step.line): \(step.command) — " + Self.timelineCounters.map { "\($0) \(step.delta($0))" }.joined(separator: ", ")
            for (series, name) in Self.timelineCounters.enumerated() where step.delta(name) > 0 {
                let value = Double(step.delta(name))
                let height = value / Double(maximum) * frame.plotHeight
                let x = frame.left + Double(step.index) * slot + (Double(series) + 0.5) * barWidth
                out.append("<rect class=\"bar bar-\(name)\" x=\"\(n(x))\" y=\"\(n(frame.top + frame.plotHeight - height))\" width=\"\(n(barWidth))\" height=\"\(n(height))\" fill=\"\(Self.seriesColours[series])\"><title>\(PageTableGraph.htmlEscaped(tooltip))</title></rect>")
            }
        }
        out.append("</svg>")
        return out.joined(separator: "\n")
    }

    /// The counters the machine has among `chartedCounters`.
    public var chartedCounterNames: [String] { Self.chartedCounters.filter(counterNames.contains) }

    /// One line per charted counter: its value after each command.
    public var countersSVG: String {
        let frame = ChartFrame()
        let n = Self.number
        let names = chartedCounterNames
        let maximum = max(1, names.map(total).max() ?? 1, steps.flatMap { step in names.map { step.counters[$0] ?? 0 } }.max() ?? 1)
        var out = ["<svg class=\"chart counters-chart\" id=\"counters-chart\" width=\"\(n(frame.width))\" height=\"\(n(frame.height))\" viewBox=\"0 0 \(n(frame.width)) \(n(frame.height))\" font-family=\"sans-serif\" role=\"img\" aria-label=\"counters over time\">"]
        out += axes(frame, maximum: maximum, xLabel: "command index (value after the command)")
        let slot = frame.plotWidth / Double(max(steps.count, 1))
        for (series, name) in names.enumerated() {
            let colour = Self.seriesColours[series % Self.seriesColours.count]
            let points = steps.map { step in
                let x = frame.left + (Double(step.index) + 0.5) * slot
                let y = frame.top + frame.plotHeight - Double(step.counters[name] ?? 0) / Double(maximum) * frame.plotHeight
                return "\(n(x)),\(n(y))"
            }
            out.append("<polyline class=\"series series-\(name)\" points=\"\(points.joined(separator: " "))\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"><title>\(name): \(total(name)) at the end</title></polyline>")
        }
        out.append("</svg>")
        return out.joined(separator: "\n")
    }
}
