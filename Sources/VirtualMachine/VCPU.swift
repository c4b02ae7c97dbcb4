import ShadowMMU
import X86Paging

/// One simulated vCPU: the guest's architectural registers, and the hardware
/// state of the last VM entry — the paging registers that point the MMU at
/// the hypervisor's root (with PDPTE registers read from a PAE root), and the
/// hardware TLB caching translations through it.
public final class VCPU {
    public let index: Int
    /// The guest's registers (what the guest reads and writes).
    @exclusivity(unchecked) public internal(set) var registers: ControlRegisters
    /// Translations the hardware cached from the hypervisor's tables.
    public let tlb = TLB(capacity: 1024)
    /// Paging state loaded at the last VM entry; nil when the vCPU must enter
    /// again before it runs (after a remote flush, a root change, a register write).
    @exclusivity(unchecked) var hardware: ControlRegisters?
    /// Serial number of the root loaded at the last entry. Not its frame:
    /// successive local PAE roots reuse one frame, and a new root must still
    /// flush the TLB.
    @exclusivity(unchecked) var loadedRoot: Int?
    /// Under two-dimensional paging: the second stage loaded at the last entry.
    @exclusivity(unchecked) var nested: NestedPaging?
    /// Set while the vCPU runs an L2 guest for an L1 hypervisor: L1's second
    /// stage (its nested tables), which L0 shadows. `registers` are then L2's.
    @exclusivity(unchecked) public internal(set) var l1Paging: NestedPaging?
    @exclusivity(unchecked) public internal(set) var entries = 0
    @exclusivity(unchecked) public internal(set) var hardwareWalks = 0

    init(index: Int, model: CPUModel) {
        self.index = index
        registers = ControlRegisters(model: model)
    }

    /// Forces a fresh VM entry (and PDPTE reload) before the vCPU runs again.
    func requestReentry() { hardware = nil }
}
