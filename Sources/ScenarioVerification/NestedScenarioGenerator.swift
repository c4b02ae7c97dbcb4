import ScenarioLanguage
import ScenarioRuntime
/// Random nested guests: an L1 hypervisor whose nested tables (AMD NPT in
/// one of L1's paging modes, or Intel EPT) map L2-physical memory onto its
/// own, running an L2 guest that `ScenarioGenerator` writes (its own paging
/// mode, demand faults, page-table edits, CR3 switches).
///
/// L1's tables identity-map L2-physical [0, 64 MiB) — 4 KiB nested pages for
/// the first 2 MiB, where L2's tables and data live, huge nested pages above;
/// L1 memory is 32 MiB, so the upper half is MMIO to L0. While L2 runs, L1
/// edits its nested entries (remaps a page, takes rights away, unmaps, gives
/// back, or maps one of its own nested tables into L2's space), switches nCR3
/// between two copies of its tables and changes paging mode (NPT); each change
/// is followed by a flush request on every vCPU, so every access has one
/// correct outcome.
public struct NestedScenarioGenerator {
    /// The second stage L1 uses.
    public enum L1Kind: String, CaseIterable, Sendable, CustomStringConvertible {
        case npt32 = "npt-32-bit"
        case nptPAE = "npt-pae"
        case npt4 = "npt-4-level"
        case npt5 = "npt-5-level"
        case ept4 = "ept-4-level"
        case ept5 = "ept-5-level"

        public var description: String { rawValue }
        var isEPT: Bool { self == .ept4 || self == .ept5 }
        var mode: L1PagingMode {
            switch self {
            case .npt32: .bits32
            case .nptPAE: .pae
            case .npt4, .ept4: .level4
            case .npt5, .ept5: .level5
            }
        }
    }

    public var l1: L1Kind
    public var l2: ScenarioGenerator.GuestMode
    public var seed: UInt64
    public var length: Int
    /// Whether L1 also switches to a table copy in another paging mode (NPT).
    public var changesMode: Bool

    public init(l1: L1Kind, l2: ScenarioGenerator.GuestMode, seed: UInt64, length: Int = 120, changesMode: Bool = true) {
        self.l1 = l1
        self.l2 = l2
        self.seed = seed
        self.length = length
        self.changesMode = changesMode
    }

    static let tablesBase: UInt64 = 0x100_0000
    static let setSize: UInt64 = 0x10000

    /// One copy of L1's nested tables.
    struct TableSet {
        var mode: L1PagingMode
        var ept: Bool
        var accessedDirty: Bool
        var base: UInt64
        var root: UInt64 = 0
        var leafTable: UInt64 = 0  // the 4 KiB nested table for L2-physical [0, 2 MiB) (4 MiB for 32-bit)

        var entrySize: Int { mode == .bits32 ? 4 : 8 }
        /// PAE: the page directory L1 re-points its nPDPTE to now and then.
        var alternateDirectory: UInt64 { base + 0x6000 }
        var hasExecuteDisable: Bool { mode != .bits32 }

        func leaf(_ frame: UInt64, writable: Bool = true, user: Bool = true, execute: Bool = true) -> UInt64 {
            if ept { return frame | 1 | (writable ? 2 : 0) | (execute ? 4 : 0) | 6 << 3 }
            return frame | 1 | (writable ? 2 : 0) | (user ? 4 : 0) | (!execute && hasExecuteDisable ? 1 << 63 : 0)
        }

        /// A non-leaf entry with every right (P RW US for NPT, R W X for EPT: both 7).
        func table(_ frame: UInt64) -> UInt64 { frame | 7 }

