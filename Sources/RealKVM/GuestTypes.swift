/// The kind of an access under test.
public enum AccessKind: String, Sendable, CaseIterable {
    /// A load of `width` bytes (`movzx` for 1 and 2 bytes, `mov` for 4 and 8).
    case read
    /// A store of `width` bytes (`mov`), or with no value a locked RMW that
    /// leaves the bytes unchanged (see ``KVMMachine/access(vcpu:_:gva:width:user:value:implicitSupervisor:)``).
    case write
    /// An instruction fetch: an IRETQ to the address with RFLAGS.TF set.
    case fetch
}

/// The control registers a MOV can write.
public enum ControlRegister: String, Sendable, CaseIterable {
    case cr0, cr3, cr4
}

/// What the guest saw when one operation ran.
public enum GuestOutcome: Equatable, Sendable, CustomStringConvertible {
    /// The operation completed. For a read, `value` is the value read
    /// (zero-extended from `width` bytes); otherwise 0.
    case ok(value: UInt64)
    /// A #PF was delivered to the guest, with this error code and CR2.
    case pageFault(errorCode: UInt64, cr2: UInt64)
    /// A #GP was delivered to the guest (a non-canonical address, a MOV CRn or
    /// WRMSR value the CPU rejects, …).
    case generalProtection(errorCode: UInt64)
    /// Any other exception (vector < 32, or 32 for "some vector ≥ 32"), with
    /// its error code for the vectors that push one.
    case exception(vector: Int, errorCode: UInt64?)
    /// The guest did not report within the bound (``KVMMachine/maxExitsPerOperation``
    /// exits or ``KVMMachine/operationTimeout`` seconds of KVM_RUN). The vCPU is
    /// still usable if it was stopped at CPL 0; otherwise later operations on
    /// it throw.
    case hung

    public var description: String {
        switch self {
        case .ok(let v): "ok value=0x\(String(v, radix: 16))"
        case .pageFault(let ec, let cr2): "#PF ec=0x\(String(ec, radix: 16)) cr2=0x\(String(cr2, radix: 16))"
        case .generalProtection(let ec): "#GP ec=0x\(String(ec, radix: 16))"
        case .exception(let v, let ec): "exception \(v)" + (ec.map { " ec=0x\(String($0, radix: 16))" } ?? "")
        case .hung: "hung"
        }
    }
}

/// The paging-related registers of a vCPU as KVM reports them (KVM_GET_SREGS).
public struct GuestControlRegisters: Equatable, Sendable, CustomStringConvertible {
    public var cr0: UInt64
    public var cr3: UInt64
    public var cr4: UInt64
    public var efer: UInt64
    /// The last page-fault address.
    public var cr2: UInt64

    public var description: String {
        "cr0=0x\(String(cr0, radix: 16)) cr3=0x\(String(cr3, radix: 16)) cr4=0x\(String(cr4, radix: 16)) "
            + "efer=0x\(String(efer, radix: 16)) cr2=0x\(String(cr2, radix: 16))"
    }
}
