import Foundation
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVisualization
import TestSupport
import Testing

private let examples = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("examples")

/// An example scenario, parsed; `mmu` replaces its `mmu` line when given.
func example(_ name: String, mmu: MMUConfiguration? = nil) throws -> Scenario {
    let text = try String(contentsOf: examples.appendingPathComponent(name), encoding: .utf8)
    var scenario = try ScenarioParser.parse(text, fileName: "examples/" + name)
    if let mmu { scenario.mmu = mmu }
    return scenario
}

extension PageTableGraph {
    func edges(_ kind: Edge.Kind, from: String? = nil, to: String? = nil) -> [Edge] {
        edges.filter { $0.kind == kind && (from == nil || $0.from == from) && (to == nil || $0.to == to) }
    }

    func entry(_ node: String, _ index: Int) -> Entry? { self.node(node)?.entries.first { $0.index == index } }
}

/// The structure of drawings: which tables, entries, marks and edges a
/// picture of the guest's and the hypervisor's tables holds, on examples that
/// cover each kind of root (DESIGN.md §4 rows 2–5).
@Suite("Page-table graph")
struct PageTableGraphTests {
    /// Properties every graph must have, whatever it shows.
    func checkConsistency(_ graph: PageTableGraph, sourceLocation: SourceLocation = #_sourceLocation) {
        let ids = Set(graph.nodes.map(\.id))
        #expect(ids.count == graph.nodes.count, "node ids are unique", sourceLocation: sourceLocation)
        let rootIDs = Set(graph.roots.map(\.id))
        for edge in graph.edges {
            #expect(ids.contains(edge.to), "edge to a missing node: \(edge)", sourceLocation: sourceLocation)
            #expect(ids.contains(edge.from) || rootIDs.contains(edge.from), "edge from a missing node: \(edge)", sourceLocation: sourceLocation)
            if edge.kind == .entry {
                let entry = graph.entry(edge.from, edge.entry ?? -1)
                #expect(entry?.child == edge.to, "entry edge \(edge) matches its entry's child", sourceLocation: sourceLocation)
            }
            if edge.kind == .shadows {
                #expect(graph.node(edge.from)?.side == .hypervisor && graph.node(edge.to)?.side == .guest, "\(edge)", sourceLocation: sourceLocation)
            }
        }
        for node in graph.nodes {
            #expect(node.entries.count <= graph.maxEntriesPerNode, "\(node.id) lists at most the cap", sourceLocation: sourceLocation)
            #expect(node.entries.map(\.index) == node.entries.map(\.index).sorted(), "\(node.id) lists entries in order", sourceLocation: sourceLocation)
            for entry in node.entries where entry.kind == .table {
                #expect(entry.child != nil, "\(node.id) entry \(entry.index) points to a drawn table", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func shadowPAEAtTheEnd() throws {
        let graph = try PageTableGraph.draw(try example("shadow-pae.scenario"))
        checkConsistency(graph)
        // Guest: the PDPTE registers (both pointing at PD0 after the reload), PD0, the PT.
        #expect(Set(graph.nodes(on: .guest).map(\.id)) == ["g-pdpte-v0", "g8-L2-0x2000", "g8-L1-0x4000"])
        #expect(graph.edges(.entry, from: "g-pdpte-v0").map(\.entry) == [0, 1])
        #expect(graph.edges(.entry, from: "g-pdpte-v0").allSatisfy { $0.to == "g8-L2-0x2000" })
        #expect(graph.entry("g8-L2-0x2000", 1)?.hugePageSize == "2M")
        #expect(graph.entry("g8-L2-0x2000", 0)?.hugePageSize == nil)
        // The PD is shadowed by a level-2 page: write-tracked. The PT's shadow is in sync again after INVLPG.
        #expect(graph.node("g8-L2-0x2000")?.marks == [.writeTracked])
        #expect(graph.node("g8-L1-0x4000")?.marks == [.writeProtected])
        // Hypervisor: a local level-3 root, one level-2 page, an indirect and a direct level-1 page.
        let hypervisor = graph.nodes(on: .hypervisor)
        #expect(hypervisor.map(\.level) == [3, 2, 1, 1])
        let root = try #require(graph.roots.first { $0.side == .hypervisor }?.node)
        #expect(graph.node(root)?.marks == [.local])
        #expect(graph.edges(.shadows, from: root).map(\.to) == ["g-pdpte-v0"], "the local root mirrors the PDPTE registers")
        let pd = hypervisor[1], pt = hypervisor[2], direct = hypervisor[3]
        #expect(graph.edges(.shadows, from: pd.id).map(\.to) == ["g8-L2-0x2000"])
        #expect(graph.edges(.shadows, from: pt.id).map(\.to) == ["g8-L1-0x4000"])
        #expect(direct.marks == [.direct])
        #expect(graph.edges(.shadows, from: direct.id).isEmpty, "a direct page shadows no guest table")
        #expect(direct.details.contains("maps gfn 0x400–0x5ff"))
        #expect(graph.edges(.entry, from: root).count == 2, "two PDPTEs present, both to the one PD shadow")
    }

    @Test func shadowPAEWhileThePageTableIsUnsync() throws {
        // Line 48: the store to PT[1] made the PT's shadow unsync; INVLPG (line 49) has not run.
        let graph = try PageTableGraph.draw(try example("shadow-pae.scenario"), at: 48)
        checkConsistency(graph)
        let pt = try #require(graph.nodes(on: .hypervisor).first { graph.edges(.shadows, from: $0.id).first?.to == "g8-L1-0x4000" })
        #expect(pt.marks == [.unsync])
        #expect(graph.node("g8-L1-0x4000")?.marks == [], "an unsync shadow leaves the guest table writable")
        #expect(graph.node("g8-L2-0x2000")?.marks == [.writeTracked])
    }

    @Test func shadowPAEBeforeTheFirstAccess() throws {
        // Line 28 turned paging on: nothing has run, so there is no root yet.
        let graph = try PageTableGraph.draw(try example("shadow-pae.scenario"), at: 28)
        checkConsistency(graph)
        #expect(graph.nodes(on: .hypervisor).isEmpty)
        #expect(graph.notes.contains { $0.hasPrefix("vCPU 0: no hypervisor root yet") })
        #expect(Set(graph.nodes(on: .guest).map(\.id)) == ["g-pdpte-v0", "g8-L2-0x2000", "g8-L2-0x3000", "g8-L1-0x4000"])
        #expect(graph.nodes(on: .guest).allSatisfy { $0.marks.isEmpty }, "nothing is shadowed yet")
        let early = try PageTableGraph.draw(try example("shadow-pae.scenario"), at: 1)
        #expect(early.nodes.isEmpty)
        #expect(early.notes.contains { $0.contains("paging is off") })
    }

    @Test func fourLevelUnderShadowPaging() throws {
        let graph = try PageTableGraph.draw(try example("4-level.scenario", mmu: .shadow(host: .bits64)))
        checkConsistency(graph)
        let guest = Set(graph.nodes(on: .guest).map(\.id))
        #expect(guest == ["g8-L4-0x1000", "g8-L3-0x2000", "g8-L2-0x3000", "g8-L1-0x4000"])
        #expect(graph.entry("g8-L3-0x2000", 1)?.hugePageSize == "1G")
        #expect(graph.entry("g8-L2-0x3000", 1)?.hugePageSize == "2M")
        for id in ["g8-L4-0x1000", "g8-L3-0x2000", "g8-L2-0x3000"] {
            #expect(graph.node(id)?.marks == [.writeTracked], "\(id): upper-level guest tables are write-tracked")
        }
        let hypervisor = graph.nodes(on: .hypervisor)
        #expect(hypervisor.first?.level == 4)
        #expect(hypervisor.allSatisfy { !$0.marks.contains(.local) }, "a 4-level root has no local pages")
        // Every indirect shadow page shadows the guest table of its own level and gfn.
        for page in hypervisor where !page.marks.contains(.direct) {
            let shadowed = graph.edges(.shadows, from: page.id)
            #expect(shadowed.count == 1, "\(page.id) shadows one guest table")
            #expect(shadowed.first.flatMap { graph.node($0.to) }?.level == page.level)
        }
        // The guest's huge pages are mapped by direct pages.
        #expect(hypervisor.contains { $0.marks.contains(.direct) })
    }

    @Test func fourLevelNative() throws {
        let graph = try PageTableGraph.draw(try example("4-level.scenario"))
        checkConsistency(graph)
        #expect(graph.hypervisorHeading == nil)
        #expect(graph.nodes(on: .hypervisor).isEmpty)
        #expect(graph.nodes.count == 4)
        #expect(graph.nodes.allSatisfy { $0.marks.isEmpty })
        #expect(!graph.dot.contains("cluster_hypervisor"))
    }

    @Test func thirtyTwoBitUnderShadowPaging() throws {
        // Line 35: after the four accesses, before the guest edits its PD.
        let graph = try PageTableGraph.draw(try example("shadow-32-bit.scenario"), at: 35)
        checkConsistency(graph)
        #expect(Set(graph.nodes(on: .guest).map(\.id)) == ["g4-L2-0x1000", "g4-L1-0x2000"])
        #expect(graph.node("g4-L2-0x1000")?.entries.map(\.index) == [0, 1, 768])
        #expect(graph.entry("g4-L2-0x1000", 1)?.hugePageSize == "4M")
        #expect(graph.node("g4-L1-0x2000")?.entries.map(\.index) == [1, 513])
        #expect(graph.node("g4-L2-0x1000")?.marks == [.writeTracked])
        let root = try #require(graph.roots.first { $0.side == .hypervisor }?.node)
        #expect(graph.node(root)?.marks == [.local])
        #expect(graph.edges(.shadows, from: root).isEmpty, "a 32-bit guest has no table behind the PAE root")
        #expect(graph.edges(.entry, from: root).map(\.entry) == [0, 3], "GiB 0 and GiB 3 were touched")
        // Quadrants: two level-2 pages shadow the one guest PD, two level-1 pages the one guest PT.
        let pds = graph.nodes(on: .hypervisor).filter { $0.level == 2 }
        #expect(pds.count == 2)
        #expect(pds.allSatisfy { graph.edges(.shadows, from: $0.id).map(\.to) == ["g4-L2-0x1000"] })
        #expect(Set(pds.flatMap(\.details).filter { $0.hasPrefix("shadows") }) == [
            "shadows the guest PD at gpa 0x1000, quadrant 0", "shadows the guest PD at gpa 0x1000, quadrant 3",
        ])
        let pts = graph.nodes(on: .hypervisor).filter { $0.level == 1 && !$0.marks.contains(.direct) }
        #expect(pts.count == 2)
        #expect(pts.allSatisfy { graph.edges(.shadows, from: $0.id).map(\.to) == ["g4-L1-0x2000"] })
        // The 4 MiB page: a direct level-1 page for the 2 MiB half that was touched.
        #expect(graph.nodes(on: .hypervisor).contains { $0.marks == [.direct] && $0.details.contains("maps gfn 0x400–0x5ff") })
    }