        /// Writes the tables with `poke` lines.
        mutating func build(into lines: inout [String]) {
            func poke(_ address: UInt64, _ value: UInt64) {
                lines.append("poke \(hex(address)) \(hex(value))" + (entrySize == 4 ? " width=4" : ""))
            }
            let pd = base + 0x1000, pt = base + 0x2000
            leafTable = pt
            if mode == .bits32 {
                root = pd
                poke(pd, table(pt))
                for index in UInt64(1)..<16 { poke(pd + index * 4, index << 22 | 0x87) }
                for page in UInt64(0)..<1024 { poke(pt + page * 4, leaf(page << 12)) }
                return
            }
            poke(pd, table(pt))
            let large: UInt64 = ept ? 1 << 7 | 6 << 3 | 7 : 0x87
            // PAE: the last 2 MiB only in the second directory (`alternateDirectory`).
            for index in UInt64(1)..<(mode == .pae ? 31 : 32) { poke(pd + index * 8, index << 21 | large) }
            for page in UInt64(0)..<512 { poke(pt + page * 8, leaf(page << 12)) }
            switch mode {
            case .pae:
                root = base
                poke(base, pd | 1)  // a PDPTE: P and the address only
                // A second page directory: the first's entries (accessed), and
                // L2-physical [62 MiB, 64 MiB) mapped to L1's [4 MiB, 6 MiB).
                let alternate = alternateDirectory
                poke(alternate, table(pt) | 0x20)
                for index in UInt64(1)..<31 { poke(alternate + index * 8, index << 21 | large | 0x20) }
                poke(alternate + 31 * 8, 0x40_0000 | large | 0x20)
            default:
                let pdpt = base + 0x3000, pml4 = base + 0x4000, pml5 = base + 0x5000
                poke(pdpt, table(pd))
                poke(pml4, table(pdpt))
                root = pml4
                if mode == .level5 {
                    poke(pml5, table(pml4))
                    root = pml5
                }
            }
        }

        /// The `nested` line that enters L2 with these tables.
        func entry(flush: Bool) -> String {
            let suffix = flush ? " flush" : ""
            if ept {
                let eptp = root | UInt64(mode.levels - 1) << 3 | 6 | (accessedDirty ? 1 << 6 : 0)
                return "nested ept eptp=\(hex(eptp))\(suffix)"
            }
            return "nested npt ncr3=\(hex(root)) mode=\(mode.rawValue)\(suffix)"
        }
    }

