import ScenarioLanguage
import ScenarioRuntime
extension PageTableGraph {
    /// The graph as one self-contained `<svg>` element (no fonts, scripts,
    /// links or namespace URI: inline SVG in HTML needs none), for HTML pages that cannot run Graphviz: a layered layout with
    /// the guest's tables on the left and the hypervisor's on the right, one
    /// row per paging level (top level first) so that a shadow page sits level
    /// with the guest table it shadows. Within a side a row wraps after
    /// `columns` tables. `idPrefix` keeps element ids unique when a page holds
    /// several pictures.
    public func svg(idPrefix: String, columns: Int = 4) -> String {
        SVGLayout(graph: self, idPrefix: idPrefix, columns: max(1, columns)).render()
    }
}

/// Positions of every box of a `PageTableGraph`, and their SVG.
struct SVGLayout {
    let graph: PageTableGraph
    let idPrefix: String
    let columns: Int

    // Metrics of the monospace text the picture uses (11 px: ~6.6 px a character).
    static let characterWidth = 6.7
    static let lineHeight = 15.0
    static let smallLineHeight = 13.0
    static let padding = 6.0
    static let gap = 28.0
    static let rowGap = 44.0
    static let maxCharacters = 64
    // Side headings are bold 12 px text: rendered ~7 px a character, estimated
    // high so that a heading line never runs into the next side's heading.
    static let headingCharacterWidth = 7.4
    static let headingLineHeight = 16.0
    /// A heading wraps at spaces after this many characters, or after as
    /// many as its side's tables are wide when they are wider.
    static let headingCharacters = 56

    struct Box {
        var x = 0.0, y = 0.0, width = 0.0, height = 0.0
        var midX: Double { x + width / 2 }
    }

    var boxes: [String: Box] = [:]
    /// Vertical centre of entry `index` of each node, relative to its box.
    var entryOffsets: [String: [Int: Double]] = [:]
    var width = 0.0
    var height = 0.0
    /// Where each side's heading goes, wrapped into lines.
    var headings: [(lines: [String], x: Double, side: PageTableGraph.Side)] = []

    init(graph: PageTableGraph, idPrefix: String, columns: Int) {
        self.graph = graph
        self.idPrefix = idPrefix
        self.columns = columns
        layout()
    }

    static func clipped(_ text: String) -> String {
        text.count <= maxCharacters ? text : String(text.prefix(maxCharacters - 1)) + "…"
    }

    static func textWidth(_ text: String) -> Double { Double(clipped(text).count) * characterWidth }

