import ShadowMMU
import VirtualMachine
import X86Paging

/// A `VirtualMachine` under shadow paging (or TDP) running a 4-level or PAE
/// guest whose tables the benchmark writes with `poke` (no MMU hook, as a
/// loader would before the pages are first used). One vCPU unless asked for
/// more; `tables` are vCPU 0's, the others' paging is turned on with tables
/// of their own (`enablePaging(vcpu:with:)`).
public final class ShadowGuest {
    public let vm: VirtualMachine
    public var tables: GuestTableBuilder
    public let memorySize: UInt64

    /// Guest tables live in `[1 MiB, tableLimit)`; data pages above it.
    public static let tableBase: UInt64 = 1 << 20
    /// Linear address of the first mapped page (PML4/PDPT index 0, PDPT index 1).
    public static let linearBase: UInt64 = 0x4000_0000

    /// `mmu`: the hypervisor's MMU mode (shadow paging, or TDP); `roots`: how
    /// it builds roots without a guest table of their shape; `vcpus`: how
    /// many vCPUs the machine has.
    public init(
        mode: PagingMode, memorySize: UInt64, tableLimit: UInt64 = 8 << 20, mmu: MMUMode = .shadow, roots: RootDesign = .local,
        vcpus: Int = 1
    ) {
        let vm = VirtualMachine(memorySize: memorySize, vcpuCount: vcpus, mode: mmu, rootDesign: roots)
        self.vm = vm
        self.memorySize = memorySize
        tables = GuestTableBuilder(
            mode: mode, tableBase: Self.tableBase, tableLimit: tableLimit,
            poke: { vm.poke($0, width: 8, $1) }, peek: { vm.peek($0, width: 8) })
    }

    /// Turns paging on with `tables` (after every PDPTE of a PAE guest exists).
    public func enablePaging() { enablePaging(vcpu: 0, with: tables) }

    /// Turns paging on in vCPU `vcpu` with `tables`.
    public func enablePaging(vcpu: Int, with tables: GuestTableBuilder) {
        for (register, value) in tables.pagingOn {
            precondition(vm.writeRegister(vcpu: vcpu, register, value), "vCPU \(vcpu)'s \(register) write was refused")
        }
    }

    @inlinable
    public func linear(page: Int) -> UInt64 { Self.linearBase + UInt64(page) << 12 }

    /// A read of 8 bytes at `address` that must complete.
    @inlinable
    public func read(_ address: UInt64) -> UInt64 { read(vcpu: 0, address) }

    /// A read of 8 bytes at `address` by vCPU `vcpu` that must complete.
    @inlinable
    public func read(vcpu: Int, _ address: UInt64) -> UInt64 {
        guard case .completed(_, let value?) = vm.access(vcpu: vcpu, address, .read, width: 8) else {
            preconditionFailure("benchmark guest: vCPU \(vcpu)'s read at \(address.hex) did not complete")
        }
        return value
    }

    /// Fails loudly if the MMU's audit or the machine found anything wrong:
    /// a benchmark of a broken configuration measures nothing.
    public func checkHealthy(_ what: String) {
        let problems = vm.mmu.audit(level: .full, at: what) + vm.violations
        precondition(problems.isEmpty, "\(what): \(problems.prefix(3))")
    }
}

extension ShadowGuest {
    /// A fresh guest whose tables map `count` pages at consecutive linear
    /// addresses to frames spread evenly over all of guest memory above the
    /// tables: the same work per fault whatever the guest's size, with the
    /// MMU's and the host's structures touched across the whole range.
    public static func firstTouch(mode: PagingMode, memorySize: UInt64, count: Int) -> ShadowGuest {
        let guest = ShadowGuest(mode: mode, memorySize: memorySize)
        let dataBase: UInt64 = 8 << 20
        let stride = max(1, (memorySize - dataBase) / 4096 / UInt64(count)) << 12
        for page in 0..<count {
            guest.tables.map(guest.linear(page: page), to: dataBase + UInt64(page) * stride)
        }
        guest.enablePaging()
        return guest
    }
}
