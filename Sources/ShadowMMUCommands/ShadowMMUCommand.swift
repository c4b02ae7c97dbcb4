import ArgumentParser

/// The `shadowmmu` command-line tool: a thin layer over the Scenarios library.
public struct ShadowMMUCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "shadowmmu",
        abstract: "Run, explain and check x86 guests under a model of the KVM x86 MMU.",
        discussion: """
            A scenario file sets up a virtual machine, writes the guest's page tables into its \
            memory, drives its vCPUs (control-register writes, INVLPG, accesses) and prints the \
            guest-visible outcome of every access as JSON Lines. The language is specified in \
            docs/SCENARIO-FORMAT.md.

            Examples:
              shadowmmu run examples/4-level.scenario
              shadowmmu run examples/pae.scenario --stats
              shadowmmu explain examples/4-level.scenario --line 30
              shadowmmu check examples/pae.scenario
              shadowmmu fuzz --count 3
              shadowmmu matrix
              shadowmmu workload fork --mmu shadow
            """,
        version: version,
        subcommands: [Run.self, Explain.self, Check.self, Fuzz.self, Merge.self, Matrix.self, Draw.self, Report.self, WorkloadCommand.self, Conform.self, Zoo.self]
    )

    public init() {}

    /// This package's version; bump it with a release.
    public static let packageVersion = "0.1.0"

    /// `shadowmmu --version`: the package version and the git commit the
    /// tool was built from (`+changes` when tracked files differed from it;
    /// `unknown` when built outside a git checkout).
    public static var version: String { "shadowmmu \(packageVersion) (commit \(buildCommit))" }
}

extension ShadowMMUCommand {
    /// Parses the command line and runs the command. A command line the tool
    /// cannot use (a missing argument, an unknown option or value) is, like
    /// any input that cannot be used, exit status 2 — after the argument
    /// parser's message and usage — rather than ArgumentParser's 64.
    public static func runCommandLine() -> Never {
        if let problem = unknownSubcommand(in: Array(CommandLine.arguments.dropFirst())) {
            OutputStream.standardError.writeLine("Error: \(problem)")
            OutputStream.standardError.writeLine("Usage: shadowmmu <subcommand>\n  See 'shadowmmu --help' for the subcommands.")
            exit(withError: ExitCode(2))
        }
        do {
            var command = try parseAsRoot()
            try command.run()
            exit()
        } catch {
            if exitCode(for: error) == .validationFailure {
                OutputStream.standardError.writeLine(fullMessage(for: error))
                OutputStream.standardError.flush()
                exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }
}

extension ShadowMMUCommand {
    static var subcommandNames: [String] {
        configuration.subcommands.map { $0._commandName } + ["help"]
    }

    /// What is wrong when `arguments` start with a word that is no
    /// subcommand (`shadowmmu rnu x`), with the nearest names; nil otherwise.
    static func unknownSubcommand(in arguments: [String]) -> String? {
        guard let first = arguments.first, !first.hasPrefix("-"), !subcommandNames.contains(first) else { return nil }
        let distances = subcommandNames.map { ($0, editDistance(first.lowercased(), $0)) }
        let best = distances.map(\.1).min() ?? .max
        let near = distances.filter { $0.1 == best && best <= max(2, first.count / 2) }.map { "'\($0.0)'" }
        let names = subcommandNames.dropLast().joined(separator: ", ")
        if near.isEmpty { return "unknown subcommand '\(first)'; the subcommands are \(names)" }
        return "unknown subcommand '\(first)'; did you mean \(near.joined(separator: " or "))? (the subcommands are \(names))"
    }

    /// Levenshtein distance between `a` and `b`, counting characters.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}
