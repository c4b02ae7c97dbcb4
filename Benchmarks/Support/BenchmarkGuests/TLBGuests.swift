import X86Paging

/// The same 4-level guest, shadowed and native, with `pages` pages mapped to
/// consecutive frames holding known values, every page already touched.
/// `pages` is a power of two, so that picking the page of an iteration is a
/// mask, not a division that would weigh on a 20 ns access.
public final class TLBGuests {
    public let shadow: ShadowGuest
    public let native: NativeGuest
    public let pages: Int

    public init(pages: Int, tlbCapacity: Int) {
        precondition(pages > 0 && pages & (pages - 1) == 0, "pages must be a power of two")
        self.pages = pages
        let memorySize: UInt64 = 64 << 20
        let dataBase: UInt64 = 8 << 20
        shadow = ShadowGuest(mode: .level4, memorySize: memorySize)
        native = NativeGuest(mode: .level4, memorySize: memorySize, tlbCapacity: tlbCapacity)
        for page in 0..<pages {
            let gpa = dataBase + UInt64(page) << 12
            shadow.tables.map(shadow.linear(page: page), to: gpa)
            native.tables.map(shadow.linear(page: page), to: gpa)
            shadow.vm.poke(gpa, width: 8, UInt64(page))
            native.memory.store(gpa, width: 8, UInt64(page))
        }
        shadow.enablePaging()
        native.enablePaging()
        // Twice: faults that build shadow tables flush every hardware TLB.
        for _ in 0..<2 {
            for page in 0..<pages {
                precondition(shadow.read(shadow.linear(page: page)) == UInt64(page), "shadow guest reads the wrong value")
                precondition(native.read(shadow.linear(page: page)) == UInt64(page), "native guest reads the wrong value")
            }
        }
        shadow.checkHealthy("TLB guest set up")
    }

    @inlinable
    public func address(_ iteration: Int) -> UInt64 { shadow.linear(page: iteration & (pages - 1)) }
}
