/// What the modelled processor implements, where it matters for paging.
///
/// The model is a "max" CPU: 1 GiB pages, PSE-36, NX, SMEP, SMAP, PKU, PCID
/// and LA57 are all present. MAXPHYADDR is configurable (36...52) because it
/// decides which entry bits are reserved.
public struct CPUModel: Hashable, Sendable {
    /// Where vendors differ in a way a guest can see.
    public enum Vendor: Hashable, Sendable {
        /// Intel (the reference, and EPT).
        case intel
        /// AMD: bit 8 of a PML4E/PML5E is reserved.
        case amd
    }

    public var maxPhysicalAddressBits: Int
    public var vendor: Vendor
    /// Whether PAE paging keeps the four PDPTEs in registers loaded by MOV
    /// CR3/CR0/CR4 (Intel, and AMD without nested paging). When false (a PAE
    /// guest under AMD nested paging) the walk reads the PDPTEs from memory
    /// every time and a reserved bit in a present PDPTE is a #PF with RSVD.
    public var latchesPDPTEs: Bool

    public init(maxPhysicalAddressBits: Int = 52, vendor: Vendor = .intel, latchesPDPTEs: Bool = true) {
        precondition((36...52).contains(maxPhysicalAddressBits), "MAXPHYADDR must be 36...52")
        self.maxPhysicalAddressBits = maxPhysicalAddressBits
        self.vendor = vendor
        self.latchesPDPTEs = latchesPDPTEs
    }

    /// Physical-address bits above MAXPHYADDR: reserved in every 64-bit entry
    /// (bits 51:M; empty when M = 52).
    @inlinable
    public var highReservedBits: UInt64 { bitRange(51, maxPhysicalAddressBits) }
}
