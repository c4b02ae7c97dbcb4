import Foundation

/// A line plot written as plain SVG (no script, no external font or style
/// sheet, so GitHub shows it as is): one line per series with a marker at
/// each point, a legend, a title, labelled axes; the x axis logarithmic when
/// its range spans a factor of 30 or more (1 to 64 vCPUs, 64 MiB to 64 GiB),
/// the y axis too when its values do and none is zero.
struct LinePlot {
    struct Series {
        var label: String
        var points: [(x: Double, y: Double)]
        var dashed = false
    }

    var title: String
    var subtitle: String
    var xLabel: String
    var yLabel: String
    /// Where the x axis is ticked, and what each tick says (the measured sizes).
    var xTicks: [(x: Double, label: String)]
    var series: [Series]
    /// A horizontal line marking an aim, with its label.
    var reference: (y: Double, label: String)?

    static let width = 820.0, height = 460.0
    static let plotLeft = 84.0, plotRight = 560.0, plotTop = 64.0, plotBottom = 390.0
    static let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]

    var svg: String {
        let xs = series.flatMap { $0.points.map(\.x) } + xTicks.map(\.x)
        var ys = series.flatMap { $0.points.map(\.y) }
        if let reference { ys.append(reference.y) }
        guard let xMin = xs.min(), let xMax = xs.max(), let yMaxValue = ys.max() else { return "" }
        let logX = xMin > 0 && xMax / xMin >= 30
        let positive = ys.filter { $0 > 0 }
        let logY = ys.allSatisfy { $0 > 0 } && (positive.max()! / positive.min()! >= 30)
        let xScale = Axis(low: xMin, high: xMax, logarithmic: logX, from: Self.plotLeft, to: Self.plotRight)
        let yAxis: Axis
        let yTicks: [Double]
        if logY {
            let low = pow(10, floor(log10(positive.min()!))), high = pow(10, ceil(log10(yMaxValue)))
            yAxis = Axis(low: low, high: high, logarithmic: true, from: Self.plotBottom, to: Self.plotTop)
            yTicks = (Int(log10(low))...Int(log10(high))).map { pow(10, Double($0)) }
        } else {
            let step = Self.niceStep(yMaxValue / 5)
            let high = max(step, ceil(yMaxValue / step) * step)
            yAxis = Axis(low: 0, high: high, logarithmic: false, from: Self.plotBottom, to: Self.plotTop)
            yTicks = stride(from: 0, through: high + step / 2, by: step).map { $0 }
        }

        var out: [String] = []
        out.append(##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(Int(Self.width))" height="\##(Int(Self.height))" viewBox="0 0 \##(Int(Self.width)) \##(Int(Self.height))" font-family="Helvetica, Arial, sans-serif" font-size="12">"##)
        out.append(##"<rect width="100%" height="100%" fill="white"/>"##)
        out.append(##"<text x="\##(Self.width / 2)" y="24" text-anchor="middle" font-size="16" font-weight="bold">\##(Self.escape(title))</text>"##)
        out.append(##"<text x="\##(Self.width / 2)" y="44" text-anchor="middle" fill="#555">\##(Self.escape(subtitle))</text>"##)
        // Grid and ticks.
        for tick in yTicks {
            let y = yAxis.position(tick)
            out.append(##"<line x1="\##(Self.plotLeft)" y1="\##(Self.f(y))" x2="\##(Self.plotRight)" y2="\##(Self.f(y))" stroke="#e4e4e4"/>"##)
            out.append(##"<text x="\##(Self.plotLeft - 6)" y="\##(Self.f(y + 4))" text-anchor="end">\##(Self.tickLabel(tick))</text>"##)
        }
        for tick in xTicks {
            let x = xScale.position(tick.x)
            out.append(##"<line x1="\##(Self.f(x))" y1="\##(Self.plotTop)" x2="\##(Self.f(x))" y2="\##(Self.plotBottom)" stroke="#e4e4e4"/>"##)
            out.append(##"<text x="\##(Self.f(x))" y="\##(Self.plotBottom + 18)" text-anchor="middle">\##(Self.escape(tick.label))</text>"##)
        }
        out.append(##"<rect x="\##(Self.plotLeft)" y="\##(Self.plotTop)" width="\##(Self.plotRight - Self.plotLeft)" height="\##(Self.plotBottom - Self.plotTop)" fill="none" stroke="#333"/>"##)
        out.append(##"<text x="\##((Self.plotLeft + Self.plotRight) / 2)" y="\##(Self.plotBottom + 44)" text-anchor="middle">\##(Self.escape(xLabel + (logX ? " (log scale)" : "")))</text>"##)
        out.append(##"<text transform="translate(22 \##((Self.plotTop + Self.plotBottom) / 2)) rotate(-90)" text-anchor="middle">\##(Self.escape(yLabel + (logY ? " (log scale)" : "")))</text>"##)
        if let reference {
            let y = Self.f(yAxis.position(reference.y))
            out.append(##"<line x1="\##(Self.plotLeft)" y1="\##(y)" x2="\##(Self.plotRight)" y2="\##(y)" stroke="#888" stroke-dasharray="2 3"/>"##)
            out.append(##"<text x="\##(Self.plotRight - 4)" y="\##(y)" dy="-4" text-anchor="end" fill="#666">\##(Self.escape(reference.label))</text>"##)
        }
        // Lines and legend.
        for (index, line) in series.enumerated() {
            let colour = Self.colours[index % Self.colours.count]
            let path = line.points.map { "\(Self.f(xScale.position($0.x))),\(Self.f(yAxis.position($0.y)))" }.joined(separator: " ")
            let dash = line.dashed ? ##" stroke-dasharray="6 4""## : ""
            out.append(##"<polyline points="\##(path)" fill="none" stroke="\##(colour)" stroke-width="2"\##(dash)/>"##)
            for point in line.points {
                out.append(##"<circle cx="\##(Self.f(xScale.position(point.x)))" cy="\##(Self.f(yAxis.position(point.y)))" r="3" fill="\##(colour)"><title>\##(Self.escape(line.label)): \##(Self.tickLabel(point.y))</title></circle>"##)
            }
            let legendY = Self.plotTop + 8 + Double(index) * 20
            out.append(##"<line x1="\##(Self.plotRight + 16)" y1="\##(legendY)" x2="\##(Self.plotRight + 44)" y2="\##(legendY)" stroke="\##(colour)" stroke-width="2"\##(dash)/>"##)
            out.append(##"<text x="\##(Self.plotRight + 50)" y="\##(legendY + 4)">\##(Self.escape(line.label))</text>"##)
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    /// A linear or base-10 logarithmic map from values to SVG coordinates.
    struct Axis {
        var low: Double, high: Double, logarithmic: Bool, from: Double, to: Double

        func position(_ value: Double) -> Double {
            let fraction = logarithmic
                ? (log10(value) - log10(low)) / max(log10(high) - log10(low), 1e-9)
                : (value - low) / max(high - low, 1e-9)
            // A little room at the ends so that no marker sits on the frame.
            return from + (to - from) * (0.04 + 0.92 * fraction)
        }
    }

    /// 1, 2 or 5 times a power of ten, at least `rough`.
    static func niceStep(_ rough: Double) -> Double {
        guard rough > 0 else { return 1 }
        let power = pow(10, floor(log10(rough)))
        for multiple in [1.0, 2, 5, 10] where multiple * power >= rough { return multiple * power }
        return 10 * power
    }

    static func tickLabel(_ value: Double) -> String {
        if value >= 1e6, value == value.rounded() { return String(format: "%gM", value / 1e6) }
        if value >= 1e4, value == value.rounded() { return String(format: "%gk", value / 1e3) }
        return value == value.rounded() ? String(Int(value)) : String(format: "%.3g", value)
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
