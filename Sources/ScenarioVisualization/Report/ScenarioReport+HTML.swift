import X86Paging
import ScenarioLanguage
import ScenarioRuntime

/// The report as one self-contained HTML page: inline CSS and SVG, no
/// scripts, no fonts, no reference to any other file or address, so it opens
/// the same anywhere, offline.
///
/// Stable hooks for tests and tools: sections `#summary`, `#listing`,
/// `#timeline`, `#counters`, `#tables`; listing rows `tr#line-N` (class
/// `command` plus `ok`/`fault`/`gp` for accesses, `expect-failed` for a failed
/// expectation); charts `svg#timeline-chart` and `svg#counters-chart`;
/// pictures `figure.table-picture#tables-at-N`, each holding one
/// `svg.page-tables` whose tables are `g.table-node`.
extension ScenarioReport {
    static func escaped(_ text: String) -> String { PageTableGraph.htmlEscaped(text) }

    public var html: String {
        var out: [String] = []
        out.append("<!DOCTYPE html>")
        out.append("<html lang=\"en\">")
        out.append("<head>")
        out.append("<meta charset=\"utf-8\"/>")
        out.append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>")
        out.append("<title>\(Self.escaped("ShadowMMU report: \(fileName)"))</title>")
        out.append("<style>\n\(Self.css)\n</style>")
        out.append("</head>")
        out.append("<body>")
        out += summarySection
        out += listingSection
        out += timelineSection
        out += countersSection
        out += tablesSection
        out.append("<footer><p>Written by <code>shadowmmu report</code>. This page is self-contained: it loads nothing.</p></footer>")
        out.append("</body>")
        out.append("</html>")
        return out.joined(separator: "\n") + "\n"
    }

    var summarySection: [String] {
        let outcomes = outcomeCounts
        var facts: [(String, String)] = [
            ("configuration", configuration),
            ("commands", "\(steps.count)"),
            ("accesses", "\(outcomes.ok) ok, \(outcomes.fault) page faults, \(outcomes.gp) #GP"),
        ]
        for name in ["exits", "shadow_faults_fixed", "guest_page_faults", "shadow_pages", "vm_entries"] where counterNames.contains(name) {
            facts.append((name, "\(total(name))"))
        }
        facts.append(("expectations failed", "\(expectationFailures)"))
        var out = ["<header id=\"summary\">", "<h1>\(Self.escaped(fileName))</h1>", "<dl class=\"totals\">"]
        for (name, value) in facts {
            out.append("<div class=\"total\"><dt>\(Self.escaped(name))</dt><dd>\(Self.escaped(value))</dd></div>")
        }
        out.append("</dl>")
        out.append("<nav><a href=\"#listing\">scenario</a> · <a href=\"#timeline\">exits and faults</a> · <a href=\"#counters\">counters</a> · <a href=\"#tables\">page tables</a></nav>")
        out.append("</header>")
        return out
    }

    /// What the listing says a command produced.
    static func outcome(of step: Step) -> (classes: [String], html: String) {
        guard let observation = step.observation else { return ([], "") }
        switch observation.event {
        case .access(_, .ok(let gpa, let value)):
            return (["ok"], "<span class=\"badge ok\">ok</span> gpa \(gpa.hex)" + (value.map { " value \($0.hex)" } ?? ""))
        case .access(_, .pageFault(let code)):
            let decoded = escaped(PageFaultErrorCode(rawValue: code).description)
            return (["fault"], "<span class=\"badge fault\">fault</span> ec \(code.hex) <span class=\"decoded\">\(decoded)</span>")
        case .access(_, .generalProtection):
            return (["gp"], "<span class=\"badge gp\">gp</span>")
        case .access(_, .nestedFault(let fault)):
            return (["fault", "nested"], "<span class=\"badge fault\">\(fault.result)</span> to L1 at L2-physical \(fault.guestPhysicalAddress.hex)"
                + (fault.information.map { " <span class=\"decoded\">\(fault.result.informationName) \($0.hex)</span>" } ?? ""))
        case .peek(_, let value):
            return (["peek"], "value \(value.hex)")
        case .registerWrite(_, let accepted):
            return accepted ? (["accepted"], "<span class=\"muted\">accepted</span>") : (["gp"], "<span class=\"badge gp\">gp</span> rejected")
        case .dirtyLog(let gfns):
            return (["dirty-log"], "\(gfns.count) dirty frames")
        }
    }

