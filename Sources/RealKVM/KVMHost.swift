#if canImport(Glibc)
import Glibc
#endif

/// What the host's KVM can do for a guest, found by ``probe()``.
public struct KVMHost: Sendable, CustomStringConvertible {
    /// How KVM virtualizes the CPU on this host.
    public enum Flavour: Sendable, Equatable, CustomStringConvertible {
        /// The PVM vendor module (`/sys/module/kvm_pvm`): no VT-x/AMD-V; KVM
        /// always uses its shadow MMU; guest CPL-3 code runs natively on the
        /// shadow tables, CPL-0 code of a guest that is not PVM-aware is
        /// emulated instruction by instruction by KVM's x86 emulator.
        case pvm
        /// Hardware virtualization.
        case hardware(Vendor)
        /// No vendor module found.
        case unknown

        public enum Vendor: String, Sendable { case vmx, svm }

        public var description: String {
            switch self {
            case .pvm: "pvm"
            case .hardware(let v): "hardware(\(v.rawValue))"
            case .unknown: "unknown"
            }
        }
    }

    /// Guest MAXPHYADDR KVM supports (KVM_GET_SUPPORTED_CPUID 0x80000008 EAX[7:0]).
    public var physicalAddressBits: Int
    // Each `supports…` below: KVM_SET_SREGS accepts the bit for a long-mode
    // vCPU of a scratch VM, and the CPU has the feature (KVM's supported CPUID
    // or the host's /proc/cpuinfo).

    /// Whether a guest can have CR4.LA57 (5-level paging).
    public var supportsLA57: Bool
    /// Whether a guest can have CR4.PKE. Probed with KVM_SET_SREGS.
    public var supportsPKU: Bool
    /// Whether a guest can have CR4.SMEP. Probed with KVM_SET_SREGS (the PVM
    /// host's KVM_GET_SUPPORTED_CPUID omits SMEP/SMAP although KVM honours them).
    public var supportsSMEP: Bool
    /// Whether a guest can have CR4.SMAP. Probed with KVM_SET_SREGS.
    public var supportsSMAP: Bool
    /// Whether a guest can have EFER.NXE. Probed with KVM_SET_SREGS.
    public var supportsNX: Bool
    /// Whether a guest can have CR4.PCIDE. Probed with KVM_SET_SREGS.
    public var supportsPCID: Bool
    /// Whether KVM offers INVPCID to a guest (KVM_GET_SUPPORTED_CPUID 7.0 EBX[10]
    /// and PCID). Even then, the runner does not use INVPCID: KVM's emulator
    /// cannot emulate it at CPL 0 under PVM.
    public var supportsINVPCID: Bool
    /// How KVM virtualizes the CPU.
    public var flavour: Flavour
    /// Whether KVM uses two-dimensional paging (EPT/NPT) instead of its shadow
    /// MMU: from `/sys/module/kvm_intel/parameters/ept` or
    /// `/sys/module/kvm_amd/parameters/npt`; `false` under PVM; `nil` when unknown.
    public var tdpEnabled: Bool?
    /// KVM_GET_API_VERSION (12).
    public var apiVersion: Int

    public var description: String {
        "KVM api \(apiVersion), flavour \(flavour), tdp \(tdpEnabled.map { String($0) } ?? "unknown"), "
            + "MAXPHYADDR \(physicalAddressBits), LA57 \(supportsLA57), PKU \(supportsPKU), "
            + "SMEP \(supportsSMEP), SMAP \(supportsSMAP), NX \(supportsNX), PCID \(supportsPCID), "
            + "INVPCID \(supportsINVPCID)"
    }

    /// Opens `/dev/kvm`, checks KVM_GET_API_VERSION, reads KVM_GET_SUPPORTED_CPUID,
    /// and probes which CR4/EFER bits KVM accepts for a long-mode vCPU of a
    /// scratch VM (KVM_SET_SREGS). Fails with a plain reason when `/dev/kvm`
    /// is missing, inaccessible, or too old.
    public static func probe() -> Result<KVMHost, KVMError> {
        do {
            return .success(try probeThrowing())
        } catch {
            return .failure(error)
        }
    }

