/// Guest physical memory as the paging hardware sees it.
///
/// Addresses outside `[0, size)` behave as unclaimed MMIO: data reads return
/// all ones and writes are dropped. Walkers treat a paging-structure entry
/// outside memory as not present (KVM's behaviour; see `contains(_:)`).
///
/// Implementations are value-semantics-free reference types or structs used
/// through generics, never existentials, so that walks stay allocation-free.
public protocol PhysicalMemory {
    /// Bytes of memory; addresses `[0, size)` are backed.
    var size: UInt64 { get }
    /// Little-endian load of `width` (1, 2, 4 or 8) bytes that do not cross a
    /// 4 KiB boundary.
    func load(_ address: UInt64, width: Int) -> UInt64
    /// Little-endian store of the low `width` bytes of `value`.
    func store(_ address: UInt64, width: Int, _ value: UInt64)
}

extension PhysicalMemory {
    @inlinable
    public func contains(_ address: UInt64, width: Int = 1) -> Bool {
        address < size && size - address >= UInt64(width)
    }
}