    var listingSection: [String] {
        var byLine: [Int: Step] = [:]
        for step in steps { byLine[step.line] = step }
        var out = [
            "<section id=\"listing\">", "<h2>Scenario</h2>",
            "<p>Each command with its outcome; the last columns count what it cost: exits to the hypervisor, faults the hypervisor fixed, page faults delivered to the guest, and any other counter that changed.</p>",
            "<div class=\"listing-scroll\">", "<table class=\"listing\">",
            "<thead><tr><th>line</th><th>vCPU</th><th>source</th><th>outcome</th><th>exits</th><th>fixed</th><th>guest #PF</th><th>other changes</th></tr></thead>",
            "<tbody>",
        ]
        for (offset, text) in sourceLines.enumerated() {
            let line = offset + 1
            guard let step = byLine[line] else {
                let trimmed = text.drop { $0 == " " || $0 == "\t" }
                let kind = trimmed.isEmpty ? "blank" : trimmed.hasPrefix("#") ? "comment" : "setup"
                out.append("<tr id=\"line-\(line)\" class=\"\(kind)\"><td class=\"line-number\">\(line)</td><td></td><td class=\"source\"><code>\(Self.escaped(text))</code></td><td></td><td></td><td></td><td></td><td></td></tr>")
                continue
            }
            var (classes, outcome) = Self.outcome(of: step)
            classes.insert("command", at: 0)
            if step.command == "expect" {
                if let failure = step.expectationFailure {
                    classes.append("expect-failed")
                    outcome = "<span class=\"badge fault\">failed</span> \(Self.escaped(failure))"
                } else {
                    classes.append("expect-held")
                    outcome = "<span class=\"badge ok\">held</span>"
                }
            }
            let shown = Set(Self.timelineCounters)
            let others = step.deltas.filter { !shown.contains($0.key) }.sorted { $0.key < $1.key }
                .map { "\($0.key) \($0.value > 0 ? "+" : "")\($0.value)" }.joined(separator: ", ")
            let cells = Self.timelineCounters.map { name in
                let value = step.delta(name)
                return "<td class=\"count\(value == 0 ? " zero" : "")\">\(value)</td>"
            }.joined()
            out.append("<tr id=\"line-\(line)\" class=\"\(classes.joined(separator: " "))\"><td class=\"line-number\">\(line)</td><td class=\"vcpu\">\(step.vcpu)</td><td class=\"source\"><code>\(Self.escaped(text))</code></td><td class=\"outcome\">\(outcome)</td>\(cells)<td class=\"changes\">\(Self.escaped(others))</td></tr>")
        }
        out += ["</tbody>", "</table>", "</div>", "</section>"]
        return out
    }

    func chartLegend(_ names: [String]) -> String {
        "<p class=\"chart-legend\">" + names.enumerated().map { index, name in
            "<span class=\"swatch\" style=\"background:\(Self.seriesColours[index % Self.seriesColours.count])\"></span>\(Self.escaped(name))"
        }.joined(separator: " ") + " <span class=\"swatch picture\"></span>table picture</p>"
    }

    var timelineSection: [String] {
        [
            "<section id=\"timeline\">", "<h2>Exits and faults per command</h2>",
            "<p>One slot per command (in file order); each bar is what that command added to a counter. Hover a bar for its line.</p>",
            chartLegend(Self.timelineCounters), "<div class=\"chart-scroll\">", timelineSVG, "</div>", "</section>",
        ]
    }

    var countersSection: [String] {
        let names = chartedCounterNames
        return [
            "<section id=\"counters\">", "<h2>Counters over time</h2>",
            "<p>The value of each counter after every command.</p>",
            chartLegend(names), "<div class=\"chart-scroll\">", countersSVG, "</div>",
            "<table class=\"final-counters\"><thead><tr><th>counter</th><th>at the end</th></tr></thead><tbody>",
        ] + counterNames.map { "<tr><td>\(Self.escaped($0))</td><td class=\"count\">\(total($0))</td></tr>" } + ["</tbody></table>", "</section>"]
    }

    /// What the two columns of the pictures hold, in the pictures' own
    /// words (a nested run's left column is L1's nested tables, not the
    /// guest's tables from CR3).
    var tablesCaption: String {
        guard let graph = pictures.last?.graph else { return "" }
        let left = graph.guestHeading == "guest page tables" ? "the guest's tables, walked from each vCPU's CR3" : graph.guestHeading
        guard let right = graph.hypervisorHeading else { return "The \(left)." }
        return "Left: \(left). Right: \(right), from each vCPU's root."
    }

