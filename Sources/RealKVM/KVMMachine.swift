#if canImport(Glibc)
import Glibc
#endif

/// A VM on the host's `/dev/kvm` that performs a scenario's operations one at
/// a time, so that their results can be compared with the model's.
///
/// Guest memory `[0, memorySize)` is one anonymous mapping in memslot 0; the
/// runner (``RunnerLayout``) is memslot 1. The host reads and writes guest
/// memory directly between operations (``write(_:_:width:)``, ``read(_:width:)``);
/// every other operation runs guest instructions on one vCPU and returns what
/// the guest saw (``GuestOutcome``). All vCPUs are driven from the calling
/// thread, one KVM_RUN at a time; the class is not thread-safe.
///
/// ## How each operation is done (PVM host, verified)
///
/// The host is the dispatcher: it loads the operands into registers and RIP
/// with KVM_SET_REGS (after completing the previous port I/O with an
/// `immediate_exit` KVM_RUN), then runs the vCPU until it reports by port I/O.
/// CPL-0 instructions are emulated by KVM's x86 emulator under PVM, so CPL-0
/// accesses go through KVM's software walk of the guest's tables (no TLB);
/// CPL-3 instructions run natively on KVM's shadow page tables.
///
/// | operation | guest instructions |
/// |---|---|
/// | read, CPL 0 | `movzx eax, byte/word [rbx]` / `mov eax, [rbx]` / `mov rax, [rbx]`; `out` |
/// | write, CPL 0 | `mov [rbx], cl/cx/ecx/rcx`; `out` |
/// | read/write, CPL 3 | `iretq` to a user stub: the access; `ud2`; #UD handler `out` |
/// | fetch (either CPL) | `iretq` to the address with RFLAGS.TF=1; whatever follows is reported |
/// | implicit supervisor read | `lldt` (LDT base = the address); `mov ds` (8-byte descriptor read); `mov ds`; `out` |
/// | MOV CR0/CR3/CR4 | `mov crN, rbx`; `out` |
/// | EFER | `wrmsr` (ECX 0xC0000080); `out` |
/// | INVLPG | `invlpg [rbx]`; `out` |
/// | flush | `mov cr4, rbx` (CR4.PGE toggled); `mov cr4, rcx` (CR4 restored); `out` |
/// | store (guest store via a mapping not under test) | `mov [rbx], …` through the runner's direct map; `out` |
///
/// What PVM's CPL-0 emulation does and does not do (measured on this host):
/// emulated fine: `mov` to/from CR0, CR2, CR3, CR4; `rdmsr`/`wrmsr` EFER;
/// `invlpg`; `iretq` (CPL 0→0 and 0→3, with TF); `lgdt`, `lldt`, `sldt`,
/// segment-register loads; `pushfq`/`popfq`; `movzx`/`mov` loads and stores;
/// `out`; `hlt`; exception delivery through the IDT (IST stacks). Not
/// emulated (KVM_EXIT_INTERNAL_ERROR, emulation failure): `invpcid`, `stac`,
/// `clac`, `int3`, `int n` at CPL 0. At CPL 3, `int n` through a DPL-3 gate
/// gives #UD, so the runner returns from CPL 3 through `ud2` (or the fault).
/// KVM rejects CR4.PCIDE (#GP) although the host CPU has PCID, and its
/// KVM_GET_SUPPORTED_CPUID lists neither SMEP nor SMAP, yet accepts and honours
/// both CR4 bits. A guest that faults while delivering a fault (e.g. handlers
/// on U=1 pages under SMEP) makes KVM spin in KVM_RUN instead of shutting
/// down; the operation watchdog turns that into ``GuestOutcome/hung``.
public final class KVMMachine {
    /// Guest memory size in bytes (memslot 0 covers it, rounded up to 4 KiB).
    public let memorySize: UInt64
    /// Number of vCPUs.
    public let vcpuCount: Int
    /// The guest's MAXPHYADDR (CPUID 0x80000008 EAX[7:0] given to KVM).
    public let maxPhysicalAddressBits: Int
    /// What the host's KVM can do.
    public let host: KVMHost
    /// Bound on the KVM exits one operation may take before it is `.hung`.
    public var maxExitsPerOperation = 64
    /// Bound on the wall-clock time of one operation's KVM_RUNs, in seconds,
    /// enforced by a per-thread POSIX timer whose signal interrupts KVM_RUN.
    public var operationTimeout: Double = 1.0

    private let kvmFD: Int32
    private let vmFD: Int32
    private let guestMemory: UnsafeMutableRawPointer
    private let guestMappingSize: Int
    private let runnerMemory: UnsafeMutableRawPointer
    private var vcpus: [VCPU] = []
    private var dirtyLogging = false
    private let watchdog = Watchdog()
    private let addressMask: UInt64

    final class VCPU {
        let index: Int
        let fd: Int32
        let run: UnsafeMutableRawPointer
        let runSize: Int
        var started = false
        /// Why this vCPU cannot run operations any more, if it cannot.
        var lost: String?
        /// CR3 as last set by start or a MOV CR3 that completed.
        var cr3: UInt64 = 0
        var alignmentCheck = false
        let regs = RawStruct(size: Regs.size)
        let sregs = RawStruct(size: Sregs.size)

        init(index: Int, fd: Int32, run: UnsafeMutableRawPointer, runSize: Int) {
            self.index = index
            self.fd = fd
            self.run = run
            self.runSize = runSize
        }
    }