    public func generate() -> String {
        var mixer = SplitMix64(seed: seed << 8 | UInt64(L1Kind.allCases.firstIndex(of: l1)!) << 4
            | UInt64(ScenarioGenerator.GuestMode.allCases.firstIndex(of: l2)!))
        var random = SplitMix64(seed: mixer.next())
        let guest = ScenarioGenerator(mode: l2, seed: seed, length: length).generate()
        var lines: [String] = []
        var sets: [TableSet] = []
        let accessedDirty = random.next(below: 2) == 0
        func addSet(_ mode: L1PagingMode) {
            var set = TableSet(mode: mode, ept: l1.isEPT, accessedDirty: accessedDirty, base: Self.tablesBase + UInt64(sets.count) * Self.setSize)
            set.build(into: &lines)
            sets.append(set)
        }
        var vcpus = 1
        var l2State = L2State()
        var current = 0  // the active table set
        var vcpu = 0
        func everyVCPU(_ line: String) { lines += Self.onEveryVCPU(line, vcpus: vcpus, current: vcpu) }
        for line in guest.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("machine ") {
                vcpus = line.contains("vcpus=2") ? 2 : 1
                // Half the guests get MAXPHYADDR 52, so that L2's entries can name
                // L2-physical addresses up to 2^52 (wideAddressEpisode).
                let wide = random.next(below: 2) == 0
                lines.append(line.split(separator: " ").map {
                    $0 == "memory=16M" ? "memory=32M" : wide && $0.hasPrefix("maxphyaddr=") ? "maxphyaddr=52" : String($0)
                }.joined(separator: " "))
                continue
            }
            if line.hasPrefix("mmu ") {
                lines.append(l1.isEPT ? "mmu tdp format=ept levels=5" : "mmu tdp format=npt levels=5")
                addSet(l1.mode)
                addSet(l1.mode)  // a copy to switch nCR3 to
                if !l1.isEPT, changesMode { addSet(l1.mode == .bits32 ? .pae : .bits32) }  // another L1 paging mode
                everyVCPU(sets[0].entry(flush: false))
                continue
            }
            if line.hasPrefix("vcpu ") { vcpu = Int(line.dropFirst(5)) ?? 0 }
            lines.append(line)
            l2State.observe(line)
            let isAccess = line.hasPrefix("read ") || line.hasPrefix("write ") || line.hasPrefix("fetch ")
            guard isAccess else { continue }
            if random.next(below: 8) == 0 {
                lines += wideAddressEpisode(&random, l2State, vcpus: vcpus, current: vcpu)
                continue
            }
            if sets[current].mode == .pae, !sets[current].ept, random.next(below: 10) == 0 {
                lines += repointedPDPTEEpisode(&random, sets[current], l2State, vcpus: vcpus, current: vcpu)
                continue
            }
            if l2 == .pae, random.next(below: 12) == 0 {
                lines += pdptProtectionEpisode(&random, sets[current], l2State, vcpus: vcpus, current: vcpu)
                continue
            }
            guard random.next(below: 5) == 0 else { continue }
            // L1 looks at a nested entry: the accessed/dirty flags L0 set for it must be the architecture's.
            let watched = sets[current].leafTable + (0x100 + random.next(below: 0x20)) * UInt64(sets[current].entrySize)
            lines.append("peek \(hex(watched))" + (sets[current].entrySize == 4 ? " width=4" : ""))
            switch random.next(below: 10) {
            case 0:
                // Switch nCR3 / EPTP to the other copy, or (NPT) change L1's paging mode.
                let choices = Array(sets.indices.filter { $0 != current })
                current = choices[Int(random.next(below: UInt64(choices.count)))]
                everyVCPU(sets[current].entry(flush: random.next(below: 2) == 0))
                everyVCPU("nested flush")
            default:
                // Edit one nested entry of the 4 KiB region: L2's tables live in
                // [0x10000, 0x40000), its data in [0x100000, 0x120000).
                let set = sets[current]
                // L2's tables are in pages 0x10-0x19: half the table edits hit one,
                // so that L2's walks (and their accessed/dirty flag updates) meet
                // read-only, execute-only and missing nested pages.
                let page: UInt64 = switch random.next(below: 6) {
                case 0: 0x10 + random.next(below: 0x30)
                case 1: 0x10 + random.next(below: 0xa)
                default: 0x100 + random.next(below: 0x20)
                }
                if set.ept, random.next(below: 10) == 0 {
                    // Execute-only (no read): an EPT misconfiguration on a CPU without
                    // execute-only support, as this project models it.
                    lines.append("store \(hex(set.leafTable + page * 8)) \(hex(page << 12 | 4 | 6 << 3))")
                    everyVCPU("nested flush")
                    continue
                }
                let value: UInt64 = switch random.next(below: 7) {
                case 0: set.leaf((0x100 + random.next(below: 0x20)) << 12)
                // Hostile: map one of L1's own nested tables into L2's space — read-only:
                // a writable one would let L2 change L1's tables with no L1 flush
                // after it, where a CPU may use stale nested translations and the
                // checker (which compares L2 accesses exactly) would not know.
                case 6: set.leaf(Self.tablesBase + random.next(below: UInt64(sets.count)) * Self.setSize + random.next(below: 6) << 12, writable: false)
                case 1: set.leaf(page << 12, writable: false)
                case 2: 0
                case 3: set.leaf(page << 12, user: false)
                case 4: set.leaf(page << 12, execute: false)
                default: set.leaf(page << 12)
                }
                lines.append("store \(hex(set.leafTable + page * UInt64(set.entrySize))) \(hex(value))" + (set.entrySize == 4 ? " width=4" : ""))
                everyVCPU("nested flush")
            }
        }
        // A last L2 access on vCPU 0 (so that L0 holds a root for L1's current tables).
        lines.append("vcpu 0")
        lines.append("read 0x100000")
        // Finally every nested entry of the 4 KiB region in every copy: its
        // accessed/dirty flags as L0 left them must be the architecture's.
        for set in sets {
            let width = set.entrySize == 4 ? " width=4" : ""
            for page in Array(UInt64(0x10)..<0x40) + Array(UInt64(0x100)..<0x120) {
                lines.append("peek \(hex(set.leafTable + page * UInt64(set.entrySize)))" + width)
            }
            // The huge nested pages (the directory, whose entry 0 points to the table above).
            for index in UInt64(0)..<(set.mode == .bits32 ? 16 : 32) {
                lines.append("peek \(hex(set.base + 0x1000 + index * UInt64(set.entrySize)))" + width)
            }
        }
        return lines.joined(separator: "\n")
    }
}

