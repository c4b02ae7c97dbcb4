import ShadowMMU
import VirtualMachine
import X86Paging

/// Row 9 of DESIGN.md §4: an L1 hypervisor with PAE paging (AMD) running L2
/// with paging off on a 4-level NPT L0, whose nested tables map one L2 page;
/// L0 shadows them with the root design `roots`.
public final class NestedPAEGuest {
    public let vm: VirtualMachine
    public let l1: ControlRegisters
    public static let l2Page: UInt64 = 0x4000_0000

    public init(roots: RootDesign) {
        let vm = VirtualMachine(memorySize: 64 << 20, mode: .tdp(format: .x86, levels: 4), rootDesign: roots)
        var nested = GuestTableBuilder(
            mode: .pae, tableBase: 1 << 20, tableLimit: 2 << 20,
            poke: { vm.poke($0, width: 8, $1) }, peek: { vm.peek($0, width: 8) })
        nested.map(Self.l2Page, to: 8 << 20)
        self.vm = vm
        l1 = ControlRegisters(
            model: CPUModel(maxPhysicalAddressBits: 46, vendor: .amd, latchesPDPTEs: false),
            cr0: CR0(rawValue: 0x8001_0001), cr3: nested.root, cr4: CR4(rawValue: 0x20), efer: EFER(rawValue: 0x800))
    }

    /// L1's VMRUN into L2 (no TLB flush), then one L2 read of the mapped page.
    @inlinable
    public func enterAndRead() -> UInt64 {
        vm.enterNested(vcpu: 0, paging: .npt(host: l1), flush: false)
        guard case .completed(_, let value?) = vm.access(vcpu: 0, Self.l2Page, .read, width: 8) else {
            preconditionFailure("an L2 read did not complete")
        }
        return value
    }
}
