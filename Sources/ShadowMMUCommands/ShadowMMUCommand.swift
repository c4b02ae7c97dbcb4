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
        subcommands: [Run.self, Explain.self, Check.self, Fuzz.self, Matrix.self, Draw.self, Report.self, WorkloadCommand.self, Conform.self, Zoo.self]
    )

    public init() {}
}

extension ShadowMMUCommand {
    /// Parses the command line and runs the command. A command line the tool
    /// cannot use (a missing argument, an unknown option or value) is, like
    /// any input that cannot be used, exit status 2 — after the argument
    /// parser's message and usage — rather than ArgumentParser's 64.
    public static func runCommandLine() -> Never {
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
