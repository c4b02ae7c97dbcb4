import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVisualization
import TestSupport
import Testing

/// Parses `text` as XML (the report is written as well-formed XHTML-style
/// markup) and collects every element's name, id and class.
private final class Elements: NSObject, XMLParserDelegate {
    var names: [String] = []
    var ids: [String] = []
    var classes: [String: Int] = [:]
    var error: String?

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        names.append(name)
        if let id = attributes["id"] { ids.append(id) }
        for word in (attributes["class"] ?? "").split(separator: " ") { classes[String(word), default: 0] += 1 }
    }

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: Error) {
        error = "line \(parser.lineNumber), column \(parser.columnNumber): \(parseError)"
    }

    static func parse(_ html: String) -> Elements {
        let elements = Elements()
        // The doctype has no DTD: drop it so the XML parser reads the rest.
        let body = html.replacingOccurrences(of: "<!DOCTYPE html>", with: "")
        let parser = XMLParser(data: Data(body.utf8))
        parser.delegate = elements
        if !parser.parse(), elements.error == nil { elements.error = "\(parser.parserError.map { "\($0)" } ?? "unknown error")" }
        return elements
    }
}

@Suite("Scenario report")
struct ScenarioReportTests {
    static func source(_ name: String) throws -> String {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples").appendingPathComponent(name)
        return try String(contentsOf: url, encoding: .utf8)
    }

    static func report(_ name: String, at lines: [Int] = []) throws -> ScenarioReport {
        let text = try source(name)
        return try ScenarioReport.run(try ScenarioParser.parse(text, fileName: "examples/" + name), source: text, pictureLines: lines)
    }

    @Test func htmlIsWellFormedWithItsKeyElements() throws {
        let report = try Self.report("shadow-pae.scenario", at: [30, 48])
        let html = report.html
        #expect(html.hasPrefix("<!DOCTYPE html>\n<html lang=\"en\">"))
        let elements = Elements.parse(html)
        #expect(elements.error == nil, "the page is well-formed: \(elements.error ?? "")")
        #expect(Set(elements.ids).count == elements.ids.count, "ids are unique")
        for id in ["summary", "listing", "timeline", "timeline-chart", "counters", "counters-chart", "tables", "tables-at-30", "tables-at-48"] {
            #expect(elements.ids.contains(id), "#\(id) is present")
        }
        for line in 1...report.sourceLines.count {
            #expect(elements.ids.contains("line-\(line)"), "every source line has a row: line \(line)")
        }
        #expect(elements.classes["command"] == report.steps.count)
        let outcomes = report.outcomeCounts
        #expect(outcomes.ok == 5 && outcomes.fault == 2 && outcomes.gp == 0)
        #expect(html.components(separatedBy: "class=\"command ok\"").count - 1 == outcomes.ok)
        #expect(html.components(separatedBy: "class=\"command fault\"").count - 1 == outcomes.fault)
        #expect(elements.classes["expect-held"] == report.steps.filter { $0.command == "expect" }.count)
        #expect(elements.classes["expect-failed"] == nil)
        #expect(elements.classes["table-picture"] == 2)
        #expect(elements.classes["page-tables"] == 2)
        let nodes = report.pictures.map(\.graph.nodes.count).reduce(0, +)
        #expect(elements.classes["table-node"] == nodes, "every table of every picture is drawn")
        #expect(elements.names.contains("style"))
        #expect(!elements.names.contains("script") && !elements.names.contains("link") && !elements.names.contains("img"))
    }

    @Test func thePageReferencesNothingOutside() throws {
        for name in ["shadow-pae.scenario", "tdp-ept.scenario", "4-level.scenario", "shadow-32-bit.scenario"] {
            let html = try Self.report(name).html
            #expect(!html.contains("http://") && !html.contains("https://"), "\(name): no network address")
            #expect(!html.contains("src="), "\(name): nothing loaded")
            #expect(!html.contains("@import") && !html.contains("@font-face"))
            let urls = html.components(separatedBy: "url(").dropFirst()
            #expect(urls.allSatisfy { $0.hasPrefix("#") }, "\(name): url() only for markers in the same SVG")
            #expect(html.components(separatedBy: "href=\"").dropFirst().allSatisfy { $0.hasPrefix("#") }, "\(name): links stay in the page")
            #expect(Elements.parse(html).error == nil, "\(name) is well-formed")
        }
    }