    @Test func tdpWithEPT() throws {
        let graph = try PageTableGraph.draw(try example("tdp-ept.scenario"))
        checkConsistency(graph)
        #expect(graph.hypervisorHeading?.contains("EPT") == true)
        #expect(graph.nodes(on: .guest).count == 4)
        #expect(graph.nodes(on: .guest).allSatisfy { $0.marks.isEmpty }, "TDP does not write-protect guest tables")
        let hypervisor = graph.nodes(on: .hypervisor)
        #expect(hypervisor.map(\.level) == [4, 3, 2])
        #expect(hypervisor.allSatisfy { $0.marks == [.direct] })
        #expect(graph.edges(.shadows).isEmpty)
        let leaf = try #require(hypervisor.last?.entries.first)
        #expect(leaf.hugePageSize == "2M", "the EPT maps guest memory with 2 MiB pages")
        #expect(leaf.text.hasPrefix("gfn 0x0 → host "))
        #expect(hypervisor.first?.details.first == "maps gfn 0x0–0xfffffffff")
    }

    @Test func entriesAreCappedPerNode() throws {
        var lines = ["machine memory=64M", "mmu shadow", "poke 0x1000 0x2007", "poke 0x2000 0x3007", "poke 0x3000 0x4007"]
        for index in 0..<20 { lines.append("poke \((0x4000 + 8 * index).hexString) \((0x100007 + 0x1000 * index).hexString)") }
        lines += ["cr4 0x20", "cr3 0x1000", "efer 0x100", "cr0 0x80010001"]
        for index in 0..<20 { lines.append("read \((0x1000 * index).hexString)") }
        let scenario = try ScenarioParser.parse(lines.joined(separator: "\n"), fileName: "big.scenario")
        let graph = try PageTableGraph.draw(scenario, maxEntriesPerNode: 16)
        checkConsistency(graph)
        let pt = try #require(graph.node("g8-L1-0x4000"))
        #expect(pt.entries.map(\.index) == Array(0..<16))
        #expect(pt.omittedEntries == 4)
        let shadowPT = try #require(graph.nodes(on: .hypervisor).first { $0.level == 1 })
        #expect(shadowPT.entries.count == 16 && shadowPT.omittedEntries == 4)
        #expect(graph.dot.contains("… 4 more present entries (not shown)"))
        let small = try PageTableGraph.draw(scenario, maxEntriesPerNode: 1)
        #expect(small.node("g8-L1-0x4000")?.omittedEntries == 19)
    }

