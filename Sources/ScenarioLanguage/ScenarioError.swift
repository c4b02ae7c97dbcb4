/// The one error type of the Scenarios module: input that cannot be used.
///
/// Its description is the diagnostic a user sees, in the contract's form
/// `FILE:LINE:COLUMN: expected …, found …`. The CLI prints it on stderr and
/// exits with status 2.
public struct ScenarioError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// 1-based.
    public var line: Int
    /// 1-based, counting characters (a tab counts as one).
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "\(file):\(line):\(column): \(message)" }
}
