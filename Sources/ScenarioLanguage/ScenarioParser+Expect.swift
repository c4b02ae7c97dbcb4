import X86Paging

extension ScenarioParser {
    /// A command whose result an `expect` can check.
    enum ObservableCommand: Equatable {
        case access(AccessCommand.Kind)
        case peek
        case registerWrite(RegisterName)
        case dirtyLogRead

        init?(_ action: Action) {
            switch action {
            case .access(let access): self = .access(access.kind)
            case .peek: self = .peek
            case .writeRegister(let register, _): self = .registerWrite(register)
            case .hostDirtyLog(.read): self = .dirtyLogRead
            default: return nil
            }
        }

        var name: String {
            switch self {
            case .access(let kind): kind.rawValue
            case .peek: "peek"
            case .registerWrite(let register): "\(register.rawValue) write"
            case .dirtyLogRead: "dirty-log read"
            }
        }

        var isAccess: Bool {
            if case .access = self { true } else { false }
        }
    }
}

extension ScenarioParser.LineReader {
    /// `expect ok [gpa=ADDR] [value=VALUE]`, `expect fault [ec=VALUE]`,
    /// `expect gp`, `expect value=VALUE`, checked against the latest
    /// observable command before it (other commands in between are skipped;
    /// several expects may check the same command).
    mutating func expectation(earlier: [Command]) throws(ScenarioError) -> Expectation {
        let kind = try next("'ok', 'fault', 'gp', 'npf', 'ept-violation', 'ept-misconfig' or 'value=VALUE' after 'expect'")
        guard let (target, targetLine) = Self.latestObservable(in: earlier) else {
            throw error("'expect' needs an earlier read, write, fetch, peek or register write", at: command.column)
        }
        func require(_ allowed: Bool, _ what: String, before form: String, at column: Int) throws(ScenarioError) {
            guard allowed else {
                throw error("expected \(what) before '\(form)', found the \(target.name) on line \(targetLine)", at: column)
            }
        }

        switch kind.text {
        case "ok":
            let options = try options(["gpa", "value"], of: "expect ok", usage: "gpa=ADDR or value=VALUE")
            var gpa: UInt64?
            if let token = options.value("gpa") {
                gpa = try value(of: token, "a hexadecimal address for 'gpa='")
                try require(target.isAccess, "a read, write or fetch", before: "expect ok gpa=", at: options.tokens["gpa"]?.column ?? token.column)
            }
            var value: UInt64?
            if let token = options.value("value") {
                value = try self.value(of: token, "a value for 'value='")
                try require(target == .access(.read), "a read", before: "expect ok value=", at: options.tokens["value"]?.column ?? token.column)
            }
            return .ok(gpa: gpa, value: value)

        case "fault":
            let options = try options(["ec"], of: "expect fault", usage: "ec=VALUE")
            var errorCode: UInt64?
            if let token = options.value("ec") {
                errorCode = try value(of: token, "an error code for 'ec='")
            }
            try require(target.isAccess, "a read, write or fetch", before: "expect fault", at: kind.column)
            return .fault(errorCode: errorCode)

        case "gp":
            _ = try options(of: "expect gp")
            return .gp

        case "npf", "ept-violation", "ept-misconfig":
            let result = NestedFaultKind(rawValue: kind.text)!
            let infoKey = result.expectationKey
            let keys = ["gpa"] + (infoKey.map { [$0] } ?? [])
            let options = try options(keys, of: "expect \(kind.text)", usage: keys.map { "\($0)=VALUE" }.joined(separator: " or "))
            var gpa: UInt64?
            if let token = options.value("gpa") { gpa = try value(of: token, "an L2-physical address for 'gpa='") }
            var info: UInt64?
            if let infoKey, let token = options.value(infoKey) { info = try value(of: token, "a value for '\(infoKey)='") }
            try require(target.isAccess, "a read, write or fetch", before: "expect \(kind.text)", at: kind.column)
            return .nestedFault(kind: result, gpa: gpa, info: info)

        default:
            guard kind.text.hasPrefix("value=") else {
                throw error(expected: "'ok', 'fault', 'gp', 'npf', 'ept-violation', 'ept-misconfig' or 'value=VALUE' after 'expect'", found: kind)
            }
            let token = kind.suffix(after: "value=".count)
            let expected = try value(of: token, "a value for 'value='")
            _ = try options(of: "expect value=")
            try require(target == .peek || target == .access(.read), "a peek or read", before: "expect value=", at: kind.column)
            return .value(expected)
        }
    }

    private static func latestObservable(in commands: [Command]) -> (ScenarioParser.ObservableCommand, Int)? {
        for command in commands.reversed() {
            if let observable = ScenarioParser.ObservableCommand(command.action) {
                return (observable, command.line)
            }
        }
        return nil
    }
}