    @Test func aBadLineIsRejected() {
        #expect(throws: ScenarioError(file: "f.scenario", line: 60, column: 1, message: "expected --at to name a line of the scenario (1…53), found 60")) {
            try PageTableGraph.checkLine(60, lineCount: 53, fileName: "f.scenario")
        }
        #expect(throws: ScenarioError.self) { try PageTableGraph.checkLine(0, lineCount: 53, fileName: "f.scenario") }
        #expect(throws: Never.self) { try PageTableGraph.checkLine(53, lineCount: 53, fileName: "f.scenario") }
    }

    @Test func dotHasAClusterPerSideAPortPerEntryAndEscapedText() throws {
        var scenario = try example("shadow-pae.scenario")
        scenario.fileName = "quote\"and\\back<slash>.scenario"
        let graph = try PageTableGraph.draw(scenario)
        let dot = graph.dot
        #expect(dot.hasPrefix("digraph page_tables {"))
        #expect(dot.hasSuffix("}\n"))
        #expect(dot.contains("subgraph cluster_guest {") && dot.contains("subgraph cluster_hypervisor {") && dot.contains("subgraph cluster_legend {"))
        #expect(dot.contains("label=\"quote\\\"and\\\\back<slash>.scenario at the end"), "the title is a quoted DOT string")
        for node in graph.nodes {
            #expect(dot.contains("\"\(node.id)\" [label=<"), "\(node.id) is declared")
            for entry in node.entries { #expect(dot.contains("PORT=\"e\(entry.index)\""), "\(node.id) has a port for entry \(entry.index)") }
        }
        for edge in graph.edges(.entry) {
            #expect(dot.contains("\"\(edge.from)\":e\(edge.entry!):e -> \"\(edge.to)\":h:n"))
        }
        for edge in graph.edges(.shadows) {
            #expect(dot.contains("\"\(edge.from)\":h -> \"\(edge.to)\":h [style=dashed"))
        }
        #expect(dot.contains("mirrors the guest&#39;s PDPTE registers"), "HTML-like labels are escaped")
        #expect(dot.contains("STYLE=\"dashed\""), "the local root has a dashed border")
        #expect(dot.contains("BGCOLOR=\"#bbf7d0\"><B>[1] 2M"), "huge mappings are highlighted")
        // Braces balance outside quoted strings and labels: a cheap syntax check (Graphviz itself runs in the CLI tests).
        var depth = 0, inString = false, escaped = false, angle = 0, balanced = true
        for character in dot.replacingOccurrences(of: " -> ", with: " ") {
            if inString {
                if escaped { escaped = false } else if character == "\\" { escaped = true } else if character == "\"" { inString = false }
                continue
            }
            switch character {
            case "\"" where angle == 0: inString = true
            case "<": angle += 1
            case ">": angle -= 1
            case "{" where angle == 0: depth += 1
            case "}" where angle == 0: depth -= 1
            default: break
            }
            if depth < 0 || angle < 0 { balanced = false }
        }
        #expect(balanced && depth == 0 && angle == 0)
    }

    @Test func svgDrawsEveryTableWithPrefixedIds() throws {
        let graph = try PageTableGraph.draw(try example("shadow-32-bit.scenario"))
        let svg = graph.svg(idPrefix: "p7")
        #expect(svg.hasPrefix("<svg class=\"page-tables\" id=\"p7-svg\""))
        #expect(svg.hasSuffix("</svg>"))
        for node in graph.nodes {
            #expect(svg.contains("id=\"p7-\(node.id)\""), "\(node.id) is drawn")
        }
        #expect(svg.components(separatedBy: "<g class=\"table-node ").count - 1 == graph.nodes.count)
        #expect(svg.components(separatedBy: "class=\"edge edge-shadows\"").count - 1 == graph.edges(.shadows).count)
        #expect(svg.contains("class=\"table-node side-hypervisor level-3 mark-local\""))
        #expect(svg.contains("class=\"entry-huge\""))
        #expect(!svg.contains("http"), "no namespace or link: inline SVG needs none")
    }
}

