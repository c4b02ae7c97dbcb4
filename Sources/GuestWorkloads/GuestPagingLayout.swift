import ScenarioLanguage
import ScenarioRuntime
/// How the workloads' guest kernel lays out memory in one x86 paging mode:
/// the shape of its page tables, where the kernel half sits, and the control
/// register values that turn paging on.
///
/// The virtual layout follows Linux's: a user half below the kernel half; in
/// the kernel half a *direct map* of all guest physical memory with huge pages
/// (through which the kernel reads and writes any frame, its page tables
/// included) and a mapping of the kernel image with 4 KiB global pages. 32-bit
/// and PAE kernels split at 3 GiB and map the image at 0xf000_0000; 64-bit
/// kernels use the direct-map and kernel-image addresses Linux uses.
public struct GuestPagingLayout: Sendable, Equatable {
    /// The paging modes a workload kernel can run in (each enables paging).
    public enum Mode: String, CaseIterable, Sendable, CustomStringConvertible {
        /// 32-bit paging with CR4.PSE: 4 MiB pages for the direct map and huge mappings.
        case bits32 = "32-bit"
        case pae
        case level4 = "4-level"
        case level5 = "5-level"

        public var description: String { rawValue }

        /// Accepts the names `shadowmmu fuzz` uses too (`32-bit-pse` is this kernel's `32-bit`).
        public init?(name: String) {
            if name == "32-bit-pse" { self = .bits32 } else { self.init(rawValue: name) }
        }

        public var isLongMode: Bool { self == .level4 || self == .level5 }
    }

    public let mode: Mode

    public init(mode: Mode) { self.mode = mode }

    /// Paging-structure levels: 2, 3, 4 or 5.
    public var levels: Int {
        switch mode {
        case .bits32: 2
        case .pae: 3
        case .level4: 4
        case .level5: 5
        }
    }

    /// Bytes per paging-structure entry.
    public var entrySize: Int { mode == .bits32 ? 4 : 8 }

    /// Lowest linear-address bit translated by a table at `level` (1 = page table).
    func shift(level: Int) -> Int { mode == .bits32 ? 12 + 10 * (level - 1) : 12 + 9 * (level - 1) }

    /// Index of `address`'s entry in a table at `level`.
    func index(of address: UInt64, level: Int) -> Int {
        let mask: UInt64 = mode == .bits32 ? 0x3ff : (mode == .pae && level == 3 ? 0x3 : 0x1ff)
        return Int(address >> UInt64(shift(level: level)) & mask)
    }

    /// Size of a huge page mapped by a level-2 entry: 4 MiB (32-bit) or 2 MiB.
    public var hugePageSize: UInt64 { mode == .bits32 ? 4 << 20 : 2 << 20 }

    /// Whether leaf entries can forbid instruction fetches (EFER.NXE and the XD bit).
    public var hasExecuteDisable: Bool { mode != .bits32 }

    /// Bits of an entry holding the address of the next table or the page.
    var addressMask: UInt64 { mode == .bits32 ? 0xffff_f000 : 0x000f_ffff_ffff_f000 }

    /// User addresses are below this.
    public var userTop: UInt64 { mode.isLongMode ? 0x0000_8000_0000_0000 : 0xc000_0000 }

    /// Where the direct map of guest physical memory starts.
    public var directMapBase: UInt64 {
        switch mode {
        case .bits32, .pae: 0xc000_0000
        case .level4: 0xffff_8880_0000_0000
        case .level5: 0xff11_0000_0000_0000
        }
    }

    /// Where the kernel image is mapped with 4 KiB pages.
    public var kernelImageBase: UInt64 { mode.isLongMode ? 0xffff_ffff_8000_0000 : 0xf000_0000 }

    /// The most guest memory the direct map can cover below the kernel-image mapping.
    public var maximumMemory: UInt64 { mode.isLongMode ? 64 << 30 : 512 << 20 }

    /// Whether the entry at `index` of a top-level table belongs to the kernel half
    /// (shared by every address space).
    func isKernelSlot(_ index: Int) -> Bool {
        switch mode {
        case .bits32: index >= 768
        case .pae: index == 3
        case .level4, .level5: index >= 256
        }
    }

    /// Bits of the `cr4` write that prepares paging: PSE (32-bit) or PAE (+ LA57
    /// for 5-level), PGE for the kernel's global pages, SMEP and SMAP.
    var cr4: UInt64 {
        let common: UInt64 = 1 << 7 | 1 << 20 | 1 << 21   // PGE SMEP SMAP
        switch mode {
        case .bits32: return common | 1 << 4
        case .pae, .level4: return common | 1 << 5
        case .level5: return common | 1 << 5 | 1 << 12
        }
    }

    /// EFER: NXE where execute-disable exists, LME for long mode (0: no write).
    var efer: UInt64 {
        switch mode {
        case .bits32: 0
        case .pae: 1 << 11
        case .level4, .level5: 1 << 11 | 1 << 8
        }
    }

    /// CR0 with paging on: PG, WP, ET, PE.
    var cr0: UInt64 { 0x8001_0011 }
}
