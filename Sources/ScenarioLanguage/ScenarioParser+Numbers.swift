extension ScenarioParser {
    enum NumberSyntaxFailure: Error {
        /// Not a number at all: the caller says what was expected there.
        case notANumber
        /// A well-formed number above `UInt64.max` (suffix included).
        case overflow
    }

    /// Parses the contract's number syntax: decimal or `0x`/`0X` hexadecimal,
    /// `_` between two digits, and an optional binary-multiple suffix `K`, `M`,
    /// `G` or `T` (upper case only, as the contract writes them).
    static func number(_ text: String) -> Result<UInt64, NumberSyntaxFailure> {
        var digits = Substring(text).utf8[...]
        var shift: UInt64 = 0
        switch digits.last {
        case UInt8(ascii: "K"): shift = 10
        case UInt8(ascii: "M"): shift = 20
        case UInt8(ascii: "G"): shift = 30
        case UInt8(ascii: "T"): shift = 40
        default: break
        }
        if shift != 0 { digits = digits.dropLast() }

        var radix: UInt64 = 10
        if digits.count >= 2, digits.first == UInt8(ascii: "0"),
           let marker = digits.dropFirst().first, marker == UInt8(ascii: "x") || marker == UInt8(ascii: "X") {
            radix = 16
            digits = digits.dropFirst(2)
        }
        guard !digits.isEmpty else { return .failure(.notANumber) }

        var value: UInt64 = 0
        var overflowed = false
        var afterDigit = false
        for byte in digits {
            if byte == UInt8(ascii: "_") {
                guard afterDigit else { return .failure(.notANumber) }
                afterDigit = false
                continue
            }
            guard let digit = digitValue(byte), digit < radix else { return .failure(.notANumber) }
            let (scaled, scaleOverflow) = value.multipliedReportingOverflow(by: radix)
            let (sum, addOverflow) = scaled.addingReportingOverflow(digit)
            overflowed = overflowed || scaleOverflow || addOverflow
            value = sum
            afterDigit = true
        }
        // A trailing `_` separates nothing.
        guard afterDigit else { return .failure(.notANumber) }
        guard !overflowed, value <= UInt64.max >> shift else { return .failure(.overflow) }
        return .success(value << shift)
    }

    private static func digitValue(_ byte: UInt8) -> UInt64? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt64(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt64(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt64(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// Whether `value` can be stored in `width` bytes.
    static func fits(_ value: UInt64, inBytes width: Int) -> Bool {
        width >= 8 || value >> UInt64(width * 8) == 0
    }
}