    /// Creates the VM: KVM_CREATE_VM, memslot 0 (guest memory) and 1 (runner),
    /// `vcpuCount` × KVM_CREATE_VCPU with KVM_SET_CPUID2 (KVM's supported CPUID
    /// with MAXPHYADDR = `maxPhysicalAddressBits`, SMEP/SMAP/PCID/INVPCID as
    /// the host supports them, no LA57, no PKU), and writes the runner.
    ///
    /// Throws when `/dev/kvm` cannot be used, when `memorySize` is 0 or above
    /// ``RunnerLayout/guestPhysicalBase``, when `maxPhysicalAddressBits` is
    /// above the host's or below ``RunnerLayout/minimumPhysicalAddressBits``,
    /// or when `vcpuCount` is not in `1...RunnerLayout.maxVCPUs`.
    public init(memorySize: UInt64, vcpuCount: Int = 1, maxPhysicalAddressBits: Int, host: KVMHost? = nil) throws(KVMError) {
        let probed: KVMHost
        if let given = host { probed = given } else { probed = try KVMHost.probeThrowing() }
        let host = probed
        guard memorySize > 0, memorySize <= RunnerLayout.guestPhysicalBase else {
            throw KVMError("guest memory of \(memorySize) bytes does not fit below the runner region at 0x\(String(RunnerLayout.guestPhysicalBase, radix: 16))")
        }
        guard maxPhysicalAddressBits <= host.physicalAddressBits else {
            throw KVMError("guest MAXPHYADDR \(maxPhysicalAddressBits) exceeds the host's \(host.physicalAddressBits)")
        }
        guard maxPhysicalAddressBits >= RunnerLayout.minimumPhysicalAddressBits else {
            throw KVMError("guest MAXPHYADDR \(maxPhysicalAddressBits) is below \(RunnerLayout.minimumPhysicalAddressBits): the runner region at 0x\(String(RunnerLayout.guestPhysicalBase, radix: 16)) would not be addressable")
        }
        guard (1...RunnerLayout.maxVCPUs).contains(vcpuCount) else {
            throw KVMError("vcpuCount \(vcpuCount) is not in 1...\(RunnerLayout.maxVCPUs)")
        }
        self.host = host
        self.memorySize = memorySize
        self.vcpuCount = vcpuCount
        self.maxPhysicalAddressBits = maxPhysicalAddressBits
        self.addressMask = ((1 << UInt64(maxPhysicalAddressBits)) - 1) & ~0xFFF

        let kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        guard kvm >= 0 else { throw KVMError.errno("cannot open /dev/kvm") }
        let vm = ioctl(kvm, KVMRequest.createVM, Int32(0))
        guard vm >= 0 else {
            let e = KVMError.errno("KVM_CREATE_VM")
            close(kvm)
            throw e
        }
        kvmFD = kvm
        vmFD = vm
        guestMappingSize = Int((memorySize + 0xFFF) & ~0xFFF)
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        let g = mmap(nil, guestMappingSize, PROT_READ | PROT_WRITE, flags, -1, 0)
        let r = mmap(nil, Int(RunnerLayout.size), PROT_READ | PROT_WRITE, flags, -1, 0)
        guestMemory = (g == MAP_FAILED ? nil : g) ?? UnsafeMutableRawPointer(bitPattern: 1)!
        runnerMemory = (r == MAP_FAILED ? nil : r) ?? UnsafeMutableRawPointer(bitPattern: 1)!
        // From here on deinit cleans up whatever was made.
        guard g != MAP_FAILED, r != MAP_FAILED else { throw KVMError.errno("mmap of guest memory") }

        try setMemslot(RunnerLayout.guestMemorySlot, gpa: 0, size: UInt64(guestMappingSize), host: guestMemory, logDirty: false)
        try setMemslot(RunnerLayout.runnerSlot, gpa: RunnerLayout.guestPhysicalBase, size: RunnerLayout.size, host: runnerMemory, logDirty: false)

        var cpuid = try supportedCPUID(kvm)
        forceFeatureBits(&cpuid, smep: host.supportsSMEP, smap: host.supportsSMAP, pcid: host.supportsPCID)
        for i in cpuid.indices where cpuid[i].function == 0x8000_0008 {
            cpuid[i].eax = (cpuid[i].eax & ~0xFF) | UInt32(maxPhysicalAddressBits)
        }
        let mmapSize = Int(ioctl(kvm, KVMRequest.getVCPUMmapSize))
        guard mmapSize > 0 else { throw KVMError.errno("KVM_GET_VCPU_MMAP_SIZE") }
        for n in 0..<vcpuCount {
            let fd = ioctl(vm, KVMRequest.createVCPU, Int32(n))
            guard fd >= 0 else { throw KVMError.errno("KVM_CREATE_VCPU \(n)") }
            let p = mmap(nil, mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            guard p != MAP_FAILED, let run = p else {
                close(fd)
                throw KVMError.errno("mmap of vCPU \(n)'s kvm_run")
            }
            vcpus.append(VCPU(index: n, fd: fd, run: run, runSize: mmapSize))
            try setCPUID(fd, cpuid)
        }
        writeRunner()
    }

    deinit {
        for v in vcpuFDsToClose() { munmap(v.run, v.runSize); close(v.fd) }
        if guestMemory != UnsafeMutableRawPointer(bitPattern: 1) { munmap(guestMemory, guestMappingSize) }
        if runnerMemory != UnsafeMutableRawPointer(bitPattern: 1) { munmap(runnerMemory, Int(RunnerLayout.size)) }
        close(vmFD)
        close(kvmFD)
    }

    private func vcpuFDsToClose() -> [VCPU] { vcpus }

    private func setMemslot(_ slot: UInt32, gpa: UInt64, size: UInt64, host: UnsafeMutableRawPointer, logDirty: Bool) throws(KVMError) {
        let region = RawStruct(size: 32)
        region[0, as: UInt32.self] = slot
        region[4, as: UInt32.self] = logDirty ? 1 : 0  // KVM_MEM_LOG_DIRTY_PAGES
        region.setU64(8, gpa)
        region.setU64(16, size)
        region.setU64(24, UInt64(UInt(bitPattern: host)))
        guard ioctl(vmFD, KVMRequest.setUserMemoryRegion, region.pointer) == 0 else {
            throw KVMError.errno("KVM_SET_USER_MEMORY_REGION slot \(slot) (gpa 0x\(String(gpa, radix: 16)), size 0x\(String(size, radix: 16)))")
        }
    }

    // MARK: The runner image

    private func runnerStore(_ offset: UInt64, _ value: UInt64) {
        runnerMemory.storeBytes(of: value.littleEndian, toByteOffset: Int(offset), as: UInt64.self)
    }
    private func runnerLoad(_ offset: UInt64) -> UInt64 {
        UInt64(littleEndian: runnerMemory.loadUnaligned(fromByteOffset: Int(offset), as: UInt64.self))
    }

    private func writeRunner() {
        typealias L = RunnerLayout
        let base = L.guestPhysicalBase
        let supNonLeaf: UInt64 = 0x23  // P RW A
        let supLeaf: UInt64 = 0x63  // P RW A D
        let userNonLeaf: UInt64 = 0x27  // P RW US A
        let userLeaf: UInt64 = 0x67  // P RW US A D
        let dmLeaf: UInt64 = 0xE3  // P RW A D PS
        runnerStore(L.pdptOffset + 0, base + L.supervisorPDOffset | supNonLeaf)
        runnerStore(L.pdptOffset + 8, base + L.userPDOffset | userNonLeaf)
        runnerStore(L.supervisorPDOffset, base + L.supervisorPTOffset | supNonLeaf)
        for i in 0..<UInt64(512) { runnerStore(L.supervisorPTOffset + 8 * i, base + 0x1000 * i | supLeaf) }
        runnerStore(L.userPDOffset, base + L.userPTOffset | userNonLeaf)
        runnerStore(L.userPTOffset, base + L.userCodeOffset | userLeaf)
        for n in 0..<vcpuCount {
            runnerStore(L.userPTOffset + 8 * UInt64(1 + n), base + L.userStackPageOffset(vcpu: n) | userLeaf)
        }
        let gib: UInt64 = 1 << 30
        let directGiB = Int((memorySize + gib - 1) / gib)
        for k in 0..<directGiB {
            let pd = L.directMapPDOffset + 0x1000 * UInt64(k)
            runnerStore(L.pdptOffset + 8 * UInt64(2 + k), base + pd | supNonLeaf)
            for j in 0..<UInt64(512) {
                let gpa = UInt64(k) * gib + j << 21
                if gpa < memorySize { runnerStore(pd + 8 * j, gpa | dmLeaf) }
            }
        }
        // Code.
        let sup = RunnerCode.supervisorImage.bytes
        let user = RunnerCode.userImage.bytes
        sup.withUnsafeBytes { (runnerMemory + Int(L.supervisorCodeOffset)).copyMemory(from: $0.baseAddress!, byteCount: 4096) }
        user.withUnsafeBytes { (runnerMemory + Int(L.userCodeOffset)).copyMemory(from: $0.baseAddress!, byteCount: 4096) }
        // IDT: 256 interrupt gates, DPL 0, IST1.
        for v in 0..<UInt64(256) {
            let handler = L.supervisorVA(L.supervisorCodeOffset) + UInt64(RunnerCode.handlerOffset) + 4 * v
            let low = (handler & 0xFFFF) | UInt64(L.kernelCodeSelector) << 16 | 1 << 32 | 0x8E << 40
                | ((handler >> 16) & 0xFFFF) << 48
            runnerStore(L.idtOffset + 16 * v, low)
            runnerStore(L.idtOffset + 16 * v + 8, handler >> 32)
        }
        // Per-vCPU GDT and TSS.
        for n in 0..<vcpuCount {
            let gdt = L.gdtOffset(vcpu: n)
            runnerStore(gdt + 0x00, 0)
            runnerStore(gdt + 0x08, 0x00AF_9B00_0000_FFFF)  // kernel code: 64-bit, DPL 0, accessed
            runnerStore(gdt + 0x10, 0x00CF_9300_0000_FFFF)  // kernel data: DPL 0, accessed
            runnerStore(gdt + 0x18, 0x00AF_FB00_0000_FFFF)  // user code: 64-bit, DPL 3, accessed
            runnerStore(gdt + 0x20, 0x00CF_F300_0000_FFFF)  // user data: DPL 3, accessed
            let tss = L.supervisorVA(L.tssOffset(vcpu: n))
            runnerStore(gdt + 0x28, 0x67 | (tss & 0xFF_FFFF) << 16 | 0x8B << 40 | ((tss >> 24) & 0xFF) << 56)  // busy 64-bit TSS
            runnerStore(gdt + 0x30, tss >> 32)
            runnerStore(gdt + 0x38, 0)  // LDT descriptor, set per implicit access
            runnerStore(gdt + 0x40, 0)
            let t = L.tssOffset(vcpu: n)
            for o in stride(from: UInt64(0), to: 0x68, by: 8) { runnerStore(t + o, 0) }
            runnerMemory.storeBytes(of: L.supervisorVA(L.kernelStackTopOffset(vcpu: n)), toByteOffset: Int(t + 4), as: UInt64.self)  // RSP0
            runnerMemory.storeBytes(of: L.supervisorVA(L.istStackTopOffset(vcpu: n)), toByteOffset: Int(t + 0x24), as: UInt64.self)  // IST1
            runnerMemory.storeBytes(of: UInt16(0x68), toByteOffset: Int(t + 0x66), as: UInt16.self)  // no I/O bitmap
        }
    }

    // MARK: Host access to guest memory

    /// Host write into guest memory ("poke"): `width` (1, 2, 4 or 8) bytes of
    /// `value`, little-endian, at `gpa`. Not a guest access: KVM's MMU does not
    /// see it (no write tracking, no dirty log). Bytes outside `[0, memorySize)`
    /// are dropped.
    ///
    /// Measured: once KVM has shadowed a guest page table (a CPL-3 access
    /// walked it), a host write to it is never noticed — not by INVLPG, not
    /// by a flush, not by MOV CR3 of the same value — because KVM relies on
    /// write-protecting the frame against guest writes. Use ``store(vcpu:gpa:value:width:)``
    /// for a guest write to a page table.
    public func write(_ gpa: UInt64, _ value: UInt64, width: Int = 8) {
        for i in 0..<UInt64(width) where gpa &+ i < memorySize {
            guestMemory.storeBytes(of: UInt8(truncatingIfNeeded: value >> (8 * i)), toByteOffset: Int(gpa + i), as: UInt8.self)
        }
    }

    /// Host read of guest memory ("peek"): `width` bytes at `gpa`,
    /// little-endian. Bytes outside `[0, memorySize)` read as 0xff.
    public func read(_ gpa: UInt64, width: Int = 8) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<UInt64(width) {
            let b: UInt64 = gpa &+ i < memorySize ? UInt64(guestMemory.load(fromByteOffset: Int(gpa + i), as: UInt8.self)) : 0xFF
            v |= b << (8 * i)
        }
        return v
    }