extension Int {
    var hexString: String { "0x" + String(self, radix: 16) }
}

/// A vCPU running L2: the drawing shows L1's nested tables (what L0
/// shadows) beside L0's shadow of them, with the local levels of row 9.
@Suite("Drawing nested paging")
struct NestedDrawingTests {
    @Test("PAE L1 on a 4-level L0: L1's nested tables, two local levels, shadows edges to L1's tables")
    func paeL1OnFourLevelL0() throws {
        let graph = try PageTableGraph.draw(try example("nested-npt-pae.scenario"))
        let guest = graph.nodes(on: .guest)
        // nPDPT, two nPDs, two nPTs.
        #expect(guest.count == 5, "\(guest.map(\.title))")
        #expect(guest.contains { $0.title.contains("0x10000") })
        #expect(graph.guestHeading.hasPrefix("L1's nested page tables"))
        let hypervisor = graph.nodes(on: .hypervisor)
        #expect(hypervisor.filter { $0.marks.contains(.local) }.map(\.level).sorted() == [3, 4])
        #expect(hypervisor.filter { !$0.marks.contains(.local) }.count == 4)
        // Every hashed shadow page points back at the L1 table it shadows.
        #expect(graph.edges.filter { $0.kind == .shadows }.count == 4)
        // L1's directories are write-tracked by L0.
        #expect(guest.filter { $0.marks.contains(.writeTracked) }.count == 2)
    }