private func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

extension NestedScenarioGenerator {
    /// What the nested generator knows of L2 from the guest's own lines: the
    /// value each L2 paging-structure entry was last given, and L2's CR3.
    struct L2State {
        var entries: [UInt64: UInt64] = [:]
        var cr3: UInt64?

        mutating func observe(_ line: String) {
            let words = line.split(separator: " ")
            if words.first == "cr3", words.count >= 2, let value = UInt64(words[1].dropFirst(2), radix: 16) { cr3 = value }
            guard words.count >= 3, words[0] == "poke" || words[0] == "store",
                  let address = UInt64(words[1].dropFirst(2), radix: 16), let value = UInt64(words[2].dropFirst(2), radix: 16),
                  address >= 0x10000, address < 0x1a000
            else { return }
            entries[address] = value
        }
    }

    /// L2-physical addresses across the whole width of every second-stage
    /// format (issue 10): an L2 entry of the guest's region A (a PTE, or the
    /// PDE above its table) is pointed at an address at a boundary — above
    /// 4 GiB (a legacy-mode L1's tables end there), in [2^47, 2^48) (where a
    /// linear-address walker would see a sign bit), at 2^48 (beyond 4-level
    /// tables), just below 2^52 — then L2 uses the address it maps and the
    /// entry is put back. An address above L2's MAXPHYADDR sets reserved bits
    /// in L2's entry (its own #PF); below, the second stage decides.
    func wideAddressEpisode(_ random: inout SplitMix64, _ l2State: L2State, vcpus: Int, current: Int) -> [String] {
        guard l2 != .nonpaging else { return [] }
        var lines: [String] = []
        func everyVCPU(_ line: String) { lines += Self.onEveryVCPU(line, vcpus: vcpus, current: current) }
        let layout = ScenarioGenerator.Layout.self
        let entrySize: UInt64 = l2 == .bits32 || l2 == .bits32PSE ? 4 : 8
        guard entrySize == 8 else { return [] }  // 32-bit entries cannot name an address above 4 GiB (PSE-36 aside)
        let index = random.next(below: UInt64(16))
        let linear = (1 << 21) + index << 12  // region A: PD index 1, PT_A entry `index`
        let wide: [UInt64] = [1 << 32, 1 << 47, (1 << 48) - 0x1000, 1 << 48, (1 << 52) - 0x1000]
        let gpa = wide[random.next(below: wide.count)] + (random.next(below: 2) == 0 ? 0 : random.next(below: UInt64(64)) << 12)
        let pte = layout.ptA + index * entrySize, pde = layout.pd0 + entrySize
        let (address, original) = random.next(below: 3) == 0
            ? (pde, l2State.entries[pde] ?? (layout.ptA | 0x27))
            : (pte, l2State.entries[pte] ?? 0)
        let flags: UInt64 = 0x27 | (random.next(below: 2) == 0 ? 0x40 : 0)
        lines.append("store \(hex(address)) \(hex(gpa & ~0xfff | flags))")
        everyVCPU("invlpg \(hex(linear))")
        let accesses = ["read", "write", "fetch"]
        lines.append("\(accesses[random.next(below: accesses.count)]) \(hex(linear))\(random.next(below: 2) == 0 ? " user" : "")")
        lines.append("store \(hex(address)) \(hex(original))")
        everyVCPU("invlpg \(hex(linear))")
        return lines
    }

    /// A PAE L2 whose PDPT sits on a read-only or missing nested page (issue
    /// 10): L1 changes the nested entry of L2's current PDPT page, L2 reloads
    /// CR3 (loading its PDPTE registers through the second stage: reads) and
    /// uses its tables, and L1 gives the page back.
    func pdptProtectionEpisode(_ random: inout SplitMix64, _ set: TableSet, _ l2State: L2State, vcpus: Int, current: Int) -> [String] {
        guard let cr3 = l2State.cr3 else { return [] }
        let page = cr3 >> 12
        guard page >= 0x10, page < 0x1a else { return [] }
        var lines: [String] = []
        func everyVCPU(_ line: String) { lines += Self.onEveryVCPU(line, vcpus: vcpus, current: current) }
        let entry = set.leafTable + page * UInt64(set.entrySize), width = set.entrySize == 4 ? " width=4" : ""
        let original = set.leaf(page << 12)
        let protected = random.next(below: 2) == 0 ? set.leaf(page << 12, writable: false) : 0
        lines.append("store \(hex(entry)) \(hex(protected))\(width)")
        everyVCPU("nested flush")
        lines.append("cr3 \(hex(cr3))")
        lines.append("read \(hex((1 << 21) + random.next(below: UInt64(16)) << 12))")
        lines.append("store \(hex(entry)) \(hex(original))\(width)")
        everyVCPU("nested flush")
        lines.append("cr3 \(hex(cr3))")
        return lines
    }

