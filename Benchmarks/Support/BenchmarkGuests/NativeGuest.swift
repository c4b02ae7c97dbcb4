import X86Paging

/// The same guest run natively (`mmu native`): an `ArchitecturalCPU` walking
/// the guest's own tables in a `SparseMemory` — the reference the shadow
/// figures are divided by.
public final class NativeGuest {
    public let memory: SparseMemory
    public let cpu: ArchitecturalCPU
    public var tables: GuestTableBuilder

    public init(mode: PagingMode, memorySize: UInt64, tlbCapacity: Int) {
        let memory = SparseMemory(size: memorySize)
        self.memory = memory
        cpu = ArchitecturalCPU(tlbCapacity: tlbCapacity)
        tables = GuestTableBuilder(
            mode: mode, tableBase: ShadowGuest.tableBase, tableLimit: 8 << 20,
            poke: { memory.store($0, width: 8, $1) }, peek: { memory.load($0, width: 8) })
    }

    public func enablePaging() {
        for (register, value) in tables.pagingOn {
            precondition(cpu.write(register, value, memory: memory).isAccepted, "the guest's \(register) write was refused")
        }
    }

    /// What `NativeMachine.access` does for a read: translate, then load.
    @inlinable
    public func read(_ address: UInt64) -> UInt64 {
        guard case .physical(let physical) = cpu.translate(address, .read, memory: memory) else {
            preconditionFailure("native guest: the read at \(address.hex) faulted")
        }
        return memory.load(physical, width: 8)
    }
}