    static func probeThrowing() throws(KVMError) -> KVMHost {
        let kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        guard kvm >= 0 else { throw KVMError.errno("cannot open /dev/kvm") }
        defer { close(kvm) }
        let api = Int(ioctl(kvm, KVMRequest.getAPIVersion))
        guard api == 12 else { throw KVMError("KVM_GET_API_VERSION returned \(api), expected 12") }
        let cpuid = try supportedCPUID(kvm)

        var bits = 36
        if let e = cpuid.first(where: { $0.function == 0x8000_0008 }) { bits = Int(e.eax & 0xFF) }
        let leaf7 = cpuid.first(where: { $0.function == 7 && $0.index == 0 })
        let invpcidBit = (leaf7?.ebx ?? 0) & (1 << 10) != 0

        let flavour: Flavour
        var tdp: Bool? = nil
        if access("/sys/module/kvm_pvm", F_OK) == 0 {
            flavour = .pvm
            tdp = false
        } else if access("/sys/module/kvm_intel", F_OK) == 0 {
            flavour = .hardware(.vmx)
            tdp = readBoolParameter("/sys/module/kvm_intel/parameters/ept")
        } else if access("/sys/module/kvm_amd", F_OK) == 0 {
            flavour = .hardware(.svm)
            tdp = readBoolParameter("/sys/module/kvm_amd/parameters/npt")
        } else {
            flavour = .unknown
        }

        // Probe register bits on a scratch vCPU.
        let vm = ioctl(kvm, KVMRequest.createVM, Int32(0))
        guard vm >= 0 else { throw KVMError.errno("KVM_CREATE_VM") }
        defer { close(vm) }
        let vcpu = ioctl(vm, KVMRequest.createVCPU, Int32(0))
        guard vcpu >= 0 else { throw KVMError.errno("KVM_CREATE_VCPU") }
        defer { close(vcpu) }
        var guestCPUID = cpuid
        forceFeatureBits(&guestCPUID, smep: true, smap: true, pcid: true, clearLA57AndPKU: false)
        try setCPUID(vcpu, guestCPUID)
        func accepts(cr4: UInt64, efer: UInt64 = 0x500) -> Bool {
            let s = RawStruct(size: Sregs.size)
            guard ioctl(vcpu, KVMRequest.getSregs, s.pointer) == 0 else { return false }
            Sregs.setSegment(s, at: Sregs.cs, base: 0, limit: 0xFFFF_FFFF, selector: 8, type: 11, dpl: 0, db: 0, s: 1, l: 1, g: 1)
            for seg in [Sregs.ds, Sregs.es, Sregs.fs, Sregs.gs, Sregs.ss] {
                Sregs.setSegment(s, at: seg, base: 0, limit: 0xFFFF_FFFF, selector: 0x10, type: 3, dpl: 0, db: 1, s: 1, l: 0, g: 1)
            }
            s.setU64(Sregs.cr0, 0x8000_0011)
            s.setU64(Sregs.cr3, 0x1000)
            s.setU64(Sregs.cr4, 0x20 | cr4)
            s.setU64(Sregs.efer, efer)
            return ioctl(vcpu, KVMRequest.setSregs, s.pointer) == 0
        }
        let base = accepts(cr4: 0)
        guard base else { throw KVMError("KVM_SET_SREGS rejects a plain long-mode vCPU (CR0 0x80000011, CR4 0x20, EFER 0x500)") }
        // PVM's KVM_SET_SREGS accepts some CR4 bits the CPU lacks (it took
        // CR4.PKE on a host without PKU), so a feature also needs the CPU:
        // KVM's supported CPUID or the host's /proc/cpuinfo flags.
        let cpu = hostCPUFlags()
        let leaf1 = cpuid.first(where: { $0.function == 1 })
        let ext1 = cpuid.first(where: { $0.function == 0x8000_0001 })
        func has(_ flag: String, _ word: UInt32?, _ bit: Int) -> Bool {
            cpu.contains(flag) || (word ?? 0) & (1 << UInt32(bit)) != 0
        }
        let pcid = accepts(cr4: 1 << 17) && has("pcid", leaf1?.ecx, 17)
        return KVMHost(
            physicalAddressBits: bits,
            supportsLA57: accepts(cr4: 1 << 12) && has("la57", leaf7?.ecx, 16),
            supportsPKU: accepts(cr4: 1 << 22) && has("pku", leaf7?.ecx, 3),
            supportsSMEP: accepts(cr4: 1 << 20) && has("smep", leaf7?.ebx, 7),
            supportsSMAP: accepts(cr4: 1 << 21) && has("smap", leaf7?.ebx, 20),
            supportsNX: accepts(cr4: 0, efer: 0xD00) && has("nx", ext1?.edx, 20),
            supportsPCID: pcid,
            supportsINVPCID: pcid && invpcidBit,
            flavour: flavour,
            tdpEnabled: tdp,
            apiVersion: api)
    }