    /// The host's read of an 8-byte entry at a guest-physical address in
    /// either memslot, or nil outside both.
    private func physicalQword(_ gpa: UInt64) -> UInt64? {
        if gpa + 8 <= memorySize { return read(gpa, width: 8) }
        let base = RunnerLayout.guestPhysicalBase
        if gpa >= base && gpa + 8 <= base + RunnerLayout.size { return runnerLoad(gpa - base) }
        return nil
    }

    /// The guest-physical address a 4-level walk of the current tables gives
    /// for `gva` (present bits and page sizes only; permissions ignored).
    private func hostTranslate(cr3: UInt64, gva: UInt64) -> UInt64? {
        var table = cr3 & addressMask
        for level in stride(from: 4, through: 1, by: -1) {
            let index = (gva >> (12 + 9 * UInt64(level - 1))) & 0x1FF
            guard let entry = physicalQword(table + 8 * index), entry & 1 != 0 else { return nil }
            if level == 1 || (level <= 3 && entry & 0x80 != 0) {
                let pageBits = 12 + 9 * UInt64(level - 1)
                let frame = entry & addressMask & ~((1 << pageBits) - 1)
                return frame | (gva & ((1 << pageBits) - 1))
            }
            table = entry & addressMask
        }
        return nil
    }

    // MARK: The runner's top-level entry

    /// What `installRunnerEntry(cr3:)` would find at slot 511 of the table
    /// `cr3` names: the address of the slot, and its value.
    public func runnerSlot(forTopLevelTableAt cr3: UInt64) -> (gpa: UInt64, value: UInt64)? {
        let table = cr3 & addressMask
        guard table + 4096 <= memorySize else { return nil }
        let slot = table + RunnerLayout.topLevelEntryOffset
        return (slot, read(slot, width: 8))
    }

    /// Writes ``RunnerLayout/topLevelEntry`` into slot 511 of the table `cr3`
    /// names (a host write), if that slot holds 0 or already that value.
    func installRunnerEntry(cr3: UInt64) throws(KVMError) {
        guard let (slot, value) = runnerSlot(forTopLevelTableAt: cr3) else {
            throw KVMError("CR3 0x\(String(cr3, radix: 16)) names a top-level table outside guest memory [0, 0x\(String(memorySize, radix: 16))): the runner cannot map itself")
        }
        if value == RunnerLayout.topLevelEntry { return }
        guard value == 0 else {
            throw KVMError("PML4 slot \(RunnerLayout.topLevelSlot) of the table at 0x\(String(cr3 & addressMask, radix: 16)) (gpa 0x\(String(slot, radix: 16))) holds 0x\(String(value, radix: 16)), neither 0 nor the runner's entry 0x\(String(RunnerLayout.topLevelEntry, radix: 16)): the scenario uses the runner's slot")
        }
        write(slot, RunnerLayout.topLevelEntry, width: 8)
    }

