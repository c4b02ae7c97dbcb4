import ScenarioLanguage
import ScenarioRuntime
/// Shrinks a failing scenario to a short one that still fails (delta
/// debugging over lines): repeatedly drop chunks of command lines, halving
/// the chunk size, keeping every removal after which `stillFails` holds.
/// Setup lines (`machine`, `mmu`) and comments are kept.
public enum ScenarioMinimizer {
    public static func minimize(_ text: String, stillFails: (String) -> Bool) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        func isRemovable(_ line: String) -> Bool {
            let word = line.split(separator: " ").first.map(String.init) ?? ""
            return !word.isEmpty && !word.hasPrefix("#") && word != "machine" && word != "mmu"
        }
        var chunk = max(lines.filter(isRemovable).count / 2, 1)
        while true {
            var removedAny = false
            var start = 0
            while start < lines.count {
                let candidates = lines.indices.filter { $0 >= start && isRemovable(lines[$0]) }.prefix(chunk)
                guard let first = candidates.first else { break }
                let removed = Set(candidates)
                let attempt = lines.indices.filter { !removed.contains($0) }.map { lines[$0] }
                if stillFails(attempt.joined(separator: "\n")) {
                    lines = attempt
                    removedAny = true
                    start = first
                } else {
                    start = (candidates.last ?? first) + 1
                }
            }
            if chunk == 1, !removedAny { break }
            chunk = max(chunk / 2, 1)
        }
        return lines.joined(separator: "\n")
    }
}
