// The KVM ioctl interface as this module uses it: request numbers, the byte
// layouts of the structures it passes, and a plain error type.
//
// The structures are handled as raw byte buffers with named offsets (the
// layouts of <linux/kvm.h> and <asm/kvm.h> for x86-64), so nothing depends on
// Swift's struct layout.

#if canImport(Glibc)
import Glibc
#endif

/// A failure of the machinery (not a guest-visible event): an ioctl or system
/// call that failed, a misuse of the API, or a guest exit that the runner
/// cannot interpret. `description` says plainly what failed, e.g.
/// "cannot open /dev/kvm: Permission denied".
public struct KVMError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The whole message.
    public let description: String

    /// An error with this message.
    public init(_ description: String) { self.description = description }

    /// "`what`: <strerror(errno)>" for the current errno.
    static func errno(_ what: String) -> KVMError {
        let code = Glibc.errno
        return KVMError("\(what): \(String(cString: strerror(code)))")
    }
}

/// ioctl request numbers (KVMIO = 0xAE).
enum KVMRequest {
    static let getAPIVersion: UInt = 0xAE00
    static let createVM: UInt = 0xAE01
    static let checkExtension: UInt = 0xAE03
    static let getVCPUMmapSize: UInt = 0xAE04
    static let getSupportedCPUID: UInt = 0xC008_AE05  // _IOWR(0xAE, 0x05, struct kvm_cpuid2)
    static let createVCPU: UInt = 0xAE41
    static let getDirtyLog: UInt = 0x4010_AE42  // _IOW(0xAE, 0x42, struct kvm_dirty_log)
    static let setNrMMUPages: UInt = 0xAE44
    static let setUserMemoryRegion: UInt = 0x4020_AE46  // _IOW(0xAE, 0x46, struct kvm_userspace_memory_region)
    static let run: UInt = 0xAE80
    static let getRegs: UInt = 0x8090_AE81  // _IOR(0xAE, 0x81, struct kvm_regs)
    static let setRegs: UInt = 0x4090_AE82
    static let getSregs: UInt = 0x8138_AE83  // _IOR(0xAE, 0x83, struct kvm_sregs)
    static let setSregs: UInt = 0x4138_AE84
    static let setCPUID2: UInt = 0x4008_AE90  // _IOW(0xAE, 0x90, struct kvm_cpuid2)
}

/// KVM exit reasons this module names.
enum KVMExit {
    static let names: [UInt32: String] = [
        0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT", 6: "MMIO",
        7: "IRQ_WINDOW_OPEN", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR", 17: "INTERNAL_ERROR",
        24: "SYSTEM_EVENT",
    ]
    static func name(_ reason: UInt32) -> String { "KVM_EXIT_\(names[reason] ?? String(reason))" }
    static let io: UInt32 = 2
    static let hlt: UInt32 = 5
    static let mmio: UInt32 = 6
    static let shutdown: UInt32 = 8
    static let intr: UInt32 = 10
    static let internalError: UInt32 = 17
}

/// A fixed-size, zeroed, 8-byte-aligned byte buffer standing for one C structure.
final class RawStruct {
    let size: Int
    let pointer: UnsafeMutableRawPointer

    init(size: Int) {
        self.size = size
        pointer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    }
    deinit { pointer.deallocate() }

    subscript<T: FixedWidthInteger>(_ offset: Int, as _: T.Type) -> T {
        get { pointer.loadUnaligned(fromByteOffset: offset, as: T.self) }
        set { pointer.storeBytes(of: newValue, toByteOffset: offset, as: T.self) }
    }
    func u64(_ offset: Int) -> UInt64 { self[offset, as: UInt64.self] }
    func setU64(_ offset: Int, _ value: UInt64) { self[offset, as: UInt64.self] = value }
}

/// `struct kvm_regs` (144 bytes): 18 quadwords in this order.
enum Regs {
    static let size = 144
    static let rax = 0, rbx = 8, rcx = 16, rdx = 24, rsi = 32, rdi = 40, rsp = 48, rbp = 56
    static let r8 = 64, rip = 128, rflags = 136
}

/// `struct kvm_sregs` (312 bytes) and `struct kvm_segment` (24 bytes).
enum Sregs {
    static let size = 312
    static let cs = 0, ds = 24, es = 48, fs = 72, gs = 96, ss = 120, tr = 144, ldt = 168
    static let gdtBase = 192, gdtLimit = 200, idtBase = 208, idtLimit = 216
    static let cr0 = 224, cr2 = 232, cr3 = 240, cr4 = 248, cr8 = 256, efer = 264
    // kvm_segment field offsets
    static let segBase = 0, segLimit = 8, segSelector = 12, segType = 14, segPresent = 15
    static let segDPL = 16, segDB = 17, segS = 18, segL = 19, segG = 20, segAVL = 21, segUnusable = 22

    static func setSegment(
        _ s: RawStruct, at offset: Int, base: UInt64, limit: UInt32, selector: UInt16, type: UInt8,
        dpl: UInt8, db: UInt8, s sBit: UInt8, l: UInt8, g: UInt8
    ) {
        s[offset + segBase, as: UInt64.self] = base
        s[offset + segLimit, as: UInt32.self] = limit
        s[offset + segSelector, as: UInt16.self] = selector
        s[offset + segType, as: UInt8.self] = type
        s[offset + segPresent, as: UInt8.self] = 1
        s[offset + segDPL, as: UInt8.self] = dpl
        s[offset + segDB, as: UInt8.self] = db
        s[offset + segS, as: UInt8.self] = sBit
        s[offset + segL, as: UInt8.self] = l
        s[offset + segG, as: UInt8.self] = g
        s[offset + segAVL, as: UInt8.self] = 0
        s[offset + segUnusable, as: UInt8.self] = 0
    }
}

/// `struct kvm_run` offsets used here.
enum Run {
    static let exitReason = 8
    // io
    static let ioDirection = 32, ioSize = 33, ioPort = 34, ioCount = 36, ioDataOffset = 40
    // mmio
    static let mmioPhysAddr = 32, mmioData = 40, mmioLen = 48, mmioIsWrite = 52
    // internal
    static let internalSuberror = 32, internalNData = 36, internalData = 40
    // fail_entry
    static let failEntryReason = 32
}

/// `struct kvm_cpuid2` header (8 bytes) followed by `struct kvm_cpuid_entry2` (40 bytes each).
enum CPUID {
    static let entrySize = 40
    static let function = 0, index = 4, flags = 8, eax = 12, ebx = 16, ecx = 20, edx = 24
}

/// ioctl with a pointer argument, retried on EINTR only when `retry` (KVM_RUN is not).
@inline(__always)
func kvmIoctl(_ fd: Int32, _ request: UInt, _ pointer: UnsafeMutableRawPointer) -> Int32 {
    ioctl(fd, request, pointer)
}

@inline(__always)
func kvmIoctl(_ fd: Int32, _ request: UInt, _ value: Int32) -> Int32 {
    ioctl(fd, request, value)
}