    // MARK: Starting a vCPU

    private func vcpu(_ n: Int) throws(KVMError) -> VCPU {
        guard vcpus.indices.contains(n) else { throw KVMError("no vCPU \(n) (the machine has \(vcpuCount))") }
        return vcpus[n]
    }

    /// Puts vCPU `vcpu` straight into 64-bit mode at CPL 0 with KVM_SET_SREGS
    /// (CS/DS/SS and TR of the runner, its GDT and IDT) and these registers;
    /// EFER.LMA is set here. First installs the runner's PML4 entry in the
    /// table CR3 names. `cr0` must have PG and PE, `cr4` PAE (and not LA57),
    /// `efer` LME. May be called again to reset the vCPU's registers (KVM
    /// then resets its MMU context, as for any KVM_SET_SREGS).
    public func start(vcpu n: Int, cr0: UInt64, cr3: UInt64, cr4: UInt64, efer: UInt64) throws(KVMError) {
        let v = try vcpu(n)
        guard cr0 & 0x8000_0001 == 0x8000_0001 else { throw KVMError("start: CR0 0x\(String(cr0, radix: 16)) lacks PG or PE: the runner only runs in long mode") }
        guard cr4 & 0x20 != 0, cr4 & 0x1000 == 0 else { throw KVMError("start: CR4 0x\(String(cr4, radix: 16)) must have PAE and not LA57 (4-level paging only)") }
        guard efer & 0x100 != 0 else { throw KVMError("start: EFER 0x\(String(efer, radix: 16)) lacks LME: the runner only runs in long mode") }
        try installRunnerEntry(cr3: cr3)
        let s = v.sregs
        guard ioctl(v.fd, KVMRequest.getSregs, s.pointer) == 0 else { throw KVMError.errno("KVM_GET_SREGS") }
        typealias L = RunnerLayout
        Sregs.setSegment(s, at: Sregs.cs, base: 0, limit: 0xFFFF_FFFF, selector: L.kernelCodeSelector, type: 11, dpl: 0, db: 0, s: 1, l: 1, g: 1)
        for seg in [Sregs.ds, Sregs.es, Sregs.fs, Sregs.gs, Sregs.ss] {
            Sregs.setSegment(s, at: seg, base: 0, limit: 0xFFFF_FFFF, selector: L.kernelDataSelector, type: 3, dpl: 0, db: 1, s: 1, l: 0, g: 1)
        }
        Sregs.setSegment(s, at: Sregs.tr, base: L.supervisorVA(L.tssOffset(vcpu: n)), limit: 0x67, selector: L.tssSelector, type: 11, dpl: 0, db: 0, s: 0, l: 0, g: 0)
        s.setU64(Sregs.gdtBase, L.supervisorVA(L.gdtOffset(vcpu: n)))
        s[Sregs.gdtLimit, as: UInt16.self] = L.gdtLimit
        s.setU64(Sregs.idtBase, L.supervisorVA(L.idtOffset))
        s[Sregs.idtLimit, as: UInt16.self] = 0xFFF
        s.setU64(Sregs.cr0, cr0)
        s.setU64(Sregs.cr2, 0)
        s.setU64(Sregs.cr3, cr3)
        s.setU64(Sregs.cr4, cr4)
        s.setU64(Sregs.efer, efer | 0x400)
        guard ioctl(v.fd, KVMRequest.setSregs, s.pointer) == 0 else {
            throw KVMError.errno("KVM_SET_SREGS (CR0 0x\(String(cr0, radix: 16)), CR3 0x\(String(cr3, radix: 16)), CR4 0x\(String(cr4, radix: 16)), EFER 0x\(String(efer | 0x400, radix: 16)))")
        }
        v.cr3 = cr3
        v.started = true
        v.lost = nil
    }

    /// The vCPU's CR0, CR3, CR4, EFER and CR2 as KVM reports them (KVM_GET_SREGS).
    public func registers(vcpu n: Int) throws(KVMError) -> GuestControlRegisters {
        let v = try vcpu(n)
        guard ioctl(v.fd, KVMRequest.getSregs, v.sregs.pointer) == 0 else { throw KVMError.errno("KVM_GET_SREGS") }
        let s = v.sregs
        return GuestControlRegisters(cr0: s.u64(Sregs.cr0), cr3: s.u64(Sregs.cr3), cr4: s.u64(Sregs.cr4), efer: s.u64(Sregs.efer), cr2: s.u64(Sregs.cr2))
    }

    // MARK: Running one operation

    /// What the runner reported.
    enum Report: Equatable {
        /// `out 0x10` from a CPL-0 stub; RAX then.
        case done(rax: UInt64)
        /// An exception handler's report: vector, error code (if the vector
        /// pushes one), the RIP in the exception frame, CR2.
        case exception(vector: Int, errorCode: UInt64?, rip: UInt64, cr2: UInt64, rax: UInt64)
        /// KVM_EXIT_HLT at this RIP.
        case halted(rip: UInt64)
        /// KVM could not emulate the instruction at this RIP (KVM_EXIT_INTERNAL_ERROR, emulation).
        case emulationFailure(rip: UInt64)
        case hung
    }

    /// Register values for one operation (everything else is 0).
    struct Entry {
        var rip: UInt64
        var rsp: UInt64
        var rflags: UInt64 = 0x2
        var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
        /// Value of every other general-purpose register.
        var fill: UInt64 = 0
    }

    private static let nonCanonical: UInt64 = 0x8000_0000_0000_0000

    private func ready(_ v: VCPU) throws(KVMError) {
        guard v.started else { throw KVMError("vCPU \(v.index) was not started") }
        if let why = v.lost { throw KVMError("vCPU \(v.index) cannot run operations: \(why)") }
        // The scenario may have overwritten the runner's slot with a host write.
        if let (slot, value) = runnerSlot(forTopLevelTableAt: v.cr3), value != RunnerLayout.topLevelEntry {
            throw KVMError("PML4 slot \(RunnerLayout.topLevelSlot) of the current table (gpa 0x\(String(slot, radix: 16))) holds 0x\(String(value, radix: 16)), not the runner's entry 0x\(String(RunnerLayout.topLevelEntry, radix: 16))")
        }
    }

    private func supervisorStubVA(_ stub: RunnerCode.SupervisorStub) -> UInt64 {
        RunnerLayout.supervisorVA(RunnerLayout.supervisorCodeOffset) + UInt64(RunnerCode.supervisorImage.offsets[stub]!)
    }
    private func userStubVA(_ stub: RunnerCode.UserStub) -> UInt64 {
        RunnerLayout.userCodeVA + UInt64(RunnerCode.userImage.offsets[stub]!)
    }
    private func userReportVA(_ stub: RunnerCode.UserStub) -> UInt64 {
        RunnerLayout.userCodeVA + UInt64(RunnerCode.userImage.reportOffsets[stub]!)
    }
    private var cpl0RFlags: (VCPU) -> UInt64 { { 0x2 | ($0.alignmentCheck ? 0x4_0000 : 0) } }

