/// Turns scenario text (`docs/SCENARIO-FORMAT.md`) into a `Scenario`.
///
/// The whole file is read before anything runs, and the first unusable line
/// stops the parse with a `ScenarioError` naming its line and column. A
/// returned `Scenario` is complete and checked: every address, width and value
/// is in range, setup precedes the vCPU commands, and every `expect` follows a
/// command it can check.
public enum ScenarioParser {
    public static func parse(_ text: String, fileName: String) throws(ScenarioError) -> Scenario {
        var builder = Builder(fileName: fileName)
        for line in sourceLines(of: text) where !line.tokens.isEmpty {
            var reader = LineReader(fileName: fileName, line: line)
            try builder.take(&reader)
        }
        return try builder.finish()
    }

    /// Reads the words of an `mmu` line given outside a file (the CLI's
    /// `--mmu 'shadow host=pae32'`), with or without the leading `mmu`. A
    /// diagnostic names `source`, line 1, and the column in `words`.
    public static func parseMMU(_ words: String, source: String = "--mmu") throws(ScenarioError) -> MMUConfiguration {
        let lines = sourceLines(of: words)
        guard lines.count == 1, let first = lines.first?.tokens.first else {
            throw ScenarioError(
                file: source, line: 1, column: 1,
                message: lines.count == 1 ? "expected the words of an 'mmu' line (native, shadow …, tdp …), found nothing" : "expected the words of one 'mmu' line, found several lines")
        }
        let prefix = first.text == "mmu" ? "" : "mmu "
        var reader = LineReader(fileName: source, line: sourceLines(of: prefix + words)[0])
        do {
            return try reader.mmu()
        } catch {
            throw ScenarioError(file: source, line: 1, column: max(1, error.column - prefix.count), message: error.message)
        }
    }

    /// Commands that act on a vCPU; `machine` and `mmu` must precede them.
    static let vcpuCommands: Set<String> = [
        "cr0", "cr3", "cr4", "efer", "pkru", "rflags.ac", "invlpg", "flush", "vcpu", "read", "write", "fetch", "nested",
    ]

    static let commandNames = [
        "machine", "mmu", "poke", "store", "peek", "host", "cr0", "cr3", "cr4", "efer", "pkru", "rflags.ac",
        "invlpg", "flush", "vcpu", "read", "write", "fetch", "nested", "expect",
    ]

    /// The file-level state: setup lines seen so far and the commands.
    private struct Builder {
        let fileName: String
        var machine: (configuration: MachineConfiguration, line: Int)?
        var mmu: (configuration: MMUConfiguration, line: Int)?
        var firstVCPUCommandLine: Int?
        var commands: [Command] = []

        init(fileName: String) {
            self.fileName = fileName
        }

        mutating func take(_ reader: inout LineReader) throws(ScenarioError) {
            let name = reader.command.text
            switch name {
            case "machine":
                if let first = machine {
                    throw reader.error("duplicate 'machine' line (first on line \(first.line))", at: reader.command.column)
                }
                machine = (try reader.machine(), reader.line)
            case "mmu":
                if let first = mmu {
                    throw reader.error("duplicate 'mmu' line (first on line \(first.line))", at: reader.command.column)
                }
                if let firstVCPU = firstVCPUCommandLine {
                    throw reader.error("'mmu' must come before the first vCPU command (line \(firstVCPU))", at: reader.command.column)
                }
                mmu = (try reader.mmu(), reader.line)
            default:
                guard commandNames.contains(name) else {
                    throw reader.error(expected: "a command (\(commandNames.joined(separator: ", ")))", found: reader.command)
                }
                guard let machine else {
                    throw reader.error(expected: "a 'machine' line before the first command", found: reader.command)
                }
                let action = try reader.action(machine: machine.configuration, earlier: commands)
                if firstVCPUCommandLine == nil, vcpuCommands.contains(name) {
                    firstVCPUCommandLine = reader.line
                }
                commands.append(Command(line: reader.line, action: action))
            }
        }

        /// In a scenario with `nested` lines the vCPU commands are L2's: each
        /// vCPU's first `nested` line (L1 entering L2) must come before them.
        func checkNestedOrder() throws(ScenarioError) {
            guard commands.contains(where: { if case .enterNested = $0.action { true } else { false } }) else { return }
            var vcpu = 0
            var inL2: Set<Int> = []
            for command in commands {
                switch command.action {
                case .selectVCPU(let index):
                    vcpu = index
                case .enterNested(let entry):
                    if entry.secondStage == nil, !inL2.contains(vcpu) {
                        throw ScenarioError(
                            file: fileName, line: command.line, column: 1,
                            message: "expected 'nested npt …' or 'nested ept …' on vCPU \(vcpu) before 'nested flush' (L1 has not entered L2 yet)")
                    }
                    inL2.insert(vcpu)
                case .writeRegister, .setAlignmentCheck, .invlpg, .flush, .access:
                    if !inL2.contains(vcpu) {
                        throw ScenarioError(
                            file: fileName, line: command.line, column: 1,
                            message: "expected a 'nested' line on vCPU \(vcpu) before '\(command.action.name)': in a nested scenario the vCPU commands are the L2 guest's")
                    }
                default:
                    break
                }
            }
        }

        func finish() throws(ScenarioError) -> Scenario {
            guard let machine else {
                throw ScenarioError(
                    file: fileName, line: 1, column: 1,
                    message: "expected a 'machine' line before the first command, found end of file"
                )
            }
            try checkNestedOrder()
            return Scenario(
                fileName: fileName,
                machine: machine.configuration,
                mmu: mmu?.configuration ?? .native,
                commands: commands,
                mmuLine: mmu?.line ?? 0
            )
        }
    }
}