    /// A PAE L1 re-points its nPDPTE to the second page directory while L2
    /// runs (no flush: both map what L2 used alike), L2 faults in the address
    /// only that directory maps, L1 points the nPDPTE back and flushes, and
    /// L2 uses the address again (a nested fault now). L2 reaches the
    /// address through an entry of its region A (or directly, without paging).
    func repointedPDPTEEpisode(_ random: inout SplitMix64, _ set: TableSet, _ l2State: L2State, vcpus: Int, current: Int) -> [String] {
        var lines: [String] = []
        func everyVCPU(_ line: String) { lines += Self.onEveryVCPU(line, vcpus: vcpus, current: current) }
        let layout = ScenarioGenerator.Layout.self
        let gpa: UInt64 = 0x3e0_0000 + random.next(below: UInt64(16)) << 12
        let index = random.next(below: UInt64(4))
        let entrySize: UInt64 = l2 == .bits32 || l2 == .bits32PSE ? 4 : 8
        let width = entrySize == 4 ? " width=4" : ""
        let pte = layout.ptA + index * entrySize
        let linear: UInt64 = l2 == .nonpaging ? gpa : (entrySize == 4 ? 1 << 22 : 1 << 21) + index << 12
        let original = l2State.entries[pte] ?? 0
        if l2 != .nonpaging {
            lines.append("store \(hex(pte)) \(hex(gpa | 0x27))\(width)")
            everyVCPU("invlpg \(hex(linear))")
        }
        let accesses = ["read", "read", "write", "fetch"]
        func access() -> String { "\(accesses[random.next(below: accesses.count)]) \(hex(linear))\(random.next(below: 2) == 0 ? " user" : "")" }
        lines.append("store \(hex(set.root)) \(hex(set.alternateDirectory | 1))")
        lines.append(access())
        lines.append("store \(hex(set.root)) \(hex(set.base + 0x1000 | 1))")
        everyVCPU("nested flush")
        lines.append(access())
        if l2 != .nonpaging {
            lines.append("store \(hex(pte)) \(hex(original))\(width)")
            everyVCPU("invlpg \(hex(linear))")
        }
        return lines
    }

    /// `line` on every vCPU, then back to vCPU `current`.
    static func onEveryVCPU(_ line: String, vcpus: Int, current: Int) -> [String] {
        guard vcpus > 1 else { return [line] }
        return (0..<vcpus).flatMap { ["vcpu \($0)", line] } + ["vcpu \(current)"]
    }
}

/// What a fuzz run generates: guests in one paging mode, or nested guests
/// whose L1 uses one kind of nested paging (their L2's mode varies with the seed).
public enum GuestFamily: Sendable, Hashable, CustomStringConvertible {
    case plain(ScenarioGenerator.GuestMode)
    case nested(NestedScenarioGenerator.L1Kind)

    public static let all: [GuestFamily] =
        ScenarioGenerator.GuestMode.allCases.map { .plain($0) } + NestedScenarioGenerator.L1Kind.allCases.map { .nested($0) }

    public var description: String {
        switch self {
        case .plain(let mode): mode.rawValue
        case .nested(let kind): kind.rawValue
        }
    }

    public func generate(seed: UInt64, length: Int) -> String {
        switch self {
        case .plain(let mode):
            return ScenarioGenerator(mode: mode, seed: seed, length: length).generate()
        case .nested(let kind):
            let modes = ScenarioGenerator.GuestMode.allCases
            return NestedScenarioGenerator(l1: kind, l2: modes[Int(seed % UInt64(modes.count))], seed: seed, length: length).generate()
        }
    }
}
