/// The runner's machine code, hand-assembled (no assembler at build or run
/// time). Every instruction is listed with its mnemonic.
///
/// There is no dispatcher loop in the guest: the host is the dispatcher. For
/// each operation it sets RIP to one of the stubs below and the operands in
/// registers with KVM_SET_REGS (RBX = address or new register value, RCX =
/// value, RAX/RDX = WRMSR halves), then runs the vCPU. A stub is the one
/// instruction under test followed by a report: `out 0x10, al` at CPL 0
/// (``RunnerCode/donePort``), or `ud2` at CPL 3 (whose #UD handler reports).
/// Every exception vector v < 32 enters a one-instruction handler,
/// `out 0x40+v, al`, on the vCPU's IST1 stack; the host reads the vector from
/// the port, the error code and the faulting RIP from the exception frame on
/// that stack, and CR2 with KVM_GET_SREGS. This keeps the instructions KVM must
/// emulate per operation to 2 at CPL 0 (the access and the OUT) and 3 at CPL 3
/// (IRETQ, the handler's OUT, plus the exception delivery), since under PVM
/// every CPL-0 instruction of a guest that is not PVM-aware is emulated.
enum RunnerCode {
    /// Port of the "operation done" report of a CPL-0 stub.
    static let donePort: UInt16 = 0x10
    /// Port base of the exception handlers: vector v reports on `0x40 + v`.
    static let exceptionPortBase: UInt16 = 0x40
    /// Port of the handler of every vector ≥ 32 (none is expected).
    static let otherVectorPort: UInt16 = 0x7F

    // MARK: Instruction bytes

    /// `out imm8, al`
    static func out(_ port: UInt16) -> [UInt8] { [0xE6, UInt8(port)] }
    static let ud2: [UInt8] = [0x0F, 0x0B]  // ud2
    static let hlt: [UInt8] = [0xF4]  // hlt

    /// The load of `width` bytes from [rbx] into (r/e)ax.
    static func load(width: Int) -> [UInt8] {
        switch width {
        case 1: [0x0F, 0xB6, 0x03]  // movzx eax, byte [rbx]
        case 2: [0x0F, 0xB7, 0x03]  // movzx eax, word [rbx]
        case 4: [0x8B, 0x03]  // mov eax, dword [rbx]
        default: [0x48, 0x8B, 0x03]  // mov rax, qword [rbx]
        }
    }
    /// The store of `width` bytes of (r/e)cx to [rbx].
    static func store(width: Int) -> [UInt8] {
        switch width {
        case 1: [0x88, 0x0B]  // mov byte [rbx], cl
        case 2: [0x66, 0x89, 0x0B]  // mov word [rbx], cx
        case 4: [0x89, 0x0B]  // mov dword [rbx], ecx
        default: [0x48, 0x89, 0x0B]  // mov qword [rbx], rcx
        }
    }
    /// A locked read-modify-write of `width` bytes at [rbx] that leaves them
    /// unchanged: a write access in every respect (faults with W=1, sets A and D).
    static func unchangedStore(width: Int) -> [UInt8] {
        switch width {
        case 1: [0xF0, 0x80, 0x0B, 0x00]  // lock or byte [rbx], 0
        case 2: [0xF0, 0x66, 0x83, 0x0B, 0x00]  // lock or word [rbx], 0
        case 4: [0xF0, 0x83, 0x0B, 0x00]  // lock or dword [rbx], 0
        default: [0xF0, 0x48, 0x83, 0x0B, 0x00]  // lock or qword [rbx], 0
        }
    }
    static let movCR0: [UInt8] = [0x0F, 0x22, 0xC3]  // mov cr0, rbx
    static let movCR3: [UInt8] = [0x0F, 0x22, 0xDB]  // mov cr3, rbx
    static let movCR4: [UInt8] = [0x0F, 0x22, 0xE3]  // mov cr4, rbx
    static let movCR4FromRCX: [UInt8] = [0x0F, 0x22, 0xE1]  // mov cr4, rcx
    static let wrmsr: [UInt8] = [0x0F, 0x30]  // wrmsr (ecx = MSR, edx:eax = value)
    static let invlpg: [UInt8] = [0x0F, 0x01, 0x3B]  // invlpg [rbx]
    static let iretq: [UInt8] = [0x48, 0xCF]  // iretq
    static let lldtDX: [UInt8] = [0x0F, 0x00, 0xD2]  // lldt dx
    static let movDSFromAX: [UInt8] = [0x8E, 0xD8]  // mov ds, ax
    static let movDSFromCX: [UInt8] = [0x8E, 0xD9]  // mov ds, cx

    // MARK: Stubs

