import ScenarioLanguage
import ScenarioRuntime
/// Colours and line styles shared by the Graphviz and SVG renderings, so a
/// picture reads the same in both.
enum DrawingStyle {
    static let guestHeader = "#d1fae5"
    static let shadowHeader = "#e0e7ff"
    static let hugeRow = "#bbf7d0"
    static let brokenRow = "#fee2e2"
    static let guestEdge = "#047857"
    static let hypervisorEdge = "#4338ca"
    static let shadowsEdge = "#6b7280"

    /// The header colour of a node: its strongest mark decides.
    static func header(_ node: PageTableGraph.Node) -> String {
        for mark in PageTableGraph.Mark.allCases where node.marks.contains(mark) { return colour(mark) }
        return node.side == .guest ? guestHeader : shadowHeader
    }

    static func colour(_ mark: PageTableGraph.Mark) -> String {
        switch mark {
        case .local: "#93c5fd"
        case .special: "#fdba74"
        case .unsync: "#fde047"
        case .writeTracked: "#fca5a5"
        case .writeProtected: "#fbcfe8"
        case .direct: "#e5e7eb"
        case .invalid: "#9ca3af"
        }
    }

    /// Local pages have a dashed border, invalid ones a dotted one.
    static func border(_ node: PageTableGraph.Node) -> String? {
        if node.marks.contains(.invalid) { return "dotted" }
        if node.marks.contains(.local) || node.marks.contains(.special) { return "dashed" }
        return nil
    }
}