    @Test("EPT L1: L1's EPT tables beside L0's shadow EPT, each shadow page pointing at the EPT table it shadows")
    func eptL1() throws {
        let graph = try PageTableGraph.draw(try example("nested-ept.scenario"))
        let guest = graph.nodes(on: .guest)
        #expect(guest.map(\.title).sorted() == [
            "EPT PD at gpa 0x22000", "EPT PDPT at gpa 0x21000", "EPT PML4 at gpa 0x20000", "EPT PT at gpa 0x23000",
        ].sorted(), "\(guest.map(\.title))")
        #expect(graph.nodes(on: .hypervisor).count == 4)
        #expect(graph.edges.filter { $0.kind == .shadows }.count == 4)
        // The EPT PT's entry for L2-physical 0x5000 is read and execute only.
        let pt = try #require(guest.first { $0.title.contains("0x23000") })
        #expect(pt.entries.contains { $0.index == 5 && $0.kind == .leaf && $0.text.contains("0x105000") })
    }

    /// Issue 13: a nested picture's two side headings ran into each other (and
    /// the right one out of the picture). Each heading line, at 7.4 px a
    /// character (bold 12 px monospace renders at about 7), must end before
    /// the next side's heading and inside the picture; scripts/check-report.sh
    /// measures the same in Chromium.
    @Test("Side headings wrap to end before the next side and inside the picture",
          arguments: ["nested-ept.scenario", "nested-npt-pae.scenario", "shadow-pae.scenario", "tdp-ept.scenario"])
    func sideHeadingsFit(_ name: String) throws {
        let svg = try PageTableGraph.draw(try example(name)).svg(idPrefix: "p")
        let width = try #require(svg.firstMatch(of: /<svg [^>]*width="([0-9.]+)"/).flatMap { Double($0.1) })
        var sides: [(x: Double, end: Double)] = []
        for heading in svg.matches(of: /<text class="side-heading[^>]*>(.*?)<\/text>/) {
            let lines = heading.1.matches(of: /<tspan x="([0-9.]+)"[^>]*>([^<]*)<\/tspan>/)
            let x = try #require(lines.first.flatMap { Double($0.1) }, "\(name): a heading without lines: \(heading.0)")
            let characters = lines.map { line in
                line.2.replacing(/&(#39|amp|lt|gt|quot);/) { _ in "'" }.count
            }
            sides.append((x, x + Double(characters.max() ?? 0) * 7.4))
        }
        #expect(!sides.isEmpty, "\(name): no side headings")
        for (left, right) in zip(sides, sides.dropFirst()) {
            #expect(left.end < right.x, "\(name): a heading ending at x \(left.end) runs into the next, at x \(right.x)")
        }
        #expect((sides.last?.end ?? 0) <= width, "\(name): the last heading ends at x \(sides.last?.end ?? 0), past the picture's width \(width)")
    }
}