    /// Writes an IRETQ frame on vCPU `v`'s CPL-0 stack and returns its address.
    private func iretFrame(_ v: VCPU, rip: UInt64, cs: UInt16, rflags: UInt64, rsp: UInt64, ss: UInt16) -> UInt64 {
        let top = RunnerLayout.kernelStackTopOffset(vcpu: v.index)
        let frame = top - 40
        runnerStore(frame, rip)
        runnerStore(frame + 8, UInt64(cs))
        runnerStore(frame + 16, rflags)
        runnerStore(frame + 24, rsp)
        runnerStore(frame + 32, UInt64(ss))
        return RunnerLayout.supervisorVA(frame)
    }

    private func perform(_ v: VCPU, _ e: Entry) throws(KVMError) -> Report {
        let r = v.regs
        for o in stride(from: 0, to: Regs.size, by: 8) { r.setU64(o, e.fill) }
        r.setU64(Regs.rax, e.rax)
        r.setU64(Regs.rbx, e.rbx)
        r.setU64(Regs.rcx, e.rcx)
        r.setU64(Regs.rdx, e.rdx)
        r.setU64(Regs.rsp, e.rsp)
        r.setU64(Regs.rip, e.rip)
        r.setU64(Regs.rflags, e.rflags)
        guard ioctl(v.fd, KVMRequest.setRegs, r.pointer) == 0 else { throw KVMError.errno("KVM_SET_REGS") }
        let report = try runUntilReport(v)
        if case .hung = report {
            // Finish an I/O or MMIO exit left pending by the exit bound (an
            // MMIO read gets all ones), so the next KVM_SET_REGS is not undone.
            try? completePendingIO(v)
            // Usable again only if it stopped at CPL 0 (SET_REGS can then move it).
            if ioctl(v.fd, KVMRequest.getSregs, v.sregs.pointer) == 0 {
                let cpl = v.sregs[Sregs.cs + Sregs.segSelector, as: UInt16.self] & 3
                if cpl != 0 { v.lost = "an operation hung with the vCPU at CPL \(cpl)" }
            } else {
                v.lost = "an operation hung and KVM_GET_SREGS failed"
            }
        }
        return report
    }

    private func runUntilReport(_ v: VCPU) throws(KVMError) -> Report {
        watchdog.arm(seconds: operationTimeout)
        defer { watchdog.disarm() }
        for _ in 0..<maxExitsPerOperation {
            if ioctl(v.fd, KVMRequest.run) != 0 {
                let code = errno
                if code == EINTR || code == EAGAIN {
                    if watchdog.expired { return .hung }
                    continue
                }
                throw KVMError.errno("KVM_RUN on vCPU \(v.index)")
            }
            let reason = v.run.load(fromByteOffset: Run.exitReason, as: UInt32.self)
            switch reason {
            case KVMExit.io:
                let port = v.run.load(fromByteOffset: Run.ioPort, as: UInt16.self)
                if needsIOCompletion { try completePendingIO(v) }
                guard ioctl(v.fd, KVMRequest.getRegs, v.regs.pointer) == 0 else { throw KVMError.errno("KVM_GET_REGS") }
                let rax = v.regs.u64(Regs.rax)
                if port == RunnerCode.donePort { return .done(rax: rax) }
                if port >= RunnerCode.exceptionPortBase && port < RunnerCode.exceptionPortBase + 32 || port == RunnerCode.otherVectorPort {
                    let vector = port == RunnerCode.otherVectorPort ? 32 : Int(port - RunnerCode.exceptionPortBase)
                    let top = RunnerLayout.istStackTopOffset(vcpu: v.index)
                    let rip = runnerLoad(top - 40)
                    let ec = RunnerCode.pushesErrorCode(vector) ? runnerLoad(top - 48) : nil
                    var cr2: UInt64 = 0
                    if vector == 14 {
                        guard ioctl(v.fd, KVMRequest.getSregs, v.sregs.pointer) == 0 else { throw KVMError.errno("KVM_GET_SREGS") }
                        cr2 = v.sregs.u64(Sregs.cr2)
                    }
                    return .exception(vector: vector, errorCode: ec, rip: rip, cr2: cr2, rax: rax)
                }
                throw KVMError("vCPU \(v.index): unexpected port I/O to port 0x\(String(port, radix: 16)) at RIP 0x\(String(v.regs.u64(Regs.rip), radix: 16))")
            case KVMExit.mmio:
                // Guest-physical addresses outside both memslots: unclaimed
                // MMIO, reads give all ones, writes are dropped.
                if v.run.load(fromByteOffset: Run.mmioIsWrite, as: UInt8.self) == 0 {
                    v.run.storeBytes(of: UInt64.max, toByteOffset: Run.mmioData, as: UInt64.self)
                }
                continue
            case KVMExit.hlt:
                guard ioctl(v.fd, KVMRequest.getRegs, v.regs.pointer) == 0 else { throw KVMError.errno("KVM_GET_REGS") }
                return .halted(rip: v.regs.u64(Regs.rip))
            case KVMExit.internalError:
                let sub = v.run.load(fromByteOffset: Run.internalSuberror, as: UInt32.self)
                guard ioctl(v.fd, KVMRequest.getRegs, v.regs.pointer) == 0 else { throw KVMError.errno("KVM_GET_REGS") }
                let rip = v.regs.u64(Regs.rip)
                if sub == 1 { return .emulationFailure(rip: rip) }
                throw KVMError("vCPU \(v.index): KVM_EXIT_INTERNAL_ERROR suberror \(sub) at RIP 0x\(String(rip, radix: 16))")
            case KVMExit.shutdown:
                v.lost = "the guest triple-faulted (KVM_EXIT_SHUTDOWN)"
                throw KVMError("vCPU \(v.index): the guest triple-faulted (KVM_EXIT_SHUTDOWN)")
            case KVMExit.intr:
                if watchdog.expired { return .hung }
                continue
            default:
                var detail = ""
                if reason == 9 { detail = " (hardware entry failure reason 0x\(String(v.run.load(fromByteOffset: Run.failEntryReason, as: UInt64.self), radix: 16)))" }
                throw KVMError("vCPU \(v.index): unexpected exit \(KVMExit.name(reason))\(detail)")
            }
        }
        return .hung
    }

    /// Whether an OUT must be completed by re-entering KVM_RUN before
    /// KVM_SET_REGS. With hardware virtualization a CPL-0 OUT is a fast-PIO
    /// exit whose RIP advances only on re-entry; under PVM every CPL-0 OUT is
    /// emulated and complete when KVM_RUN returns (verified: RIP already
    /// points past it), so the extra KVM_RUN (a quarter of an operation's
    /// cost) is skipped.
    private var needsIOCompletion: Bool { host.flavour != .pvm }

    /// Test hook: runs vCPU `n` from `rip` at CPL 0 with no operation set up.
    func runForTesting(vcpu n: Int, rip: UInt64, user: Bool = false) throws(KVMError) -> Report {
        let v = try vcpu(n)
        try ready(v)
        if user {
            let frame = iretFrame(v, rip: rip, cs: RunnerLayout.userCodeSelector, rflags: 0x2, rsp: RunnerLayout.userStackTopVA(vcpu: n), ss: RunnerLayout.userDataSelector)
            return try perform(v, Entry(rip: supervisorStubVA(.iretq), rsp: frame))
        }
        return try perform(v, Entry(rip: rip, rsp: kernelStack(v)))
    }

