/// The four PDPTE registers of PAE paging (SDM Vol. 3A §4.4.1).
///
/// Loaded from the 32-byte table at CR3[31:5] on MOV CR3 in PAE mode and on
/// the MOV CR0/CR4 writes the contract lists; later stores to that table are
/// invisible to translation until the next load.
public struct PDPTERegisters: Hashable, Sendable, CustomStringConvertible {
    public var entries: (UInt64, UInt64, UInt64, UInt64)

    public init(_ e0: UInt64 = 0, _ e1: UInt64 = 0, _ e2: UInt64 = 0, _ e3: UInt64 = 0) {
        entries = (e0, e1, e2, e3)
    }

    @inlinable
    public subscript(index: Int) -> UInt64 {
        switch index & 3 {
        case 0: entries.0
        case 1: entries.1
        case 2: entries.2
        default: entries.3
        }
    }

    public static func == (a: PDPTERegisters, b: PDPTERegisters) -> Bool {
        a.entries == b.entries
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(entries.0); hasher.combine(entries.1); hasher.combine(entries.2); hasher.combine(entries.3)
    }

    /// Bits of a present PDPTE that make the load fail with #GP:
    /// 63:M, 8:5 and 2:1.
    @inlinable
    public static func reservedBits(maxPhysicalAddressBits: Int) -> UInt64 {
        bitRange(63, maxPhysicalAddressBits) | bitRange(8, 5) | bitRange(2, 1)
    }

    /// Reads the four PDPTEs at `cr3 & 0xffff_ffe0`; `nil` if a present one has
    /// a reserved bit (the MOV that triggered the load then raises #GP).
    public static func load<Memory: PhysicalMemory>(cr3: UInt64, memory: Memory, maxPhysicalAddressBits: Int) -> PDPTERegisters? {
        let base = cr3 & 0xffff_ffe0
        let reserved = reservedBits(maxPhysicalAddressBits: maxPhysicalAddressBits)
        var registers = PDPTERegisters()
        for index in 0..<4 {
            let entry = memory.load(base + UInt64(8 * index), width: 8)
            if entry & 1 != 0, entry & reserved != 0 { return nil }
            switch index {
            case 0: registers.entries.0 = entry
            case 1: registers.entries.1 = entry
            case 2: registers.entries.2 = entry
            default: registers.entries.3 = entry
            }
        }
        return registers
    }

    public var description: String {
        "[\(self[0].hex), \(self[1].hex), \(self[2].hex), \(self[3].hex)]"
    }
}
