/// The protection-key rights register for user-mode pages: for key k, bit 2k
/// is access-disable (AD) and bit 2k+1 write-disable (WD).
public struct PKRU: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    @inline(__always)
    public func accessDisabled(key: Int) -> Bool { rawValue >> UInt32(2 * key) & 1 != 0 }
    @inline(__always)
    public func writeDisabled(key: Int) -> Bool { rawValue >> UInt32(2 * key + 1) & 1 != 0 }

    public var description: String { UInt64(rawValue).hex }
}