    /// Test hook: whether the watchdog timer could be armed.
    var watchdogArmedForTesting: Bool { watchdog.arm(seconds: 1); defer { watchdog.disarm() }; return watchdog.isArmed }

    /// Completes a pending port I/O so that KVM_SET_REGS sees consistent state:
    /// KVM_RUN with `immediate_exit` set returns at once with EINTR.
    private func completePendingIO(_ v: VCPU) throws(KVMError) {
        if v.run.load(fromByteOffset: Run.exitReason, as: UInt32.self) == KVMExit.mmio,
            v.run.load(fromByteOffset: Run.mmioIsWrite, as: UInt8.self) == 0
        {
            v.run.storeBytes(of: UInt64.max, toByteOffset: Run.mmioData, as: UInt64.self)
        }
        v.run.storeBytes(of: UInt8(1), toByteOffset: 1, as: UInt8.self)
        defer { v.run.storeBytes(of: UInt8(0), toByteOffset: 1, as: UInt8.self) }
        let rc = ioctl(v.fd, KVMRequest.run)
        if rc != 0 && errno != EINTR { throw KVMError.errno("KVM_RUN (immediate exit) on vCPU \(v.index)") }
    }

    /// Maps a report of a data access or register operation to the guest's outcome.
    private func outcome(_ report: Report, width: Int = 8) throws(KVMError) -> GuestOutcome {
        switch report {
        case .done(let rax): return .ok(value: width == 8 ? rax : rax & ((1 << UInt64(8 * width)) - 1))
        case .exception(let vector, let ec, _, let cr2, _): return Self.exceptionOutcome(vector, ec, cr2)
        case .hung: return .hung
        case .halted(let rip): throw KVMError("the runner halted unexpectedly at RIP 0x\(String(rip, radix: 16))")
        case .emulationFailure(let rip): throw KVMError("KVM could not emulate the runner's instruction at RIP 0x\(String(rip, radix: 16)) (KVM_EXIT_INTERNAL_ERROR, emulation failure)")
        }
    }

    private static func exceptionOutcome(_ vector: Int, _ ec: UInt64?, _ cr2: UInt64) -> GuestOutcome {
        switch vector {
        case 14: .pageFault(errorCode: ec ?? 0, cr2: cr2)
        case 13: .generalProtection(errorCode: ec ?? 0)
        default: .exception(vector: vector, errorCode: ec)
        }
    }

    // MARK: Operations

    /// Performs one access under test with exactly one guest instruction.
    ///
    /// - `read`: a load of `width` (1, 2, 4, 8) bytes from `gva`; `.ok(value:)`
    ///   carries the value read.
    /// - `write`: a store of `width` bytes of `value` to `gva`. With `value`
    ///   nil, "store the bytes already there": at CPL 3 a `lock or [gva], 0`
    ///   (one locked read-modify-write, a write access in every respect: W=1
    ///   in any #PF, A and D set, memory unchanged); at CPL 0 a plain store of
    ///   the bytes the host finds by walking the current tables (KVM emulates
    ///   CPL-0 code with a software walk and no TLB, so these are the bytes
    ///   the store reaches).
    /// - `fetch`: an IRETQ to `gva` (CS of the requested CPL) with RFLAGS.TF=1
    ///   and every general-purpose register, RSP included, non-canonical
    ///   (`0x8000_0000_0000_0000`). The fetch is the access; `width` is
    ///   ignored. The outcome is `.pageFault` when a #PF arrives with the
    ///   frame's RIP = CR2 = `gva` (the fetch failed), `.generalProtection`
    ///   for a #GP at the IRETQ or, for a non-canonical `gva`, at `gva` (KVM
    ///   under PVM loads the non-canonical RIP and faults there), and
    ///   `.ok(value: 0)` for anything else: the trap after one instruction, a
    ///   fault of that instruction (mostly #GP/#SS from its non-canonical
    ///   registers), HLT, or an instruction KVM cannot emulate at CPL 0. The
    ///   target's first instruction does execute: with the registers
    ///   non-canonical it cannot touch memory except through a RIP-relative or
    ///   absolute (moffs) operand, and a SYSCALL/SYSENTER there would leave the
    ///   runner (both residual risks; nothing in the runner writes guest memory).
    /// - `user`: run the access at CPL 3 (IRETQ from CPL 0 to a user stub on
    ///   U=1 pages; the stub's `ud2` or the access's fault returns to CPL 0);
    ///   otherwise at CPL 0 with RFLAGS.AC as set by ``setAlignmentCheck(vcpu:_:)``.
    ///   User accesses run with RFLAGS.AC = 0.
    /// - `implicitSupervisor` (reads at CPL 0 only): the read is a segment
    ///   descriptor load through an LDT whose base is `gva` (`lldt`, then
    ///   `mov ds` of LDT selector 0x4): an 8-byte implicit supervisor read
    ///   at `gva` whatever `width` says, to which SMAP applies regardless of AC.
    ///   `.ok(value: 0)` when the descriptor was read (whether or not it is a
    ///   valid data-segment descriptor: #GP/#NP with the LDT selector as error
    ///   code count as read); the value read is not reported. If the 8 bytes
    ///   happen to form a present data or code descriptor with its accessed
    ///   bit clear, the CPU sets that bit (a write at `gva + 5`). A
    ///   non-canonical `gva` gives `.generalProtection`. Implicit writes,
    ///   implicit fetches and implicit accesses with `user` throw (unsupported).
    ///
    /// A non-canonical `gva` gives `.generalProtection`. Throws on misuse
    /// (bad width, an access crossing a 4 KiB boundary, a vCPU not started or
    /// lost) and when KVM fails.
    public func access(
        vcpu n: Int, _ kind: AccessKind, gva: UInt64, width: Int = 8, user: Bool, value: UInt64? = nil,
        implicitSupervisor: Bool = false
    ) throws(KVMError) -> GuestOutcome {
        let v = try vcpu(n)
        try ready(v)
        if kind != .fetch {
            guard [1, 2, 4, 8].contains(width) else { throw KVMError("access width \(width) is not 1, 2, 4 or 8") }
            guard (gva & 0xFFF) + UInt64(width) <= 0x1000 else { throw KVMError("an access of \(width) bytes at 0x\(String(gva, radix: 16)) crosses a 4 KiB boundary") }
        }
        if implicitSupervisor {
            guard kind == .read, !user else {
                throw KVMError("unsupported: an implicit supervisor \(kind.rawValue)\(user ? " at CPL 3" : "") (only implicit reads at CPL 0 are realised)")
            }
            return try implicitRead(v, gva: gva)
        }
        switch kind {
        case .fetch:
            return try fetch(v, gva: gva, user: user)
        case .read where !user:
            return try outcome(perform(v, Entry(rip: supervisorStubVA(.load(width: width)), rsp: kernelStack(v), rflags: cpl0RFlags(v), rbx: gva)), width: width)
        case .write where !user:
            var bytes = value
            if bytes == nil {
                bytes = hostTranslate(cr3: v.cr3, gva: gva).map { read($0, width: width) } ?? 0
            }
            let r = try perform(v, Entry(rip: supervisorStubVA(.store(width: width)), rsp: kernelStack(v), rflags: cpl0RFlags(v), rbx: gva, rcx: bytes!))
            return try outcome(r).okValueZero
        default:
            let stub: RunnerCode.UserStub =
                kind == .read ? .load(width: width) : value == nil ? .unchangedStore(width: width) : .store(width: width)
            let frame = iretFrame(
                v, rip: userStubVA(stub), cs: RunnerLayout.userCodeSelector, rflags: 0x2,
                rsp: RunnerLayout.userStackTopVA(vcpu: v.index), ss: RunnerLayout.userDataSelector)
            let r = try perform(v, Entry(rip: supervisorStubVA(.iretq), rsp: frame, rbx: gva, rcx: value ?? 0))
            if case .exception(6, _, let rip, _, let rax) = r, rip == userReportVA(stub) {
                return kind == .read ? .ok(value: width == 8 ? rax : rax & ((1 << UInt64(8 * width)) - 1)) : .ok(value: 0)
            }
            if case .exception(13, _, let rip, _, _) = r, rip == supervisorStubVA(.iretq) {
                throw KVMError("the IRETQ to CPL 3 took #GP: the runner's user segments or stack are unusable")
            }
            return try outcome(r)
        }
    }

