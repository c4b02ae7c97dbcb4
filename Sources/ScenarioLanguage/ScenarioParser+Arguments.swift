extension ScenarioParser {
    /// The `key=value` options and bare flags found after a command's
    /// positional arguments.
    struct Options {
        /// The whole `key=value` token of each option, by key.
        var tokens: [String: Token] = [:]
        /// The flags present, by name.
        var flags: [String: Token] = [:]

        /// The value part of option `key`, positioned at the value.
        func value(_ key: String) -> Token? {
            tokens[key].map { $0.suffix(after: key.unicodeScalars.count + 1) }
        }

        func has(_ flag: String) -> Bool { flags[flag] != nil }
    }

    /// Reads the arguments of one non-empty line, left to right, and builds
    /// its diagnostics.
    struct LineReader {
        let fileName: String
        let line: Int
        let tokens: [Token]
        private var position = 1

        init(fileName: String, line: SourceLine) {
            self.fileName = fileName
            self.line = line.number
            self.tokens = line.tokens
        }

        /// The command word (the line is never empty).
        var command: Token { tokens.first ?? Token(text: "", column: 1, length: 0) }

        /// Where "found end of line" points: just past the last token.
        var endColumn: Int { tokens.last?.endColumn ?? 1 }

        // MARK: Diagnostics

        func error(_ message: String, at column: Int) -> ScenarioError {
            ScenarioError(file: fileName, line: line, column: column, message: message)
        }

        func error(expected: String, found token: Token) -> ScenarioError {
            error("expected \(expected), found \(quoted(token.text))", at: token.column)
        }

        func errorAtEnd(expected: String) -> ScenarioError {
            error("expected \(expected), found end of line", at: endColumn)
        }

        // MARK: Positional arguments

        /// The next positional argument; `expected` says what it should be.
        mutating func next(_ expected: String) throws(ScenarioError) -> Token {
            guard position < tokens.count else { throw errorAtEnd(expected: expected) }
            defer { position += 1 }
            return tokens[position]
        }

        /// The next positional argument, which must be one of `words`.
        mutating func word(_ words: [String], after previous: String) throws(ScenarioError) -> Token {
            let expected = "\(alternatives(words.map { "'\($0)'" })) after '\(previous)'"
            let token = try next(expected)
            guard words.contains(token.text) else { throw error(expected: expected, found: token) }
            return token
        }

        /// The next positional argument as a number.
        mutating func number(_ expected: String) throws(ScenarioError) -> (UInt64, Token) {
            let token = try next(expected)
            return (try value(of: token, expected), token)
        }

        /// A guest address argument, named the way the contract's example does.
        mutating func address(after command: String) throws(ScenarioError) -> (UInt64, Token) {
            try number("a hexadecimal address after '\(command)'")
        }

        /// `token` as a number; `expected` describes it when it is not one.
        func value(of token: Token, _ expected: String) throws(ScenarioError) -> UInt64 {
            switch ScenarioParser.number(token.text) {
            case .success(let value): return value
            case .failure(.notANumber): throw error(expected: expected, found: token)
            case .failure(.overflow): throw error(expected: "a number that fits in 64 bits", found: token)
            }
        }

        // MARK: Options and flags

        /// Everything after the positional arguments: each token must be one of
        /// `options` (as `key=value`) or `flags`, at most once. `usage` lists
        /// them for the diagnostic.
        mutating func options(
            _ options: [String] = [], flags: [String] = [], of command: String, usage: String = ""
        ) throws(ScenarioError) -> Options {
            var result = Options()
            while position < tokens.count {
                let token = tokens[position]
                position += 1
                let key = token.text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
                if token.text.contains("="), options.contains(key) {
                    if let first = result.tokens[key] {
                        throw error("duplicate option '\(key)=' (first at column \(first.column))", at: token.column)
                    }
                    result.tokens[key] = token
                } else if flags.contains(token.text) {
                    if let first = result.flags[token.text] {
                        throw error("duplicate flag '\(token.text)' (first at column \(first.column))", at: token.column)
                    }
                    result.flags[token.text] = token
                } else if options.isEmpty && flags.isEmpty {
                    throw error(expected: "end of line after '\(command)'", found: token)
                } else {
                    throw error(expected: "an option of '\(command)' (\(usage))", found: token)
                }
            }
            return result
        }

        /// Option `key` as one of `allowed` numbers, or `defaultValue`.
        func choice(_ options: Options, _ key: String, among allowed: [Int], default defaultValue: Int) throws(ScenarioError) -> Int {
            guard let token = options.value(key) else { return defaultValue }
            let expected = "\(alternatives(allowed.map(String.init))) for '\(key)='"
            let number: UInt64
            do { number = try value(of: token, expected) } catch { throw self.error(expected: expected, found: token) }
            guard let match = allowed.first(where: { UInt64($0) == number }) else {
                throw error(expected: expected, found: token)
            }
            return match
        }

        /// Option `key` as one of `words`, or nil when absent.
        func word(_ options: Options, _ key: String, among words: [String]) throws(ScenarioError) -> String? {
            guard let token = options.value(key) else { return nil }
            guard words.contains(token.text) else {
                throw error(expected: "\(alternatives(words.map { "'\($0)'" })) for '\(key)='", found: token)
            }
            return token.text
        }
    }

    /// "a", "a or b", "a, b or c".
    static func alternatives(_ items: [String]) -> String {
        guard let last = items.last else { return "" }
        let rest = items.dropLast()
        return rest.isEmpty ? last : rest.joined(separator: ", ") + " or " + last
    }
}