    @Test func textIsEscaped() throws {
        let text = """
            # <script>alert("x")</script> & 'quoted' <b>bold</b>
            machine memory=16M
            mmu shadow
            poke 0x5000 0x1
            read 0x5000     # a <comment> with & in it
            """
        let name = "a<b>&\"c\".scenario"
        let report = try ScenarioReport.run(try ScenarioParser.parse(text, fileName: name), source: text)
        let html = report.html
        #expect(!html.contains("<script>") && !html.contains("<b>") && !html.contains("<comment>"))
        #expect(html.contains("# &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quoted&#39; &lt;b&gt;bold&lt;/b&gt;"))
        #expect(html.contains("a &lt;comment&gt; with &amp; in it"))
        #expect(html.contains("<h1>a&lt;b&gt;&amp;&quot;c&quot;.scenario</h1>"))
        #expect(html.contains("<title>ShadowMMU report: a&lt;b&gt;&amp;&quot;c&quot;.scenario</title>"))
        let elements = Elements.parse(html)
        #expect(elements.error == nil, "\(elements.error ?? "")")
        #expect(!elements.names.contains("script") && !elements.names.contains("b") && !elements.names.contains("comment"))
    }

    @Test func deltasAddUpToTheFinalCounters() throws {
        for name in ["shadow-pae.scenario", "tdp-ept.scenario", "shadow-32-bit.scenario", "multi-vcpu.scenario", "dirty-log.scenario"] {
            let report = try Self.report(name)
            let text = try Self.source(name)
            let runner = try ScenarioRunner(try ScenarioParser.parse(text, fileName: name))
            runner.run()
            let expected = Dictionary(runner.machine.statistics.printed, uniquingKeysWith: { first, _ in first })
            for counter in report.counterNames {
                let sum = report.steps.map { $0.delta(counter) }.reduce(0, +)
                #expect(sum == expected[counter], "\(name): the deltas of \(counter) add up to the counter after a plain run")
                #expect(report.total(counter) == expected[counter])
            }
        }
    }

    @Test func stepsCarryOutcomesAndWhatTheyCost() throws {
        let report = try Self.report("shadow-pae.scenario")
        let first = try #require(report.steps.first { $0.line == 30 })
        #expect(first.command == "read")
        #expect(first.observation?.event == .access(AccessCommand(kind: .read, address: 0x1000), .ok(gpa: 0x100000, value: 0xaaaa)))
        #expect(first.delta("exits") == 1 && first.delta("shadow_faults_fixed") == 1 && first.delta("guest_page_faults") == 0)
        #expect(first.delta("shadow_pages") == 2, "the first touch builds the PD and PT shadows")
        let injected = try #require(report.steps.first { $0.line == 36 })
        #expect(injected.observation?.event == .access(AccessCommand(kind: .write, address: 0x2000), .pageFault(errorCode: 3)))
        #expect(injected.delta("guest_page_faults") == 1)
        #expect(report.steps.filter { $0.command == "expect" }.allSatisfy { $0.expectationFailure == nil })
    }

    @Test func failedExpectationsAreShown() throws {
        let text = "machine memory=16M\nmmu shadow\nread 0x1000\nexpect fault\n"
        let report = try ScenarioReport.run(try ScenarioParser.parse(text, fileName: "f.scenario"), source: text)
        #expect(report.expectationFailures == 1)
        let html = report.html
        #expect(html.contains("<tr id=\"line-4\" class=\"command expect-failed\">"))
        #expect(html.contains("expected fault, got read → ok gpa=0x1000"))
    }

    @Test func picturesMatchDrawingsAtTheSameLines() throws {
        let report = try Self.report("shadow-pae.scenario", at: [44, 30, 48])
        #expect(report.pictures.map(\.line) == [30, 44, 48], "pictures in file order")
        let scenario = try ScenarioParser.parse(try Self.source("shadow-pae.scenario"), fileName: "examples/shadow-pae.scenario")
        for picture in report.pictures {
            var drawn = try PageTableGraph.draw(scenario, at: picture.line)
            drawn.title = picture.graph.title
            #expect(drawn == picture.graph, "the report's picture after line \(picture.line) is the drawing at that line")
        }
        let atEnd = try Self.report("shadow-pae.scenario")
        #expect(atEnd.pictures.map(\.line) == [atEnd.sourceLines.count])
    }

