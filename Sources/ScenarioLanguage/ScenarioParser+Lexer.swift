extension ScenarioParser {
    /// A word of a scenario line. Positions count Unicode scalars, so a tab is
    /// one column and no input can make the lexer index out of range.
    struct Token {
        var text: String
        /// 1-based column of the first character.
        var column: Int
        /// Length in Unicode scalars.
        var length: Int

        /// The column just past the token: where "found end of line" points.
        var endColumn: Int { column + length }

        /// The value part of a `key=value` token, as a token of its own so that
        /// diagnostics about the value point at the value.
        func suffix(after prefixLength: Int) -> Token {
            let scalars = text.unicodeScalars
            let start = scalars.index(scalars.startIndex, offsetBy: min(prefixLength, length))
            var value = String.UnicodeScalarView()
            value.append(contentsOf: scalars[start...])
            return Token(text: String(value), column: column + prefixLength, length: max(0, length - prefixLength))
        }
    }

    /// One line with its comment stripped, split into tokens.
    struct SourceLine {
        /// 1-based.
        var number: Int
        var tokens: [Token]
    }

    /// Splits `text` at LF (a CR before the LF belongs to the line end), drops
    /// comments and splits each line at spaces and tabs.
    static func sourceLines(of text: String) -> [SourceLine] {
        var lines: [SourceLine] = []
        var current: [Unicode.Scalar] = []
        var number = 1
        for scalar in text.unicodeScalars {
            if scalar == "\n" {
                lines.append(SourceLine(number: number, tokens: tokens(of: current)))
                current.removeAll(keepingCapacity: true)
                number += 1
            } else {
                current.append(scalar)
            }
        }
        lines.append(SourceLine(number: number, tokens: tokens(of: current)))
        return lines
    }

    private static func tokens(of line: [Unicode.Scalar]) -> [Token] {
        var scalars = line[...]
        if scalars.last == "\r" { scalars = scalars.dropLast() }
        var tokens: [Token] = []
        var word = String.UnicodeScalarView()
        var wordStart = 0
        var wordLength = 0
        func finishWord() {
            guard wordLength > 0 else { return }
            tokens.append(Token(text: String(word), column: wordStart, length: wordLength))
            word = String.UnicodeScalarView()
            wordLength = 0
        }
        var column = 0
        for scalar in scalars {
            column += 1
            switch scalar {
            case "#":
                finishWord()
                return tokens
            case " ", "\t":
                finishWord()
            default:
                if wordLength == 0 { wordStart = column }
                word.append(scalar)
                wordLength += 1
            }
        }
        finishWord()
        return tokens
    }

    /// A token as a diagnostic quotes it: control and invisible characters
    /// escaped so the message stays on one line, long tokens shortened.
    /// Public for the other readers of user files (the Lackey trace parser).
    public static func quoted(_ text: String) -> String {
        let limit = 48
        var result = String.UnicodeScalarView()
        result.append("'")
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit {
                result.append("…")
                break
            }
            count += 1
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .surrogate, .unassigned:
                result.append(contentsOf: "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars)
            default:
                result.append(scalar)
            }
        }
        result.append("'")
        return String(result)
    }

    /// `0x…` in lowercase, the form the contract prints addresses in.
    static func hexadecimal(_ value: UInt64) -> String {
        "0x" + String(value, radix: 16)
    }
}