    var tablesSection: [String] {
        var out = [
            "<section id=\"tables\">", "<h2>Page tables</h2>",
            "<p>\(Self.escaped(tablesCaption)) One row per paging level; a dashed arrow goes from a shadow page to the guest table it shadows. Hover a table for all its lines.</p>",
            "<ul class=\"legend\">",
        ]
        for mark in PageTableGraph.Mark.allCases {
            out.append("<li class=\"legend-\(mark.rawValue)\"><span class=\"swatch\" style=\"background:\(DrawingStyle.colour(mark))\"></span>\(Self.escaped(mark.legend))</li>")
        }
        out.append("<li class=\"legend-huge\"><span class=\"swatch\" style=\"background:\(DrawingStyle.hugeRow)\"></span>huge mapping (2M / 4M / 1G leaf entry)</li>")
        out.append("<li><span class=\"swatch\" style=\"background:\(DrawingStyle.guestHeader)\"></span>guest table</li>")
        out.append("<li><span class=\"swatch\" style=\"background:\(DrawingStyle.shadowHeader)\"></span>hypervisor table</li>")
        out.append("<li>dashed border: local page</li>")
        out.append("</ul>")
        for (number, picture) in pictures.enumerated() {
            out.append("<figure class=\"table-picture\" id=\"tables-at-\(picture.line)\">")
            out.append("<figcaption>After line \(picture.line)" + (picture.line <= sourceLines.count ? ": <code>\(Self.escaped(sourceLines[picture.line - 1]))</code>" : "") + "</figcaption>")
            if !picture.graph.notes.isEmpty {
                out.append("<ul class=\"notes\">" + picture.graph.notes.map { "<li>\(Self.escaped($0))</li>" }.joined() + "</ul>")
            }
            out.append("<div class=\"picture-scroll\">")
            out.append(picture.graph.svg(idPrefix: "picture\(number)"))
            out.append("</div>")
            out.append("</figure>")
        }
        out.append("</section>")
        return out
    }

    static let css = """
        body { font-family: system-ui, sans-serif; margin: 1.5em; color: #111827; background: #ffffff; }
        h1 { font-size: 1.4em; margin: 0 0 .4em; }
        h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #e5e7eb; }
        dl.totals { display: flex; flex-wrap: wrap; gap: .4em 1.4em; margin: .4em 0; }
        dl.totals .total { display: flex; gap: .4em; }
        dl.totals dt { color: #6b7280; }
        dl.totals dd { margin: 0; font-weight: bold; }
        table.listing, table.final-counters { border-collapse: collapse; font-size: 13px; }
        table.listing th, table.listing td, table.final-counters td, table.final-counters th { padding: 1px 8px; text-align: left; vertical-align: top; }
        table.listing thead th { position: sticky; top: 0; background: #f3f4f6; }
        tr.comment code { color: #6b7280; }
        tr.setup code { color: #374151; font-weight: bold; }
        .listing-scroll { overflow-x: auto; }
        td.source code { white-space: pre-wrap; }
        td.source { min-width: 28em; max-width: 52em; }
        td.outcome { white-space: nowrap; }
        td.changes { min-width: 14em; }
        tr.command td.source code { color: #111827; }
        tr.fault { background: #fef2f2; }
        tr.gp { background: #fff7ed; }
        tr.expect-failed { background: #fee2e2; }
        td.line-number, td.vcpu, td.count { text-align: right; color: #6b7280; font-variant-numeric: tabular-nums; }
        td.count { color: #111827; }
        td.count.zero { color: #d1d5db; }
        td.changes { color: #4b5563; font-size: 12px; }
        code { white-space: pre; }
        .badge { display: inline-block; padding: 0 .4em; border-radius: .3em; font-size: 12px; font-weight: bold; color: #ffffff; }
        .badge.ok { background: #059669; }
        .badge.fault { background: #dc2626; }
        .badge.gp { background: #d97706; }
        .decoded, .muted { color: #6b7280; }
        .chart-scroll, .picture-scroll { overflow-x: auto; border: 1px solid #e5e7eb; }
        svg.chart { display: block; width: 100%; height: auto; }
        .picture-scroll svg { display: block; max-width: 100%; height: auto; }
        .swatch { display: inline-block; width: 1em; height: 1em; vertical-align: middle; margin: 0 .3em 0 .8em; border: 1px solid #9ca3af; }
        .swatch.picture { background: #7c3aed; }
        ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .3em 1em; font-size: 13px; }
        ul.notes { font-size: 13px; color: #4b5563; }
        figure.table-picture { margin: 1em 0; }
        figcaption { font-weight: bold; margin-bottom: .4em; }
        footer { margin-top: 2em; color: #6b7280; font-size: 12px; }
        """
}