    @Test func badPictureLinesAreRejected() throws {
        let text = try Self.source("shadow-pae.scenario")
        let scenario = try ScenarioParser.parse(text, fileName: "p.scenario")
        #expect(throws: ScenarioError(file: "p.scenario", line: 54, column: 1, message: "expected --at to name a line of the scenario (1…53), found 54")) {
            try ScenarioReport.run(scenario, source: text, pictureLines: [30, 54])
        }
    }

    @Test func chartsHaveABarPerCountedEventAndALinePerCounter() throws {
        let report = try Self.report("shadow-pae.scenario")
        let timeline = report.timelineSVG
        let exitBars = timeline.components(separatedBy: "class=\"bar bar-exits\"").count - 1
        #expect(exitBars == report.steps.filter { $0.delta("exits") > 0 }.count)
        let counters = report.countersSVG
        for name in report.chartedCounterNames { #expect(counters.contains("class=\"series series-\(name)\"")) }
        #expect(report.chartedCounterNames == ["exits", "shadow_pages", "guest_page_faults", "vm_entries"])
        let native = try Self.report("4-level.scenario")
        #expect(native.chartedCounterNames == ["guest_page_faults"], "a native run charts what it has")
    }

    @Test func chartsFillThePageAndTheirAxisCountsScenarioLines() throws {
        let report = try Self.report("shadow-pae.scenario")
        for chart in [report.timelineSVG, report.countersSVG] {
            #expect(chart.hasPrefix("<svg class=\"chart ") && chart.contains("width=\"100%\" viewBox=\"0 0 900 220\""))
            let ticks = chart.components(separatedBy: "<text class=\"tick\"").dropFirst().compactMap { $0.split(separator: ">").dropFirst().first?.split(separator: "<").first }
            #expect(ticks.first.map(String.init) == String(report.steps.first?.line ?? -1), "the first tick is the first command's line: \(ticks)")
            #expect(ticks.compactMap { Int($0) }.allSatisfy { line in report.steps.contains { $0.line == line } })
        }
        #expect(report.html.contains("svg.chart { display: block; width: 100%; height: auto; }"))
        #expect(report.html.contains(".picture-scroll svg { display: block; max-width: 100%; height: auto; }"), "pictures scale to the page, never clipped")
    }

    @Test func moreCommandsThanPixelsAreBinned() throws {
        // 2,000 reads after paging is on: more commands than the 836-pixel plot.
        var text = """
            machine memory=16M
            mmu shadow
            poke 0x1000 0x2007
            poke 0x2000 0x3007
            poke 0x3000 0x4007
            poke 0x4000 0x100007
            cr4 0x20
            cr3 0x1000
            efer 0x100
            cr0 0x80000001

            """
        for index in 0..<2000 { text += "read \(index.isMultiple(of: 500) ? "0x\(String(0x1000 * (index / 500 + 1), radix: 16))" : "0x0")\n" }
        let scenario = try ScenarioParser.parse(text, fileName: "long.scenario")
        let report = try ScenarioReport.run(scenario, source: text)
        let timeline = report.timelineSVG
        let plotWidth = 900.0 - 48 - 16
        let columns = report.steps.count / Int((Double(report.steps.count) / plotWidth).rounded(.up))
        #expect(Double(columns) <= plotWidth)
        #expect(timeline.contains("commands per column"), "the axis says the columns are binned")
        #expect(timeline.contains("(3 commands) — exits"), "a bar's tooltip names its lines and commands")
        // Binning keeps every exit: the bars' tooltips add up to the run's exits.
        var exits = 0
        for title in timeline.components(separatedBy: "class=\"bar bar-exits\"").dropFirst() {
            if let range = title.range(of: #"exits (\d+)"#, options: .regularExpression) { exits += Int(title[range].dropFirst(6)) ?? 0 }
        }
        #expect(exits == report.steps.reduce(0) { $0 + $1.delta("exits") } && exits > 0)
    }

    @Test func theTablesCaptionNamesWhatEachColumnHolds() throws {
        let nested = try Self.report("nested-npt-pae.scenario").html
        #expect(nested.contains("<p>Left: L1&#39;s nested page tables"), "a nested run's left column is L1's nested tables")
        #expect(!nested.contains("walked from each vCPU&#39;s CR3"))
        let shadow = try Self.report("shadow-pae.scenario").html
        #expect(shadow.contains("<p>Left: guest page tables (PAE; guest-physical addresses). Right: shadow pages"))
    }
}