    /// `text` in lines of at most `characters` characters, broken at spaces
    /// (a longer word keeps a line of its own).
    static func wrapped(_ text: String, characters: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty, line.count + 1 + word.count > characters {
                lines.append(line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        return lines + (line.isEmpty ? [] : [line])
    }

    /// The lines of a node, in order: title, marks, details, entries, omitted.
    static func lines(of node: PageTableGraph.Node) -> [String] {
        var lines = [node.title]
        if !node.marks.isEmpty { lines.append(node.marks.sorted().map(\.rawValue).joined(separator: " · ")) }
        lines += node.details
        lines += node.entries.map(PageTableGraph.line(for:))
        if node.entries.isEmpty, node.omittedEntries == 0 { lines.append("no present entries") }
        if node.omittedEntries > 0 { lines.append(PageTableGraph.omittedLine(node.omittedEntries)) }
        return lines
    }

    static func headerHeight(_ node: PageTableGraph.Node) -> Double {
        lineHeight * (node.marks.isEmpty ? 1 : 2) + padding
    }

    mutating func layout() {
        let sides = PageTableGraph.Side.allCases.filter { side in
            side == .guest || graph.hypervisorHeading != nil
        }
        // Node size: as wide as its longest line; heights from its line count.
        var size: [String: (Double, Double)] = [:]
        for node in graph.nodes {
            let width = (Self.lines(of: node).map(Self.textWidth).max() ?? 80) + 2 * Self.padding
            var offsets: [Int: Double] = [:]
            var y = Self.headerHeight(node) + Double(node.details.count) * Self.smallLineHeight + Self.padding / 2
            for entry in node.entries {
                offsets[entry.index] = y + Self.lineHeight / 2
                y += Self.lineHeight
            }
            if node.entries.isEmpty || node.omittedEntries > 0 { y += Self.lineHeight }
            entryOffsets[node.id] = offsets
            size[node.id] = (max(width, 120), y + Self.padding)
        }
        let levels = Set(graph.nodes.map(\.level)).sorted(by: >)
        // Column width per side: the widest node of that side.
        var sideX = Self.gap
        var sideLeft: [PageTableGraph.Side: Double] = [:]
        var cellWidth: [PageTableGraph.Side: Double] = [:]
        for side in sides {
            let nodes = graph.nodes(on: side)
            let widest = max(nodes.map { size[$0.id]!.0 }.max() ?? 0, graph.roots.filter { $0.side == side }.map { Self.textWidth($0.label) + 2 * Self.padding }.max() ?? 0, 160)
            let perRow = levels.map { level in min(columns, nodes.filter { $0.level == level }.count) }.max() ?? 1
            let rootCount = graph.roots.filter { $0.side == side }.count
            let count = max(perRow, min(columns, rootCount), 1)
            sideLeft[side] = sideX
            cellWidth[side] = widest + Self.gap
            let tablesWidth = Double(count) * (widest + Self.gap)
            let heading = Self.wrapped(
                side == .guest ? graph.guestHeading : graph.hypervisorHeading ?? "",
                characters: max(Self.headingCharacters, Int((tablesWidth - Self.gap) / Self.headingCharacterWidth)))
            headings.append((heading, sideX, side))
            let headingWidth = Double(heading.map(\.count).max() ?? 0) * Self.headingCharacterWidth
            sideX += max(tablesWidth, headingWidth + Self.gap) + Self.gap
        }
        width = sideX
        // Rows: the root markers below the headings, then one band per level holding both sides.
        var y = 30.0 + Double(max((headings.map(\.lines.count).max() ?? 1) - 1, 0)) * Self.headingLineHeight
        var rootBand = 0.0
        for side in sides {
            for (position, root) in graph.roots.filter({ $0.side == side }).enumerated() {
                let column = position % columns, row = position / columns
                let box = Box(
                    x: sideLeft[side]! + Double(column) * cellWidth[side]!, y: y + Double(row) * (Self.lineHeight + 20),
                    width: Self.textWidth(root.label) + 2 * Self.padding, height: Self.lineHeight + Self.padding)
                boxes[root.id] = box
                rootBand = max(rootBand, box.y + box.height - y)
            }
        }
        y += rootBand + Self.rowGap
        for level in levels {
            var bandHeight = 0.0
            for side in sides {
                let nodes = graph.nodes(on: side).filter { $0.level == level }
                var rowTop = y
                var position = 0
                while position < nodes.count {
                    let row = nodes[position..<min(position + columns, nodes.count)]
                    var rowHeight = 0.0
                    for (column, node) in row.enumerated() {
                        let (width, height) = size[node.id]!
                        boxes[node.id] = Box(x: sideLeft[side]! + Double(column) * cellWidth[side]!, y: rowTop, width: width, height: height)
                        rowHeight = max(rowHeight, height)
                    }
                    rowTop += rowHeight + Self.gap
                    position += columns
                }
                bandHeight = max(bandHeight, rowTop - Self.gap - y)
            }
            y += bandHeight + Self.rowGap
        }
        height = y
    }

    func id(_ name: String) -> String { idPrefix + "-" + name }

    static func number(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }

    static func escaped(_ text: String) -> String { PageTableGraph.htmlEscaped(text) }

    func render() -> String {
        let n = Self.number
        var out: [String] = []
        out.append("<svg class=\"page-tables\" id=\"\(id("svg"))\" width=\"\(n(width))\" height=\"\(n(height))\" viewBox=\"0 0 \(n(width)) \(n(height))\" font-family=\"monospace\" font-size=\"11\" role=\"img\" aria-label=\"\(Self.escaped(graph.title))\">")
        out.append("<title>\(Self.escaped(graph.title))</title>")
        out.append("<defs>")
        for (name, colour) in [("guest", DrawingStyle.guestEdge), ("hypervisor", DrawingStyle.hypervisorEdge), ("shadows", DrawingStyle.shadowsEdge), ("root", "#111827")] {
            out.append("<marker id=\"\(id("arrow-" + name))\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"\(colour)\"/></marker>")
        }
        out.append("</defs>")
        for heading in headings {
            let lines = heading.lines.enumerated().map { index, line in
                "<tspan x=\"\(n(heading.x))\" y=\"\(n(18 + Double(index) * Self.headingLineHeight))\">\(Self.escaped(line))</tspan>"
            }
            out.append("<text class=\"side-heading side-\(heading.side.rawValue)\" font-weight=\"bold\" font-size=\"12\">\(lines.joined())</text>")
        }
        // Edges first, so boxes cover their ends.
        for edge in graph.edges {
            guard let from = boxes[edge.from], let to = boxes[edge.to] else { continue }
            switch edge.kind {
            case .root:
                out.append("<path class=\"edge edge-root\" d=\"M\(n(from.midX)),\(n(from.y + from.height)) L\(n(to.midX)),\(n(to.y))\" stroke=\"#111827\" fill=\"none\" marker-end=\"url(#\(id("arrow-root")))\"/>")
            case .entry:
                let side = graph.node(edge.from)?.side ?? .guest
                let colour = side == .guest ? DrawingStyle.guestEdge : DrawingStyle.hypervisorEdge
                let startY = from.y + (entryOffsets[edge.from]?[edge.entry ?? -1] ?? from.height / 2)
                let startX = from.x + from.width
                let endX = to.midX, endY = to.y
                let path = "M\(n(startX)),\(n(startY)) C\(n(startX + 40)),\(n(startY)) \(n(endX)),\(n(endY - 40)) \(n(endX)),\(n(endY))"
                out.append("<path class=\"edge edge-entry side-\(side.rawValue)\" d=\"\(path)\" stroke=\"\(colour)\" fill=\"none\" marker-end=\"url(#\(id("arrow-" + side.rawValue)))\"/>")
            case .shadows:
                let startX = from.x, startY = from.y + 10
                let endX = to.x + to.width, endY = to.y + 10
                let middle = (startX + endX) / 2
                let path = "M\(n(startX)),\(n(startY)) C\(n(middle)),\(n(startY)) \(n(middle)),\(n(endY)) \(n(endX)),\(n(endY))"
                out.append("<path class=\"edge edge-shadows\" d=\"\(path)\" stroke=\"\(DrawingStyle.shadowsEdge)\" stroke-dasharray=\"5,4\" fill=\"none\" opacity=\"0.8\" marker-end=\"url(#\(id("arrow-shadows")))\"><title>shadows</title></path>")
            }
        }
        for root in graph.roots {
            guard let box = boxes[root.id] else { continue }
            out.append("<g class=\"root-marker side-\(root.side.rawValue)\" id=\"\(id(root.id))\">")
            out.append("<rect x=\"\(n(box.x))\" y=\"\(n(box.y))\" width=\"\(n(box.width))\" height=\"\(n(box.height))\" rx=\"8\" fill=\"#f9fafb\" stroke=\"#111827\"/>")
            out.append("<text x=\"\(n(box.x + Self.padding))\" y=\"\(n(box.y + Self.lineHeight - 1))\">\(Self.escaped(Self.clipped(root.label)))</text>")
            out.append("</g>")
        }
        for node in graph.nodes {
            guard let box = boxes[node.id] else { continue }
            out += self.node(node, box)
        }
        out.append("</svg>")
        return out.joined(separator: "\n")
    }

    func node(_ node: PageTableGraph.Node, _ box: Box) -> [String] {
        let n = Self.number
        let classes = (["table-node", "side-\(node.side.rawValue)", "level-\(node.level)"] + node.marks.sorted().map { "mark-\($0.rawValue)" }).joined(separator: " ")
        var out = ["<g class=\"\(classes)\" id=\"\(id(node.id))\">"]
        out.append("<title>\(Self.escaped(Self.lines(of: node).joined(separator: "\n")))</title>")
        let dash = DrawingStyle.border(node).map { $0 == "dashed" ? " stroke-dasharray=\"6,3\"" : " stroke-dasharray=\"2,2\"" } ?? ""
        let header = Self.headerHeight(node)
        out.append("<rect x=\"\(n(box.x))\" y=\"\(n(box.y))\" width=\"\(n(box.width))\" height=\"\(n(box.height))\" fill=\"#ffffff\" stroke=\"#111827\"\(dash)/>")
        out.append("<rect class=\"node-header\" x=\"\(n(box.x))\" y=\"\(n(box.y))\" width=\"\(n(box.width))\" height=\"\(n(header))\" fill=\"\(DrawingStyle.header(node))\" stroke=\"#111827\"\(dash)/>")
        let textX = box.x + Self.padding
        var y = box.y + Self.lineHeight - 1
        out.append("<text x=\"\(n(textX))\" y=\"\(n(y))\" font-weight=\"bold\">\(Self.escaped(Self.clipped(node.title)))</text>")
        if !node.marks.isEmpty {
            y += Self.lineHeight
            out.append("<text class=\"node-marks\" x=\"\(n(textX))\" y=\"\(n(y))\" font-style=\"italic\">\(Self.escaped(node.marks.sorted().map(\.rawValue).joined(separator: " · ")))</text>")
        }
        y = box.y + header
        for detail in node.details {
            y += Self.smallLineHeight
            out.append("<text class=\"node-detail\" x=\"\(n(textX))\" y=\"\(n(y - 2))\" font-size=\"10\" fill=\"#374151\">\(Self.escaped(Self.clipped(detail)))</text>")
        }
        y += Self.padding / 2
        for entry in node.entries {
            let background = entry.isHuge ? DrawingStyle.hugeRow : entry.kind == .broken ? DrawingStyle.brokenRow : nil
            if let background {
                out.append("<rect class=\"entry-\(entry.isHuge ? "huge" : "broken")\" x=\"\(n(box.x + 1))\" y=\"\(n(y))\" width=\"\(n(box.width - 2))\" height=\"\(n(Self.lineHeight))\" fill=\"\(background)\"/>")
            }
            let weight = entry.isHuge ? " font-weight=\"bold\"" : ""
            out.append("<text class=\"entry\" x=\"\(n(textX))\" y=\"\(n(y + Self.lineHeight - 4))\"\(weight)>\(Self.escaped(Self.clipped(PageTableGraph.line(for: entry))))</text>")
            y += Self.lineHeight
        }
        if node.entries.isEmpty, node.omittedEntries == 0 {
            out.append("<text class=\"entry-none\" x=\"\(n(textX))\" y=\"\(n(y + Self.lineHeight - 4))\" font-style=\"italic\">no present entries</text>")
        }
        if node.omittedEntries > 0 {
            out.append("<text class=\"entry-omitted\" x=\"\(n(textX))\" y=\"\(n(y + Self.lineHeight - 4))\" font-style=\"italic\">\(Self.escaped(PageTableGraph.omittedLine(node.omittedEntries)))</text>")
        }
        out.append("</g>")
        return out
    }
}