    private func kernelStack(_ v: VCPU) -> UInt64 {
        RunnerLayout.supervisorVA(RunnerLayout.kernelStackTopOffset(vcpu: v.index))
    }

    /// Bits 63:47 all equal (4-level paging).
    static func isCanonical4Level(_ address: UInt64) -> Bool {
        let top = address >> 47
        return top == 0 || top == 0x1_ffff
    }

    private func fetch(_ v: VCPU, gva: UInt64, user: Bool) throws(KVMError) -> GuestOutcome {
        let frame = iretFrame(
            v, rip: gva, cs: user ? RunnerLayout.userCodeSelector : RunnerLayout.kernelCodeSelector,
            rflags: 0x102 | (user ? 0 : cpl0RFlags(v)), rsp: Self.nonCanonical,
            ss: user ? RunnerLayout.userDataSelector : RunnerLayout.kernelDataSelector)
        let iret = supervisorStubVA(.iretq)
        let r = try perform(v, Entry(rip: iret, rsp: frame, fill: Self.nonCanonical))
        switch r {
        case .exception(14, let ec, let rip, let cr2, _) where rip == gva && cr2 == gva:
            let code = ec ?? 0
            // The target's first instruction runs; a #PF its own data access
            // takes at the same address is not the fetch's. A fetch fault has
            // I/D set whenever CR4.SMEP or EFER.NXE makes the CPU report it,
            // and otherwise, at CPL 0, can only be not-present or reserved.
            let registers = try self.registers(vcpu: v.index)
            let reportsFetch = registers.cr4 & (1 << 20) != 0 || registers.efer & (1 << 11) != 0
            let fetchFault = reportsFetch ? code & 0x10 != 0 : (user || code & 0x1 == 0 || code & 0x8 != 0)
            return fetchFault ? .pageFault(errorCode: code, cr2: cr2) : .ok(value: 0)
        case .exception(13, let ec, let rip, _, _) where rip == iret || (rip == gva && !Self.isCanonical(gva)):
            // Architecturally IRETQ to a non-canonical RIP takes #GP at the
            // IRETQ; KVM (PVM) loads RIP and takes #GP at the target.
            return .generalProtection(errorCode: ec ?? 0)
        case .exception(13, let ec, _, _, _) where !Self.isCanonical4Level(gva):
            // KVM's emulator of IRETQ (CPL 0 is emulated under PVM) may load
            // the non-canonical RIP and fault on the fetch after it; either
            // way the fetch of a non-canonical address took #GP.
            return .generalProtection(errorCode: ec ?? 0)
        case .hung:
            return .hung
        default:
            return .ok(value: 0)
        }
    }

    static func isCanonical(_ va: UInt64) -> Bool {
        let top = va >> 47
        return top == 0 || top == 0x1_FFFF
    }

    private func implicitRead(_ v: VCPU, gva: UInt64) throws(KVMError) -> GuestOutcome {
        let gdt = RunnerLayout.gdtOffset(vcpu: v.index)
        // 64-bit LDT descriptor: base = gva, limit 7, type 2 (LDT), present.
        runnerStore(gdt + 0x38, 0x7 | (gva & 0xFF_FFFF) << 16 | 0x82 << 40 | ((gva >> 24) & 0xFF) << 56)
        runnerStore(gdt + 0x40, gva >> 32)
        let r = try perform(
            v, Entry(rip: supervisorStubVA(.implicitLoad), rsp: kernelStack(v), rflags: cpl0RFlags(v),
                     rax: 0x4, rcx: UInt64(RunnerLayout.kernelDataSelector), rdx: UInt64(RunnerLayout.ldtSelector)))
        let lldtRIP = supervisorStubVA(.implicitLoad)
        switch r {
        case .done: return .ok(value: 0)
        case .exception(13, let ec, let rip, _, _) where rip == lldtRIP:
            _ = ec
            return .generalProtection(errorCode: 0)  // LLDT rejects a non-canonical base
        case .exception(let vector, let ec, let rip, _, _) where (vector == 13 || vector == 11) && ec == 0x4 && rip == lldtRIP + 3:
            return .ok(value: 0)  // the descriptor was read; it is just not a usable data segment
        default: return try outcome(r)
        }
    }

    /// MOV to CR0, CR3 or CR4 at CPL 0 (`mov crN, rbx`). For CR3, the runner's
    /// PML4 entry is installed in the new table first (a host write). A value
    /// the CPU rejects gives `.generalProtection` and leaves the register as it was.
    public func writeControlRegister(vcpu n: Int, _ register: ControlRegister, _ value: UInt64) throws(KVMError) -> GuestOutcome {
        let v = try vcpu(n)
        try ready(v)
        let stub: RunnerCode.SupervisorStub
        switch register {
        case .cr0: stub = .movCR0
        case .cr3:
            stub = .movCR3
            try installRunnerEntry(cr3: value)
        case .cr4: stub = .movCR4
        }
        let result = try outcome(perform(v, Entry(rip: supervisorStubVA(stub), rsp: kernelStack(v), rflags: cpl0RFlags(v), rbx: value))).okValueZero
        if register == .cr3, case .ok = result { v.cr3 = value }
        return result
    }

    /// WRMSR to IA32_EFER (0xC0000080) at CPL 0. A value the CPU rejects gives
    /// `.generalProtection`.
    public func writeEFER(vcpu n: Int, _ value: UInt64) throws(KVMError) -> GuestOutcome {
        let v = try vcpu(n)
        try ready(v)
        return try outcome(perform(v, Entry(
            rip: supervisorStubVA(.wrmsr), rsp: kernelStack(v), rflags: cpl0RFlags(v),
            rax: value & 0xFFFF_FFFF, rcx: 0xC000_0080, rdx: value >> 32))).okValueZero
    }

