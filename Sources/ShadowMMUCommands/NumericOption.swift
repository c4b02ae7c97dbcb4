import ArgumentParser

/// Reading a numeric option's value with the range it must lie in.
///
/// The options that take numbers read them with
/// `@Option(parsing: .unconditional, transform: NumericOption.parser(1...N))`:
/// `.unconditional` hands ArgumentParser's "-5" to the option instead of
/// taking it for an option name ("Missing value"), and the transform refuses
/// a negative, too large or malformed number with the limits, so that
/// ArgumentParser prints "The value '-5' is invalid for '--count <count>':
/// expected a number from 1 to 1000000, found a negative number".
enum NumericOption {
    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    /// A transform reading a decimal number within `range`.
    static func parser<Number: FixedWidthInteger & Sendable>(_ range: ClosedRange<Number>) -> @Sendable (String) throws -> Number {
        { text in try parse(text, in: range) }
    }

    static func parse<Number: FixedWidthInteger>(_ text: String, in range: ClosedRange<Number>) throws(Refusal) -> Number {
        let expected = "expected a number from \(range.lowerBound) to \(range.upperBound)"
        let digits = text.hasPrefix("-") || text.hasPrefix("+") ? text.dropFirst() : Substring(text)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw Refusal(description: "\(expected) (decimal digits)")
        }
        let isNegative = text.hasPrefix("-") && digits.contains { $0 != "0" }
        guard let value = Number(text) else {
            throw Refusal(description: "\(expected), found \(isNegative ? "a negative number" : "a larger one")")
        }
        guard range.contains(value) else {
            let found = isNegative ? "a negative number" : value < range.lowerBound ? "a smaller one" : "a larger one"
            throw Refusal(description: "\(expected), found \(found)")
        }
        return value
    }
}
