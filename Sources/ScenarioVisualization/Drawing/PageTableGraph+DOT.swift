import ScenarioLanguage
import ScenarioRuntime
extension PageTableGraph {
    /// The graph in Graphviz's DOT language: a cluster per side (guest left,
    /// hypervisor right, levels top to bottom so a shadow page sits level
    /// with the guest table it shadows), each table an HTML-like table node
    /// with a port per entry, and a legend.
    public var dot: String {
        var out = ["digraph page_tables {"]
        out.append("  graph [rankdir=TB, newrank=true, fontname=\"Helvetica\", fontsize=12, labelloc=t, nodesep=0.2, ranksep=0.5, label=\(Self.dotString(title))];")
        out.append("  node [shape=plaintext, fontname=\"Helvetica\", fontsize=10];")
        out.append("  edge [arrowsize=0.6];")
        for side in Side.allCases {
            let heading = side == .guest ? guestHeading : hypervisorHeading
            guard let heading else { continue }
            out.append("  subgraph cluster_\(side.rawValue) {")
            out.append("    label=\(Self.dotString(heading)); style=rounded; color=\"\(side == .guest ? DrawingStyle.guestEdge : DrawingStyle.hypervisorEdge)\";")
            for root in roots where root.side == side {
                out.append("    \(Self.dotString(root.id)) [shape=box, style=\"rounded,filled\", fillcolor=\"#f9fafb\", label=\(Self.dotString(root.label))];")
            }
            for node in nodes(on: side) {
                out.append("    \(Self.dotString(node.id)) [label=<\(Self.htmlLabel(node))>];")
            }
            out.append("  }")
        }
        if !notes.isEmpty {
            let text = notes.map(Self.dotEscaped).joined(separator: "\\l") + "\\l"
            out.append("  notes [shape=note, fontsize=9, label=\"\(text)\"];")
        }
        out += legend
        // One row per paging level across both sides: a shadow page sits level
        // with the guest table it shadows.
        for level in Set(nodes.map(\.level)).sorted(by: >) {
            let row = nodes.filter { $0.level == level }.map { Self.dotString($0.id) }
            if row.count > 1 { out.append("  { rank=same; \(row.joined(separator: "; ")); }") }
        }
        for edge in edges {
            switch edge.kind {
            case .root:
                out.append("  \(Self.dotString(edge.from)) -> \(Self.dotString(edge.to)):h:n;")
            case .entry:
                let side = node(edge.from)?.side ?? .guest
                let colour = side == .guest ? DrawingStyle.guestEdge : DrawingStyle.hypervisorEdge
                out.append("  \(Self.dotString(edge.from)):e\(edge.entry ?? 0):e -> \(Self.dotString(edge.to)):h:n [color=\"\(colour)\"];")
            case .shadows:
                out.append("  \(Self.dotString(edge.from)):h -> \(Self.dotString(edge.to)):h [style=dashed, constraint=false, color=\"\(DrawingStyle.shadowsEdge)\", label=\"shadows\", fontsize=8, fontcolor=\"\(DrawingStyle.shadowsEdge)\"];")
            }
        }
        out.append("}")
        return out.joined(separator: "\n") + "\n"
    }

    /// The legend: every mark's colour, huge mappings, the two sides, the
    /// dashed "shadows" edge and the local pages' dashed border.
    var legend: [String] {
        var rows = ["<TR><TD ALIGN=\"LEFT\"><B>legend</B></TD></TR>"]
        for mark in Mark.allCases {
            rows.append("<TR><TD ALIGN=\"LEFT\" BGCOLOR=\"\(DrawingStyle.colour(mark))\">\(Self.htmlEscaped(mark.legend))</TD></TR>")
        }
        rows.append("<TR><TD ALIGN=\"LEFT\" BGCOLOR=\"\(DrawingStyle.hugeRow)\">huge mapping (2M / 4M / 1G leaf entry)</TD></TR>")
        rows.append("<TR><TD ALIGN=\"LEFT\" BGCOLOR=\"\(DrawingStyle.guestHeader)\">guest table</TD></TR>")
        rows.append("<TR><TD ALIGN=\"LEFT\" BGCOLOR=\"\(DrawingStyle.shadowHeader)\">hypervisor table</TD></TR>")
        rows.append("<TR><TD ALIGN=\"LEFT\">dashed arrow: shadow page → the guest table it shadows</TD></TR>")
        rows.append("<TR><TD ALIGN=\"LEFT\">dashed border: local page or special root table</TD></TR>")
        return [
            "  subgraph cluster_legend {",
            "    label=\"\"; style=invis;",
            "    legend [label=<<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"3\">\(rows.joined())</TABLE>>];",
            "  }",
        ]
    }

    /// A node's HTML-like label: a header (port `h`), detail lines, then one
    /// row per listed entry (port `e<index>`).
    static func htmlLabel(_ node: Node) -> String {
        let border = DrawingStyle.border(node).map { " STYLE=\"\($0)\"" } ?? ""
        var rows: [String] = []
        let marks = node.marks.sorted().map(\.rawValue).joined(separator: " · ")
        let title = "<B>\(htmlEscaped(node.title))</B>" + (marks.isEmpty ? "" : "<BR/><I>\(htmlEscaped(marks))</I>")
        rows.append("<TR><TD PORT=\"h\" BGCOLOR=\"\(DrawingStyle.header(node))\">\(title)</TD></TR>")
        for detail in node.details {
            rows.append("<TR><TD ALIGN=\"LEFT\"><FONT POINT-SIZE=\"8\">\(htmlEscaped(detail))</FONT></TD></TR>")
        }
        for entry in node.entries {
            let background = entry.isHuge ? " BGCOLOR=\"\(DrawingStyle.hugeRow)\"" : entry.kind == .broken ? " BGCOLOR=\"\(DrawingStyle.brokenRow)\"" : ""
            let text = htmlEscaped(line(for: entry))
            rows.append("<TR><TD PORT=\"e\(entry.index)\" ALIGN=\"LEFT\"\(background)>\(entry.isHuge ? "<B>\(text)</B>" : text)</TD></TR>")
        }
        if node.entries.isEmpty, node.omittedEntries == 0 {
            rows.append("<TR><TD ALIGN=\"LEFT\"><I>no present entries</I></TD></TR>")
        }
        if node.omittedEntries > 0 {
            rows.append("<TR><TD ALIGN=\"LEFT\"><I>\(htmlEscaped(omittedLine(node.omittedEntries)))</I></TD></TR>")
        }
        return "<TABLE BORDER=\"1\" CELLBORDER=\"0\" CELLSPACING=\"0\" CELLPADDING=\"3\"\(border)>\(rows.joined())</TABLE>"
    }

    /// Text inside an HTML-like label or an HTML page.
    public static func htmlEscaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    /// Text inside a DOT double-quoted string (without the quotes).
    static func dotEscaped(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }

    static func dotString(_ text: String) -> String { "\"" + dotEscaped(text) + "\"" }
}
