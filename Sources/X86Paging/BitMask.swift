/// Bits `high` down to `low` set (empty when `high < low`): the mask of a
/// field of an entry format.
@inlinable
@inline(__always)
public func bitRange(_ high: Int, _ low: Int) -> UInt64 {
    guard high >= low else { return 0 }
    let width = high - low + 1
    let ones: UInt64 = width >= 64 ? ~0 : (1 << UInt64(width)) - 1
    return ones << UInt64(low)
}

@usableFromInline
@inline(__always)
func bit(_ index: Int) -> UInt64 { 1 << UInt64(index) }

extension UInt64 {
    /// `0x…` lowercase hexadecimal, the form the contract prints.
    public var hex: String { "0x" + String(self, radix: 16) }
}

/// Flag names for `description`s: the names of the set bits, in table order.
func flagNames(_ raw: UInt64, _ table: [(UInt64, String)]) -> String {
    table.compactMap { raw & $0.0 != 0 ? $0.1 : nil }.joined(separator: " ")
}
