import VirtualMachine
import X86Paging
import ScenarioLanguage

/// The architecture's answer for an L2 access: the two-dimensional walk over
/// L2's page tables and its L1 hypervisor's nested tables, both in guest
/// (L1-physical) memory, then the data access where it lands. Used by
/// `mmu native` and by the checker's oracle.
package enum NestedReference {
    package static let l2PhysicalSpace = VirtualMachine.l2PhysicalSpace

    /// Performs `command` on `memory` (its accessed/dirty updates and data).
    /// A final L1-physical address outside memory is MMIO: reads return all
    /// ones, writes are dropped.
    package static func access<Memory: PhysicalMemory>(
        _ command: AccessCommand, registers: ControlRegisters, paging: NestedPaging, memory: Memory
    ) -> AccessOutcome {
        var references = 0
        let result = TwoDimensionalWalker.walk(
            command.address, command.memoryAccess, guest: registers, nested: paging, memory: memory,
            guestMemorySize: l2PhysicalSpace, references: &references)
        switch result {
        case .generalProtection:
            return .generalProtection
        case .guestPageFault(let code):
            return .pageFault(errorCode: code.rawValue)
        case .nestedFault(let fault):
            return .nestedFault(fault)
        case .translated(let translation, let l1Address, _, _):
            let inside = memory.contains(l1Address, width: command.width)
            switch command.kind {
            case .read:
                let value = inside ? memory.load(l1Address, width: command.width) : SparseMemory.widthMask(command.width)
                return .ok(gpa: translation.physicalAddress, value: value)
            case .write:
                if inside { memory.store(l1Address, width: command.width, command.value ?? memory.load(l1Address, width: command.width)) }
                return .ok(gpa: translation.physicalAddress, value: nil)
            case .fetch:
                return .ok(gpa: translation.physicalAddress, value: nil)
            }
        }
    }
}
