import ScenarioLanguage
import ScenarioVisualization
import Testing

// The quick start of the ScenarioVisualization catalogue, compiled and run.
@Suite struct ScenarioVisualizationQuickStart {
    @Test func aShadowPagedGuestIsDrawn() throws {
        let drawn = try ScenarioParser.parse("""
            machine memory=16M
            mmu shadow
            poke 0x1000 0x2003
            poke 0x2004 0x5003
            cr3 0x1000
            cr0 0x80000001
            read 0x1000
            """, fileName: "draw.scenario")
        let graph = try PageTableGraph.draw(drawn, at: nil, maxEntriesPerNode: PageTableGraph.defaultMaxEntriesPerNode)
        let dotText = graph.dot

        #expect(graph.nodes(on: .guest).count == 2)
        #expect(graph.nodes(on: .hypervisor).count >= 2)
        #expect(dotText.hasPrefix("digraph"))
    }
}
