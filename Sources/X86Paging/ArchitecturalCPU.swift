/// The result of translating one access on a CPU.
public enum AccessTranslation: Hashable, Sendable {
    /// The access may proceed at this physical address.
    case physical(UInt64)
    /// A #PF with this error code (CR2 is the linear address).
    case pageFault(PageFaultErrorCode)
    /// A #GP: non-canonical address.
    case generalProtection
}

/// A simulated x86 CPU without virtualization: architectural registers, a TLB,
/// and the reference walker over the guest's own tables. This is what
/// `mmu native` runs, and the reference every other configuration matches.
public final class ArchitecturalCPU {
    public let tlb: TLB
    /// The mutable state, behind a `let` pointer like `TLB.State`: a class's
    /// stored `var` costs a dynamic exclusivity check on every access, as
    /// much as the rest of a TLB hit.
    @usableFromInline let state: UnsafeMutablePointer<State>

    @usableFromInline
    struct State {
        @usableFromInline var registers: ControlRegisters
        @usableFromInline var walks = 0

        init(registers: ControlRegisters) { self.registers = registers }
    }

    public internal(set) var registers: ControlRegisters {
        @inlinable get { state.pointee.registers }
        set { state.pointee.registers = newValue }
    }

    /// Walks performed (TLB misses and re-walks).
    public var walks: Int {
        @inlinable get { state.pointee.walks }
        set { state.pointee.walks = newValue }
    }

    public init(model: CPUModel = CPUModel(), tlbCapacity: Int = 4096) {
        tlb = TLB(capacity: tlbCapacity)
        state = .allocate(capacity: 1)
        state.initialize(to: State(registers: ControlRegisters(model: model)))
    }

    deinit {
        state.deinitialize(count: 1)
        state.deallocate()
    }

    /// Translates `address` for `access`: a TLB hit is judged against the
    /// current registers; a miss, a permission failure on a cached entry, or a
    /// write through an entry cached with D=0 walks the tables again.
    @inlinable
    public func translate<Memory: PhysicalMemory>(_ address: UInt64, _ access: MemoryAccess, memory: Memory) -> AccessTranslation {
        let registers = state.pointee.registers
        let mode = registers.mode
        guard mode.isCanonical(address) else { return .generalProtection }
        let linear = registers.linearAddress(address)
        if mode == .none { return .physical(linear) }
        if let entry = tlb.lookup(linear, pcid: registers.pcid) {
            if entry.permits(access, under: registers) {
                tlb.countHit()
                return .physical(entry.physicalAddress(of: linear))
            }
            tlb.drop(linear)
        }
        tlb.countMiss()
        return walkAndFill(linear, access, memory: memory)
    }

    /// The miss path of `translate`, kept out of line so that the hit path
    /// stays small where it is inlined.
    @inlinable @inline(never)
    func walkAndFill<Memory: PhysicalMemory>(_ linear: UInt64, _ access: MemoryAccess, memory: Memory) -> AccessTranslation {
        state.pointee.walks += 1
        let registers = state.pointee.registers
        switch Walker.walk(linear, access, registers: registers, memory: memory) {
        case .translated(let translation):
            tlb.insert(translation, pcid: registers.pcid)
            return .physical(translation.physicalAddress)
        case .pageFault(let code):
            return .pageFault(code)
        case .generalProtection:
            return .generalProtection
        }
    }

    /// A MOV to a control register, WRMSR to EFER or WRPKRU, with its TLB effects.
    @discardableResult
    public func write<Memory: PhysicalMemory>(_ register: ControlRegister, _ value: UInt64, memory: Memory) -> RegisterWriteResult {
        let result = state.pointee.registers.write(register, value, memory: memory)
        if case .accepted(let effects) = result {
            if effects.contains(.flushAll) {
                tlb.flushAll()
            } else if effects.contains(.flushNonGlobal) {
                tlb.flushNonGlobal(pcid: registers.pcid)
            }
        }
        return result
    }

    /// EFLAGS.AC.
    public func setAlignmentCheck(_ value: Bool) { registers.alignmentCheck = value }

    /// INVLPG: invalidates the translations of the page containing `address`
    /// (a non-canonical address invalidates nothing; it does not fault).
    public func invalidatePage(_ address: UInt64) {
        guard registers.mode != .none, registers.mode.isCanonical(address) else { return }
        tlb.invalidatePage(registers.linearAddress(address))
    }

    /// Invalidates every translation, global ones included (INVPCID all-contexts).
    public func flush() { tlb.flushAll() }
}

extension ArchitecturalCPU {
    /// What `translate` did for one access, for explanations.
    public struct TracedTranslation: Sendable {
        /// The cached translation that decided the access, if it hit the TLB.
        public var tlbEntry: TLBEntry?
        /// A cached translation found but not usable (permission or D=0 write),
        /// which made the CPU walk again.
        public var droppedTLBEntry: TLBEntry?
        /// The walk, when one was made.
        public var walk: WalkTrace?
        public var result: AccessTranslation
    }

    /// `translate`, recording the TLB decision and the walk step by step.
    /// Same side effects as `translate` (TLB fill, A/D updates).
    public func translateTraced<Memory: PhysicalMemory>(_ address: UInt64, _ access: MemoryAccess, memory: Memory) -> TracedTranslation {
        let mode = registers.mode
        guard mode.isCanonical(address) else { return TracedTranslation(result: .generalProtection) }
        let linear = registers.linearAddress(address)
        if mode == .none { return TracedTranslation(result: .physical(linear)) }
        var dropped: TLBEntry?
        if let entry = tlb.lookup(linear, pcid: registers.pcid) {
            if entry.permits(access, under: registers) {
                tlb.countHit()
                return TracedTranslation(tlbEntry: entry, result: .physical(entry.physicalAddress(of: linear)))
            }
            dropped = entry
            tlb.drop(linear)
        }
        tlb.countMiss()
        walks += 1
        var trace = WalkTrace()
        let result: AccessTranslation
        switch Walker.walk(linear, access, registers: registers, memory: memory, tracer: &trace) {
        case .translated(let translation):
            tlb.insert(translation, pcid: registers.pcid)
            result = .physical(translation.physicalAddress)
        case .pageFault(let code):
            result = .pageFault(code)
        case .generalProtection:
            result = .generalProtection
        }
        return TracedTranslation(droppedTLBEntry: dropped, walk: trace, result: result)
    }
}
