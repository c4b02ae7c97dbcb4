import Foundation
import Testing

/// Every relative link of README.md and docs/ reaches a file of the
/// repository, and every `#anchor` a heading of the page it names (GitHub's
/// rule: the heading lowercased, punctuation but `-` and `_` dropped, spaces
/// as `-`, a repeated heading numbered `-1`, `-2`, …).
@Suite struct DocumentationLinks {
    static let pages = Documentation.files.filter { $0 == "README.md" || $0.hasPrefix("docs/") }

    /// The anchors GitHub gives the headings of the markdown `text`.
    static func anchors(_ text: String) -> Set<String> {
        var seen: [String: Int] = [:]
        var anchors: Set<String> = []
        var inFence = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") { inFence.toggle() }
            guard !inFence, line.hasPrefix("#") else { continue }
            let title = line.drop { $0 == "#" }.trimmingCharacters(in: .whitespaces)
            // Link text stays, the link target goes: [DESIGN.md §4](DESIGN.md#…) reads "DESIGN.md §4".
            let plain = title.replacingOccurrences(of: #"\]\([^)]*\)"#, with: "]", options: .regularExpression)
            var slug = ""
            for character in plain.lowercased() {
                if character.isLetter || character.isNumber || character == "-" || character == "_" {
                    slug.append(character)
                } else if character == " " {
                    slug.append("-")
                }
            }
            let count = seen[slug, default: 0]
            seen[slug] = count + 1
            anchors.insert(count == 0 ? slug : "\(slug)-\(count)")
        }
        return anchors
    }

    /// `(target, line)` of every inline link `[text](target)` outside code.
    static func links(_ text: String) -> [(String, Int)] {
        var links: [(String, Int)] = []
        var inFence = false
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.hasPrefix("```") { inFence.toggle() }
            guard !inFence else { continue }
            let withoutCode = line.replacingOccurrences(of: #"`[^`]*`"#, with: "", options: .regularExpression)
            let regex = try! NSRegularExpression(pattern: #"\]\(([^)\s]+)\)"#)
            for match in regex.matches(in: withoutCode, range: NSRange(withoutCode.startIndex..., in: withoutCode)) {
                if let range = Range(match.range(at: 1), in: withoutCode) { links.append((String(withoutCode[range]), number + 1)) }
            }
        }
        return links
    }

    /// `path` relative to the package root with `.` and `..` resolved.
    static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == "..", !parts.isEmpty, parts.last != ".." { parts.removeLast() } else { parts.append(part) }
        }
        return parts.joined(separator: "/")
    }

    @Test func theCheckerKnowsGitHubsAnchors() {
        #expect(Self.normalized("docs/commands/../README.md") == "docs/README.md")
        #expect(Self.normalized("docs/commands/../../README.md") == "README.md")
        #expect(Self.normalized("/examples/pae.scenario") == "examples/pae.scenario")
        #expect(Self.anchors("## 4. The seed: local shadow pages for special roots\n") == ["4-the-seed-local-shadow-pages-for-special-roots"])
        #expect(Self.anchors("## The roots ([DESIGN.md §4](DESIGN.md#x), rows 7–12)\n") == ["the-roots-designmd-4-rows-712"])
        #expect(Self.anchors("# A\n## A\n```\n# not a heading\n```\n") == ["a", "a-1"])
        #expect(Self.links("see [a](b.md#c) and `[x](y)`\n```\n[z](w)\n```\n").map(\.0) == ["b.md#c"])
    }

    @Test(arguments: pages)
    func everyLinkResolves(_ page: String) throws {
        let text = try String(contentsOf: packageRoot.appendingPathComponent(page), encoding: .utf8)
        let folder = page.split(separator: "/").dropLast().joined(separator: "/")
        for (target, line) in Self.links(text) where !target.contains("://") && !target.hasPrefix("mailto:") {
            let parts = target.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
            let path = String(parts[0])
            let file = path.isEmpty ? page : Self.normalized(folder + "/" + path)
            let url = packageRoot.appendingPathComponent(file)
            #expect(FileManager.default.fileExists(atPath: url.path), "\(page):\(line): the link \(target) names \(file), which does not exist")
            guard parts.count == 2, file.hasSuffix(".md"), let linked = try? String(contentsOf: url, encoding: .utf8) else { continue }
            #expect(Self.anchors(linked).contains(String(parts[1])), "\(page):\(line): \(file) has no heading for #\(parts[1])")
        }
    }
}