    /// The `flags` of the first processor in /proc/cpuinfo (empty if unreadable).
    static func hostCPUFlags() -> Set<String> {
        guard let f = fopen("/proc/cpuinfo", "r") else { return [] }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 8192)
        while fgets(&line, 8192, f) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix("flags") {
                return Set(text.split(separator: ":").dropFirst().joined().split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
            }
        }
        return []
    }

    static func readBoolParameter(_ path: String) -> Bool? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var buffer = [CChar](repeating: 0, count: 16)
        guard fgets(&buffer, 16, f) != nil else { return nil }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch text.trimmingCharacters() {
        case "Y", "y", "1": return true
        case "N", "n", "0": return false
        default: return nil
        }
    }
}

/// One `struct kvm_cpuid_entry2`.
struct CPUIDEntry {
    var function: UInt32, index: UInt32, flags: UInt32
    var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32
}

/// KVM_GET_SUPPORTED_CPUID on the /dev/kvm fd.
func supportedCPUID(_ kvm: Int32) throws(KVMError) -> [CPUIDEntry] {
    let capacity = 256
    let buffer = RawStruct(size: 8 + capacity * CPUID.entrySize)
    buffer[0, as: UInt32.self] = UInt32(capacity)
    guard ioctl(kvm, KVMRequest.getSupportedCPUID, buffer.pointer) == 0 else {
        throw KVMError.errno("KVM_GET_SUPPORTED_CPUID")
    }
    let n = Int(buffer[0, as: UInt32.self])
    return (0..<n).map { i in
        let o = 8 + i * CPUID.entrySize
        return CPUIDEntry(
            function: buffer[o + CPUID.function, as: UInt32.self], index: buffer[o + CPUID.index, as: UInt32.self],
            flags: buffer[o + CPUID.flags, as: UInt32.self], eax: buffer[o + CPUID.eax, as: UInt32.self],
            ebx: buffer[o + CPUID.ebx, as: UInt32.self], ecx: buffer[o + CPUID.ecx, as: UInt32.self],
            edx: buffer[o + CPUID.edx, as: UInt32.self])
    }
}

/// KVM_SET_CPUID2 on a vCPU fd.
func setCPUID(_ vcpu: Int32, _ entries: [CPUIDEntry]) throws(KVMError) {
    let buffer = RawStruct(size: 8 + entries.count * CPUID.entrySize)
    buffer[0, as: UInt32.self] = UInt32(entries.count)
    for (i, e) in entries.enumerated() {
        let o = 8 + i * CPUID.entrySize
        buffer[o + CPUID.function, as: UInt32.self] = e.function
        buffer[o + CPUID.index, as: UInt32.self] = e.index
        buffer[o + CPUID.flags, as: UInt32.self] = e.flags
        buffer[o + CPUID.eax, as: UInt32.self] = e.eax
        buffer[o + CPUID.ebx, as: UInt32.self] = e.ebx
        buffer[o + CPUID.ecx, as: UInt32.self] = e.ecx
        buffer[o + CPUID.edx, as: UInt32.self] = e.edx
    }
    guard ioctl(vcpu, KVMRequest.setCPUID2, buffer.pointer) == 0 else { throw KVMError.errno("KVM_SET_CPUID2") }
}

/// Sets or clears the CPUID bits of SMEP (7.0 EBX[7]), SMAP (7.0 EBX[20]),
/// PCID (1 ECX[17]) and INVPCID (7.0 EBX[10], with PCID); unless told otherwise clears LA57
/// (7.0 ECX[16]) and PKU/OSPKE (7.0 ECX[3,4]).
func forceFeatureBits(_ entries: inout [CPUIDEntry], smep: Bool, smap: Bool, pcid: Bool, clearLA57AndPKU: Bool = true) {
    func set(_ word: inout UInt32, _ bit: Int, _ on: Bool) {
        if on { word |= 1 << bit } else { word &= ~(1 << bit) }
    }
    for i in entries.indices {
        if entries[i].function == 7 && entries[i].index == 0 {
            set(&entries[i].ebx, 7, smep)
            set(&entries[i].ebx, 20, smap)
            if !pcid { set(&entries[i].ebx, 10, false) }
            if clearLA57AndPKU {
                set(&entries[i].ecx, 16, false)
                set(&entries[i].ecx, 3, false)
                set(&entries[i].ecx, 4, false)
            }
        }
        if entries[i].function == 1 { set(&entries[i].ecx, 17, pcid) }
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