    /// INVLPG `gva` at CPL 0.
    public func invlpg(vcpu n: Int, _ gva: UInt64) throws(KVMError) -> GuestOutcome {
        let v = try vcpu(n)
        try ready(v)
        return try outcome(perform(v, Entry(rip: supervisorStubVA(.invlpg), rsp: kernelStack(v), rflags: cpl0RFlags(v), rbx: gva))).okValueZero
    }

    /// Invalidates every translation of the vCPU, global ones included, and
    /// changes no register's final value: two MOV CR4 at CPL 0, the first
    /// with CR4.PGE toggled, the second restoring CR4 (each change of PGE
    /// flushes everything; KVM handles it as a guest TLB flush). INVPCID
    /// type 2 is not used: KVM's emulator cannot emulate INVPCID at CPL 0 under
    /// PVM, and KVM offers no PCID to the guest here.
    public func flushAll(vcpu n: Int) throws(KVMError) -> GuestOutcome {
        let v = try vcpu(n)
        try ready(v)
        let cr4 = try registers(vcpu: n).cr4
        return try outcome(perform(v, Entry(rip: supervisorStubVA(.flushByPGE), rsp: kernelStack(v), rflags: cpl0RFlags(v), rbx: cr4 ^ 0x80, rcx: cr4))).okValueZero
    }

    /// Sets RFLAGS.AC for the following CPL-0 operations (it matters for
    /// SMAP). The host sets RFLAGS with each operation's KVM_SET_REGS; no
    /// guest instruction runs here (STAC/CLAC cannot be emulated under PVM).
    public func setAlignmentCheck(vcpu n: Int, _ on: Bool) throws(KVMError) {
        try vcpu(n).alignmentCheck = on
    }

    /// A guest CPU store at CPL 0 to guest-physical `gpa` through the runner's
    /// supervisor direct map (a mapping not under test): `mov [rbx], cl/cx/ecx/rcx`.
    /// If KVM write-protects that frame (a shadowed guest page table) it traps
    /// and KVM updates its shadow state; the store appears in the dirty log.
    public func store(vcpu n: Int, gpa: UInt64, value: UInt64, width: Int = 8) throws(KVMError) -> GuestOutcome {
        let v = try vcpu(n)
        try ready(v)
        guard [1, 2, 4, 8].contains(width) else { throw KVMError("store width \(width) is not 1, 2, 4 or 8") }
        guard gpa + UInt64(width) <= memorySize else { throw KVMError("store at 0x\(String(gpa, radix: 16)) is outside guest memory") }
        let gva = RunnerLayout.directMapVirtualBase + gpa
        return try outcome(perform(v, Entry(rip: supervisorStubVA(.store(width: width)), rsp: kernelStack(v), rflags: cpl0RFlags(v), rbx: gva, rcx: value))).okValueZero
    }

    // MARK: Host events

    /// Starts dirty logging of guest memory (memslot 0 with KVM_MEM_LOG_DIRTY_PAGES).
    public func startDirtyLog() throws(KVMError) {
        try setMemslot(RunnerLayout.guestMemorySlot, gpa: 0, size: UInt64(guestMappingSize), host: guestMemory, logDirty: true)
        dirtyLogging = true
    }

    /// Stops dirty logging.
    public func stopDirtyLog() throws(KVMError) {
        try setMemslot(RunnerLayout.guestMemorySlot, gpa: 0, size: UInt64(guestMappingSize), host: guestMemory, logDirty: false)
        dirtyLogging = false
    }

    /// KVM_GET_DIRTY_LOG of the guest memslot: the frames (gfns) written by
    /// the guest since logging started or since the previous read, sorted;
    /// KVM clears the log and logging continues. Host writes (``write(_:_:width:)``)
    /// are not listed.
    public func readDirtyLog() throws(KVMError) -> [UInt64] {
        guard dirtyLogging else { throw KVMError("dirty logging is not on") }
        let pages = guestMappingSize / 4096
        let words = (pages + 63) / 64
        let bitmap = UnsafeMutablePointer<UInt64>.allocate(capacity: words)
        defer { bitmap.deallocate() }
        bitmap.initialize(repeating: 0, count: words)
        let log = RawStruct(size: 16)
        log[0, as: UInt32.self] = RunnerLayout.guestMemorySlot
        log.setU64(8, UInt64(UInt(bitPattern: bitmap)))
        guard ioctl(vmFD, KVMRequest.getDirtyLog, log.pointer) == 0 else { throw KVMError.errno("KVM_GET_DIRTY_LOG") }
        var gfns: [UInt64] = []
        for w in 0..<words where bitmap[w] != 0 {
            for b in 0..<64 where bitmap[w] & (1 << UInt64(b)) != 0 { gfns.append(UInt64(w * 64 + b)) }
        }
        return gfns
    }

    /// What a host does when it takes guest memory away and gives it back
    /// (an MMU-notifier invalidation): saves the contents of the pages
    /// covering `[gpa, gpa + size)`, `madvise(MADV_DONTNEED)` on their backing
    /// (KVM's MMU notifier drops every mapping of them), and restores the
    /// contents. Guest-visible memory is unchanged.
    public func invalidate(gpa: UInt64, size: UInt64) throws(KVMError) {
        let start = gpa & ~0xFFF
        let end = min((gpa + size + 0xFFF) & ~0xFFF, UInt64(guestMappingSize))
        guard start < end else { return }
        let count = Int(end - start)
        let saved = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 4096)
        defer { saved.deallocate() }
        saved.copyMemory(from: guestMemory + Int(start), byteCount: count)
        guard madvise(guestMemory + Int(start), count, MADV_DONTNEED) == 0 else { throw KVMError.errno("madvise(MADV_DONTNEED)") }
        (guestMemory + Int(start)).copyMemory(from: saved, byteCount: count)
    }

    /// Deletes and re-adds the guest memslot (KVM_SET_USER_MEMORY_REGION with
    /// size 0, then as before): KVM drops every shadow page (a fast zap of all
    /// pages). Contents and dirty-logging state are kept.
    public func zapAll() throws(KVMError) {
        try setMemslot(RunnerLayout.guestMemorySlot, gpa: 0, size: 0, host: guestMemory, logDirty: false)
        try setMemslot(RunnerLayout.guestMemorySlot, gpa: 0, size: UInt64(guestMappingSize), host: guestMemory, logDirty: dirtyLogging)
    }

    /// KVM_SET_NR_MMU_PAGES: caps KVM's shadow pages at `n`; KVM reclaims
    /// pages to stay under it (KVM applies its own minimum).
    public func setMaxShadowPages(_ n: Int) throws(KVMError) {
        guard n >= 0 else { throw KVMError("negative shadow-page limit \(n)") }
        guard ioctl(vmFD, KVMRequest.setNrMMUPages, Int32(clamping: n)) == 0 else { throw KVMError.errno("KVM_SET_NR_MMU_PAGES \(n)") }
    }
}

extension GuestOutcome {
    /// `.ok(value: 0)` for any `.ok`, otherwise self.
    var okValueZero: GuestOutcome {
        if case .ok = self { return .ok(value: 0) }
        return self
    }
}