    /// The supervisor stubs, in order; offsets are assigned by ``supervisorImage``.
    enum SupervisorStub: Hashable, Sendable {
        case load(width: Int)  // load; out done
        case store(width: Int)  // store; out done
        case movCR0, movCR3, movCR4  // mov crN, rbx; out done
        case wrmsr  // wrmsr; out done
        case invlpg  // invlpg [rbx]; out done
        case flushByPGE  // mov cr4, rbx (PGE toggled); mov cr4, rcx (original); out done
        case iretq  // iretq (to a user stub or to a fetch target)
        case implicitLoad  // lldt dx; mov ds, ax; mov ds, cx; out done
    }

    /// The user (CPL-3) stubs; each ends in `ud2`, whose #UD reports.
    enum UserStub: Hashable, Sendable {
        case load(width: Int)
        case store(width: Int)
        case unchangedStore(width: Int)
    }

    static let widths = [1, 2, 4, 8]

    static func bytes(_ stub: SupervisorStub) -> [UInt8] {
        let done = out(donePort)
        switch stub {
        case .load(let w): return load(width: w) + done
        case .store(let w): return store(width: w) + done
        case .movCR0: return movCR0 + done
        case .movCR3: return movCR3 + done
        case .movCR4: return movCR4 + done
        case .wrmsr: return wrmsr + done
        case .invlpg: return invlpg + done
        case .flushByPGE: return movCR4 + movCR4FromRCX + done
        case .iretq: return iretq + hlt
        case .implicitLoad: return lldtDX + movDSFromAX + movDSFromCX + done
        }
    }

    static func bytes(_ stub: UserStub) -> [UInt8] {
        switch stub {
        case .load(let w): return load(width: w) + ud2
        case .store(let w): return store(width: w) + ud2
        case .unchangedStore(let w): return unchangedStore(width: w) + ud2
        }
    }

    static let allSupervisorStubs: [SupervisorStub] =
        widths.map { .load(width: $0) } + widths.map { .store(width: $0) }
        + [.movCR0, .movCR3, .movCR4, .wrmsr, .invlpg, .flushByPGE, .iretq, .implicitLoad]
    static let allUserStubs: [UserStub] =
        widths.map { .load(width: $0) } + widths.map { .store(width: $0) }
        + widths.map { .unchangedStore(width: $0) }

    /// Offset of the exception handlers inside the supervisor code page;
    /// vector v's handler is at `handlerOffset + 4·v`.
    static let handlerOffset = 0x800

    /// An assembled code page: bytes and where each stub starts.
    struct Image<Stub: Hashable & Sendable>: Sendable {
        var bytes: [UInt8]
        var offsets: [Stub: Int]
        /// Offset of the reporting instruction (`ud2`) of each user stub.
        var reportOffsets: [Stub: Int]
    }

    /// The supervisor code page: stubs at 16-byte boundaries from 0, handlers
    /// for the 256 vectors at ``handlerOffset`` (4 bytes each:
    /// `out 0x40+v, al; hlt; hlt` for v < 32, `out 0x7f, al; hlt; hlt` above).
    static let supervisorImage: Image<SupervisorStub> = {
        var page = [UInt8](repeating: 0xF4, count: 4096)  // hlt everywhere else
        var offsets: [SupervisorStub: Int] = [:]
        var at = 0
        for stub in allSupervisorStubs {
            let b = bytes(stub)
            offsets[stub] = at
            page.replaceSubrange(at..<at + b.count, with: b)
            at += (b.count + 15) & ~15
        }
        precondition(at <= handlerOffset)
        for vector in 0..<256 {
            let port = vector < 32 ? exceptionPortBase + UInt16(vector) : otherVectorPort
            let b = out(port) + hlt + hlt
            page.replaceSubrange(handlerOffset + 4 * vector..<handlerOffset + 4 * vector + 4, with: b)
        }
        return Image(bytes: page, offsets: offsets, reportOffsets: [:])
    }()

    /// The user code page: user stubs at 16-byte boundaries.
    static let userImage: Image<UserStub> = {
        var page = [UInt8](repeating: 0xF4, count: 4096)
        var offsets: [UserStub: Int] = [:]
        var reports: [UserStub: Int] = [:]
        var at = 0
        for stub in allUserStubs {
            let b = bytes(stub)
            offsets[stub] = at
            reports[stub] = at + b.count - ud2.count
            page.replaceSubrange(at..<at + b.count, with: b)
            at += (b.count + 15) & ~15
        }
        return Image(bytes: page, offsets: offsets, reportOffsets: reports)
    }()

    /// Vectors whose exceptions push an error code.
    static func pushesErrorCode(_ vector: Int) -> Bool {
        [8, 10, 11, 12, 13, 14, 17, 21, 29, 30].contains(vector)
    }
}
