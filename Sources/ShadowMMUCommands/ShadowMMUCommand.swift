import ArgumentParser

/// The `shadowmmu` command-line tool.
public struct ShadowMMUCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "shadowmmu",
        abstract: "Run, explain and check guests under a model of the KVM x86 MMU."
    )
    public init() {}
}
