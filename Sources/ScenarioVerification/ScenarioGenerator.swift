import ScenarioLanguage
import ScenarioRuntime
/// Random guests for differential checking, written as scenario text.
///
/// Most changes to a paging structure are followed by the invalidation that
/// makes the next access's outcome unique (INVLPG of every address the entry
/// maps on every vCPU, or a full flush; a CR3 reload for PAE PDPTEs); about a
/// quarter are not, and then the checker accepts any outcome a CPU holding an
/// older translation could give. Random data writes never touch page
/// tables; *table episodes* do, on purpose: the guest maps its own tables and
/// edits them through those mappings, writes a spare frame as data and links
/// it as a table, shares tables and huge pages between entries with other
/// rights, and re-points PDEs — each change followed by the invalidation that
/// makes the outcome unique.
///
/// Some steps are *setting episodes*: the guest uses a translation, changes a
/// paging setting (EFER.NXE, CR0.WP, CR4.PSE/SMEP/SMAP/PKE, EFLAGS.AC) while an
/// entry it goes through carries the bit that setting makes reserved or
/// meaningful (XD, R/W, U/S, PS, protection keys, PSE-36 address bits), with or
/// without a flush, and uses it again — where a hypervisor that keeps shadow
/// pages across the change (KVM's deviations, `Deviation`) shows.
public struct ScenarioGenerator {
    /// The paging mode the generated guest runs in.
    public enum GuestMode: String, CaseIterable, Sendable, CustomStringConvertible {
        case nonpaging
        case bits32 = "32-bit"
        case bits32PSE = "32-bit-pse"
        case pae
        case level4 = "4-level"
        case level5 = "5-level"

        public var description: String { rawValue }
        var isLongMode: Bool { self == .level4 || self == .level5 }
        var entrySize: Int { self == .bits32 || self == .bits32PSE ? 4 : 8 }
    }

    public var mode: GuestMode
    public var seed: UInt64
    /// Random operations after the set-up.
    public var length: Int
    /// The `mmu` line to write (`mmu shadow`, …).
    public var mmuLine: String

    public init(mode: GuestMode, seed: UInt64, length: Int = 120, mmuLine: String = "mmu native") {
        self.mode = mode
        self.seed = seed
        self.length = length
        self.mmuLine = mmuLine
    }

    /// Guest-physical layout. Tables live in [0x10000, 0x40000) (PD indices 4, 6
    /// and 7: a second huge PDE, the spare table's link, `ptSelf`); data pages in
    /// [0x100000, 0x120000); the huge page's frames at 0x400000; MMIO at 0x2000000.
    enum Layout {
        static let memory: UInt64 = 0x100_0000
        static let top: UInt64 = 0x10000        // PML5 or PML4 (address space 1)
        static let top2: UInt64 = 0x11000       // PML4 of address space 2 (5-level: PML4 under top2 at 0x19000)
        static let pml4: UInt64 = 0x12000       // 5-level: the PML4 under the PML5s
        static let pdpt: UInt64 = 0x13000       // (PAE: the PDPT at 0x13000, address space 2's at 0x13020)
        static let pd0: UInt64 = 0x14000
        static let pd1: UInt64 = 0x15000
        static let ptA: UInt64 = 0x16000
        static let ptB: UInt64 = 0x17000
        static let pml4For5Level2: UInt64 = 0x19000
        /// A page table that maps the guest's own tables (supervisor pages):
        /// PT_A and PT_B writable, the page directory read-only, the spare frame writable.
        static let ptSelf: UInt64 = 0x18000
        /// A frame written as data through `ptSelf` and linked now and then as a page table.
        static let spare: UInt64 = 0x1a000
        static let data: UInt64 = 0x100000
        /// Long mode: the linear base of PDPTE[3], which shares PDPTE[0]'s page directory.
        static let sharedPDPT: UInt64 = 0xc000_0000
        static let dataPages: UInt64 = 32
        static let huge: UInt64 = 0x400000
        static let mmio: UInt64 = 0x200_0000
    }

    /// One paging-structure entry the generator may change, with every linear
    /// address whose translation uses it.
    struct EntrySlot {
        var address: UInt64
        var level: Int
        var leaf: Bool
        var linear: [UInt64]
    }

    public func generate() -> String {
        // Hash the seed first: consecutive seeds must not give shifted copies of one stream.
        var mixer = SplitMix64(seed: seed << 8 | UInt64(GuestMode.allCases.firstIndex(of: mode)!))
        var random = SplitMix64(seed: mixer.next())
        var lines: [String] = []
        let vcpus = random.next(below: 3) == 0 ? 2 : 1
        let maxPhysicalAddressBits = [52, 46, 40][random.next(below: 3)]
        lines.append("# generated: mode=\(mode) seed=\(seed)")
        lines.append("machine memory=16M maxphyaddr=\(maxPhysicalAddressBits) vcpus=\(vcpus)")
        lines.append(mmuLine)

        let entrySize = mode.entrySize
        let width = entrySize == 4 ? " width=4" : ""
        // The entries as the generator last wrote them (the CPU's A/D updates aside).
        var written: [UInt64: UInt64] = [:]
        func poke(_ address: UInt64, _ value: UInt64) {
            written[address] = value
            lines.append("poke \(hex(address)) \(hex(value))\(width)")
        }
        func pokeData(_ address: UInt64, _ value: UInt64) { lines.append("poke \(hex(address)) \(hex(value))") }
        let tableFlags: UInt64 = 0x7  // P RW US
        var slots: [EntrySlot] = []
        var linearPages: [UInt64] = []   // linear pages with a chance of mapping
        var cr3Values: [UInt64] = []
        var pdptBases: [UInt64] = []
        var hugeSlot: EntrySlot?
        var hugeAliasSlot: EntrySlot?
        var sharedSlot: EntrySlot?
        var selfBase: UInt64 = 0      // linear address of ptSelf's entry 0
        var spareLinear: UInt64 = 0   // linear address of the spare table's entry 0, once linked
        var spareLinked = false

        // Leaf tables: PT_A maps linear region A (and is aliased by a second
        // PDE), PT_B region B; 16 entries each.
        func leafValue(_ random: inout SplitMix64) -> UInt64 {
            var frame = Layout.data + random.next(below: Layout.dataPages) << 12
            if random.next(below: 12) == 0 { frame = Layout.mmio + random.next(below: 4) << 12 }
            // Now and then a frame beyond what 4-level second-stage tables translate (2^48).
            if entrySize == 8, maxPhysicalAddressBits == 52, random.next(below: 40) == 0 { frame = 1 << 48 | random.next(below: 4) << 12 }
            var value = frame | 0x1 | random.next(below: 8) << 1 /* RW US A */ & 0x6
            if random.next(below: 3) != 0 { value |= 0x20 }
            if random.next(below: 3) == 0 { value |= 0x40 }
            if random.next(below: 10) == 0 { value &= ~1 }
            if mode != .bits32, mode != .bits32PSE, random.next(below: 6) == 0 { value |= 1 << 63 }
            // Now and then an address bit above MAXPHYADDR: reserved.
            if entrySize == 8, maxPhysicalAddressBits < 52, random.next(below: 16) == 0 { value |= 1 << UInt64(maxPhysicalAddressBits) }
            if mode.isLongMode, random.next(below: 4) == 0 { value |= random.next(below: 16) << 59 }
            return entrySize == 4 ? value & 0xffff_ffff : value
        }

        if mode == .nonpaging {
            for page in 0..<Layout.dataPages { linearPages.append(Layout.data + page << 12) }
            linearPages.append(Layout.mmio)
            linearPages.append(Layout.huge + 0x3000)
        } else {
            let ptShift: UInt64 = entrySize == 4 ? 22 : 21
            let regionA: UInt64 = 1 << ptShift         // PD index 1
            let regionB: UInt64 = 2 << ptShift         // PD index 2
            let regionHuge: UInt64 = 3 << ptShift      // PD index 3
            let regionAlias: UInt64 = entrySize == 4 ? 5 << 22 : 0x4000_0000  // PD index 5 / PD1[0]
            // 32-bit tables have 1,024 entries, which two level-1 shadow pages
            // (quadrants) cover: use both halves of each 4 MiB region.
            let leafIndices = entrySize == 4 ? Array(0..<12) + Array(512..<516) : Array(0..<16)
            for index in leafIndices {
                let a = Layout.ptA + UInt64(index * entrySize), b = Layout.ptB + UInt64(index * entrySize)
                poke(a, leafValue(&random))
                poke(b, leafValue(&random))
                let pageA = regionA + UInt64(index) << 12, pageB = regionB + UInt64(index) << 12
                let alias = regionAlias + UInt64(index) << 12
                // Long mode: PDPTE[3] points to the same page directory as PDPTE[0].
                let shared: [UInt64] = mode.isLongMode ? [Layout.sharedPDPT] : []
                slots.append(EntrySlot(address: a, level: 1, leaf: true, linear: [pageA, alias] + shared.map { $0 + pageA }))
                slots.append(EntrySlot(address: b, level: 1, leaf: true, linear: [pageB] + shared.map { $0 + pageB }))
                linearPages += [pageA, pageB, alias]
            }
            selfBase = 7 << ptShift
            spareLinear = 6 << ptShift
            poke(Layout.pd0 + UInt64(7 * entrySize), Layout.ptSelf | tableFlags | 0x20)
            for (index, frame) in [Layout.ptA, Layout.ptB, Layout.pd0, Layout.spare].enumerated() {
                poke(Layout.ptSelf + UInt64(index * entrySize), frame | (frame == Layout.pd0 ? 0x21 : 0x63))
            }
            for index in 0..<4 { poke(Layout.spare + UInt64(index * entrySize), leafValue(&random)) }
            // The page directory(ies).
            let pdeA = Layout.pd0 + UInt64(entrySize), pdeB = Layout.pd0 + UInt64(2 * entrySize)
            poke(pdeA, Layout.ptA | tableFlags | 0x20)
            poke(pdeB, Layout.ptB | tableFlags)
            let sharedLinear: [UInt64] = mode.isLongMode ? [0, Layout.sharedPDPT] : [0]
            var upper = [EntrySlot(address: pdeA, level: 2, leaf: false, linear: sharedLinear.flatMap { base in leafIndices.map { base + regionA + UInt64($0) << 12 } }),
                         EntrySlot(address: pdeB, level: 2, leaf: false, linear: sharedLinear.flatMap { base in leafIndices.map { base + regionB + UInt64($0) << 12 } })]
            // The huge page (under 32-bit paging without CR4.PSE, a PDE whose PS
            // bit is ignored: it points to a page table at the huge page's frame).
            let pdeHuge = Layout.pd0 + UInt64(3 * entrySize)
            poke(pdeHuge, Layout.huge | 0x80 | tableFlags | 0x20)
            hugeSlot = EntrySlot(address: pdeHuge, level: 2, leaf: true, linear: (0..<4).map { regionHuge + UInt64($0) << 12 + 0x1000 })
            upper.append(hugeSlot!)
            for offset in 0..<4 { linearPages.append(regionHuge + UInt64(offset) << 12 + 0x1000) }
            // A second PDE for the same huge page (PD index 4).
            let regionHugeAlias: UInt64 = 4 << ptShift
            poke(Layout.pd0 + UInt64(4 * entrySize), Layout.huge | 0x80 | tableFlags | 0x20)
            hugeAliasSlot = EntrySlot(address: Layout.pd0 + UInt64(4 * entrySize), level: 2, leaf: true, linear: (0..<4).map { regionHugeAlias + UInt64($0) << 12 + 0x1000 })
            upper.append(hugeAliasSlot!)
            for offset in 0..<4 { linearPages.append(regionHugeAlias + UInt64(offset) << 12 + 0x1000) }
            if entrySize == 4 {
                // The huge page's first frame also makes sense as that page table
                // (entries 1-4 map the huge page's linear pages), so that a
                // CR4.PSE change gives another translation, not only a fault.
                for index in UInt64(1)...4 { poke(Layout.huge + index * 4, leafValue(&random)) }
            }
            if entrySize == 4 {
                let pdeAlias = Layout.pd0 + 5 * 4
                poke(pdeAlias, Layout.ptA | tableFlags)
                upper.append(EntrySlot(address: pdeAlias, level: 2, leaf: false, linear: leafIndices.map { regionAlias + UInt64($0) << 12 }))
                // A second page directory for a CR3 switch, sharing PT_B.
                poke(Layout.pd1 + 2 * 4, Layout.ptB | tableFlags)
                cr3Values = [Layout.pd0, Layout.pd1]
            } else {
                poke(Layout.pd1, Layout.ptA | tableFlags)
                upper.append(EntrySlot(address: Layout.pd1, level: 2, leaf: false, linear: (0..<16).map { regionAlias + UInt64($0) << 12 }))
                if mode == .pae {
                    for base in [Layout.pdpt, Layout.pdpt + 0x20] {
                        poke(base, Layout.pd0 | 1)
                        poke(base + 8, Layout.pd1 | 1)
                    }
                    pdptBases = [Layout.pdpt, Layout.pdpt + 0x20]
                    upper.append(EntrySlot(address: Layout.pdpt + 8, level: 3, leaf: false, linear: (0..<16).map { regionAlias + UInt64($0) << 12 }))
                    cr3Values = pdptBases
                } else {
                    poke(Layout.pdpt, Layout.pd0 | tableFlags | 0x20)
                    poke(Layout.pdpt + 8, Layout.pd1 | tableFlags)
                    upper.append(EntrySlot(address: Layout.pdpt + 8, level: 3, leaf: false, linear: (0..<16).map { regionAlias + UInt64($0) << 12 }))
                    // A 1 GiB page at linear 2 GiB mapping physical 0; accesses use the data region only.
                    poke(Layout.pdpt + 16, 0x80 | tableFlags)
                    // PDPTE[3]: the page directory of PDPTE[0] again, read-only for users at first.
                    poke(Layout.pdpt + 24, Layout.pd0 | 0x25)
                    sharedSlot = EntrySlot(address: Layout.pdpt + 24, level: 3, leaf: false, linear: upper[0].linear.filter { $0 >= Layout.sharedPDPT } + upper[1].linear.filter { $0 >= Layout.sharedPDPT })
                    upper.append(sharedSlot!)
                    for page in 0..<4 { linearPages.append(0x8000_0000 + Layout.data + UInt64(page) << 12) }
                    if mode == .level4 {
                        poke(Layout.top, Layout.pdpt | tableFlags)
                        poke(Layout.top2, Layout.pdpt | tableFlags)
                        cr3Values = [Layout.top, Layout.top2]
                    } else {
                        poke(Layout.pml4, Layout.pdpt | tableFlags)
                        poke(Layout.pml4For5Level2, Layout.pdpt | tableFlags)
                        poke(Layout.top, Layout.pml4 | tableFlags)
                        poke(Layout.top2, Layout.pml4For5Level2 | tableFlags)
                        cr3Values = [Layout.top, Layout.top2]
                    }
                }
            }
            slots += upper
        }
        for page in 0..<Layout.dataPages { pokeData(Layout.data + page << 12, random.next()) }
        for offset in 0..<4 { pokeData(Layout.huge + UInt64(offset) << 12 + 0x1000, random.next()) }

        // Registers.
        var cr0: UInt64 = 0x8000_0001 | (random.next(below: 2) == 0 ? 0x10000 : 0)
        var cr4Base: UInt64 = 0
        switch mode {
        case .nonpaging: cr0 = 0x6000_0010
        case .bits32: break
        case .bits32PSE: cr4Base = 0x10
        case .pae: cr4Base = 0x20
        case .level4: cr4Base = 0x20
        case .level5: cr4Base = 0x1020
        }
        var cr4Extra: UInt64 = 0
        if mode != .nonpaging {
            if random.next(below: 3) == 0 { cr4Extra |= 0x10_0000 }  // SMEP
            if random.next(below: 3) == 0 { cr4Extra |= 0x20_0000 }  // SMAP
            if mode.isLongMode, random.next(below: 2) == 0 { cr4Extra |= 0x40_0000 }  // PKE
        }
        var efer: UInt64 = mode.isLongMode ? 0x100 : 0
        if mode != .nonpaging, mode != .bits32, mode != .bits32PSE, random.next(below: 2) == 0 { efer |= 0x800 }
        var currentCR3 = cr3Values.first ?? 0
        for vcpu in 0..<vcpus {
            if vcpus > 1 { lines.append("vcpu \(vcpu)") }
            if mode != .nonpaging {
                lines.append("cr4 \(hex(cr4Base | cr4Extra))")
                lines.append("cr3 \(hex(currentCR3))")
                if efer != 0 { lines.append("efer \(hex(efer))") }
                lines.append("cr0 \(hex(cr0))")
            }
        }
        var vcpu = vcpus - 1

        func everyVCPU(_ body: () -> Void) {
            for other in 0..<vcpus {
                if vcpus > 1 { lines.append("vcpu \(other)") }
                body()
            }
            if vcpus > 1 { lines.append("vcpu \(vcpu)") }
        }

        for _ in 0..<length {
            let roll = random.next(below: 100)
            switch roll {
            case 46..<50 where mode != .nonpaging:
                settingEpisode()
            case 42..<46 where mode != .nonpaging:
                tableEpisode()
            case 0..<50:
                // An access under test.
                var address: UInt64
                if linearPages.isEmpty || random.next(below: 20) == 0 {
                    address = random.next(below: 2) == 0 ? 0x7000_0000 : 0x0080_0000_0000_0000 >> (mode.isLongMode ? 0 : 60)
                } else {
                    address = linearPages[Int(random.next(below: UInt64(linearPages.count)))]
                }
                let widthValue = [1, 2, 4, 8][random.next(below: 4)]
                address += random.next(below: UInt64(4096 / widthValue)) * UInt64(widthValue)
                let kind = ["read", "read", "write", "fetch"][random.next(below: 4)]
                var line = "\(kind) \(hex(address))"
                if kind != "fetch" { line += " width=\(widthValue)" }
                if kind == "write", random.next(below: 2) == 0 { line += " value=\(hex(random.next() & (widthValue == 8 ? ~0 : (1 << UInt64(widthValue * 8)) - 1)))" }
                switch random.next(below: 5) {
                case 0, 1: line += " user"
                case 2 where kind != "fetch": line += " implicit"
                default: break
                }
                lines.append(line)
            case 50..<66 where !slots.isEmpty:
                // The guest edits one of its paging-structure entries, then invalidates.
                // Upper-level entries are few; give them a fair share of the edits.
                let upperSlots = slots.filter { $0.level > 1 }
                let pool = !upperSlots.isEmpty && random.next(below: 10) < 3 ? upperSlots : slots
                let slot = pool[Int(random.next(below: UInt64(pool.count)))]
                var value: UInt64
                if slot.leaf && slot.level == 1 {
                    value = leafValue(&random)
                    // 32-bit: now and then the frame of the entry 512 away (the other
                    // quadrant's twin) with other rights; else, a quarter of the
                    // time, the same frame with other flags (rights, reserved bits).
                    let twin = slot.address ^ 0x800
                    let frameMask: UInt64 = entrySize == 4 ? 0xffff_f000 : 0x000f_ffff_ffff_f000 & ~(1 << UInt64(maxPhysicalAddressBits))
                    if entrySize == 4, random.next(below: slot.address & 0x800 != 0 ? 2 : 4) == 0, let other = written[twin] {
                        value = other & frameMask | value & ~frameMask | 1
                    } else if random.next(below: 4) == 0, let old = written[slot.address] {
                        value = old & frameMask | value & ~frameMask
                    }
                } else {
                    // Rewrite a table (or huge-page) entry with one flag flipped: P,
                    // RW, US, A or XD. A guest rewrite also clears the A/D flags
                    // the CPU set since, which is fine: it is the guest's entry.
                    let flags: [UInt64] = entrySize == 4 ? [0x1, 0x2, 0x4, 0x20] : [0x1, 0x2, 0x4, 0x20, 1 << 63]
                    let flipped = flags[Int(random.next(below: UInt64(flags.count)))]
                    value = (written[slot.address] ?? 0) ^ (mode == .pae && slot.level == 3 ? 0x1 : flipped)
                }
                written[slot.address] = value
                lines.append("store \(hex(slot.address)) \(hex(value))\(width)")
                // Usually invalidate; sometimes not, so that stale translations are
                // allowed and the checker must accept exactly the outcomes the
                // architecture permits.
                if random.next(below: 4) != 0 { emitInvalidation(slot) }
                // Use the new translation at once, where a stale one would show.
                if random.next(below: 10) < 7 {
                    let linear = slot.linear[Int(random.next(below: UInt64(slot.linear.count)))]
                    let kind = ["read", "write", "fetch"][random.next(below: 3)]
                    lines.append("\(kind) \(hex(linear + random.next(below: 512) * 8))\(random.next(below: 2) == 0 ? " user" : "")")
                }
            case 66..<72 where mode != .nonpaging:
                // A paging-related register changes.
                switch random.next(below: 4) {
                case 0:
                    cr0 ^= 0x10000
                    lines.append("cr0 \(hex(cr0))")
                case 1:
                    let bit: UInt64 = [0x10_0000, 0x20_0000, mode.isLongMode ? 0x40_0000 : 0x10_0000][random.next(below: 3)]
                    cr4Extra ^= bit
                    lines.append("cr4 \(hex(cr4Base | cr4Extra))")
                case 2:
                    lines.append("pkru \(hex(random.next() & 0xffff_ffff))")
                default:
                    lines.append("rflags.ac \(random.next(below: 2))")
                }
            case 72..<78 where mode != .nonpaging:
                // MOV CR3: reload, or switch address spaces.
                currentCR3 = cr3Values[Int(random.next(below: UInt64(cr3Values.count)))]
                lines.append("cr3 \(hex(currentCR3))")
            case 78..<86:
                lines.append("peek \(hex(slots.isEmpty || random.next(below: 3) == 0 ? Layout.data + random.next(below: Layout.dataPages) << 12 : slots[Int(random.next(below: UInt64(slots.count)))].address))\(width)")
            case 86..<90:
                lines.append("store \(hex(Layout.data + random.next(below: Layout.dataPages) << 12 + random.next(below: 512) * 8)) \(hex(random.next()))")
            case 90..<93:
                switch random.next(below: 5) {
                case 0: lines.append("host zap-all")
                case 1: lines.append("host invalidate \(hex(Layout.data + random.next(below: Layout.dataPages) << 12)) 0x2000")
                case 2: lines.append("host max-shadow-pages \(8 + random.next(below: 24))")
                case 3: lines.append("host dirty-log start")
                default: lines.append("host dirty-log read")
                }
            case 93..<96 where vcpus > 1:
                vcpu = Int(random.next(below: UInt64(vcpus)))
                lines.append("vcpu \(vcpu)")
            case 96..<98 where mode != .nonpaging:
                lines.append("flush")
            default:
                if mode != .nonpaging, let slot = slots.first(where: \.leaf) {
                    lines.append("invlpg \(hex(slot.linear[0]))")
                } else {
                    lines.append("peek \(hex(Layout.data))")
                }
            }
        }
        // Finally, every table entry (accessed and dirty flags must match too).
        for slot in slots { lines.append("peek \(hex(slot.address))\(width)") }
        return lines.joined(separator: "\n") + "\n"

        func emitInvalidation(_ slot: EntrySlot) {
            if mode == .pae, slot.level == 3 {
                everyVCPU { lines.append("cr3 \(hex(currentCR3))") }
            } else if slot.leaf, slot.level == 1, random.next(below: 2) == 0 {
                everyVCPU { for linear in slot.linear { lines.append("invlpg \(hex(linear))") } }
            } else {
                everyVCPU { lines.append("flush") }
            }
        }

        /// An access line to `address` (a random offset in its page): `kinds`
        /// to choose from, user with probability 1/`userOdds` (0: never).
        func accessLine(_ address: UInt64, kinds: [String], userOdds: UInt64, implicitOdds: UInt64 = 0) -> String {
            let kind = kinds[Int(random.next(below: UInt64(kinds.count)))]
            var line = "\(kind) \(hex(address + random.next(below: 512) * 8))"
            if kind == "write", random.next(below: 2) == 0 { line += " value=\(hex(random.next()))" }
            if userOdds > 0, random.next(below: userOdds) == 0 {
                line += " user"
            } else if kind != "fetch", implicitOdds > 0, random.next(below: implicitOdds) == 0 {
                line += " implicit"
            }
            return line
        }

        /// After a setting changes: nothing, MOV CR3, a flush, or both (this vCPU only).
        func maybeInvalidateAfterSetting() {
            switch random.next(below: 4) {
            case 0: break
            case 1: lines.append("cr3 \(hex(currentCR3))")
            case 2: lines.append("flush")
            default: lines.append("cr3 \(hex(currentCR3))"); lines.append("flush")
            }
        }

        /// Rewrites `slot` to `value` (a guest store), invalidating as an edit usually does.
        func edit(_ slot: EntrySlot, _ value: UInt64) {
            written[slot.address] = value
            lines.append("store \(hex(slot.address)) \(hex(value))\(width)")
            if random.next(below: 4) != 0 { emitInvalidation(slot) }
        }

        /// One or two of `slot`'s linear pages.
        func targets(_ slot: EntrySlot) -> [UInt64] {
            let first = slot.linear[Int(random.next(below: UInt64(slot.linear.count)))]
            let second = slot.linear[Int(random.next(below: UInt64(slot.linear.count)))]
            return random.next(below: 2) == 0 || second == first ? [first] : [first, second]
        }

        /// Invalidates every linear page of `linear` on every vCPU (INVLPG each, or a flush).
        func invalidateEverywhere(_ linear: [UInt64], allowFlush: Bool = true) {
            if allowFlush, random.next(below: 3) == 0 {
                everyVCPU { lines.append("flush") }
            } else {
                everyVCPU { for page in linear { lines.append("invlpg \(hex(page))") } }
            }
        }

        /// A supervisor access of one table entry at `address`.
        func entryAccess(_ kind: String, _ address: UInt64, value: UInt64? = nil) -> String {
            "\(kind) \(hex(address)) width=\(entrySize)" + (value.map { " value=\(hex($0))" } ?? "")
        }

        /// A table episode: the guest treats frames as page tables and as data,
        /// shares tables and huge pages between entries with different rights,
        /// and re-points entries; every change is followed by the invalidation
        /// that makes the next access's outcome unique.
        func tableEpisode() {
            var choices: [TableEpisode] = [.selfMappedEdit, .selfMappedEdit, .spareTable, .spareTable, .hugeAlias, .hugeAlias, .hugeAlias, .repoint]
            if entrySize == 4 { choices += [.repoint, .repoint, .quadrantTwins, .quadrantTwins] }
            if sharedSlot != nil { choices += [.sharedTable, .sharedTable] }
            if vcpus > 1 { choices += [.selfMappedEdit, .selfMappedEdit] }
            switch choices[Int(random.next(below: UInt64(choices.count)))] {
            case .selfMappedEdit: selfMappedEdit()
            case .spareTable: spareTable()
            case .hugeAlias: hugeAlias()
            case .sharedTable: sharedTable()
            case .repoint: repoint()
            case .quadrantTwins: quadrantTwins()
            }
        }

        /// The guest writes an entry of PT_A or PT_B through its own mapping of
        /// that table (reading the table or its page directory through the
        /// mappings first, now and then). With two vCPUs, the other vCPU
        /// flushes in between (a sync) and the first writes the entry again.
        func selfMappedEdit() {
            let leaves = slots.filter { $0.level == 1 }
            guard !leaves.isEmpty else { return }
            let slot = leaves[Int(random.next(below: UInt64(leaves.count)))]
            let table = slot.address & ~0xfff
            let mapping = selfBase + (table == Layout.ptA ? 0 : 0x1000) + slot.address & 0xfff
            if random.next(below: 3) == 0 { lines.append(entryAccess("read", mapping)) }
            if random.next(below: 4) == 0 {
                lines.append(entryAccess("read", selfBase + 0x2000 + random.next(below: 8) * UInt64(entrySize)))
            }
            func writeEntry() {
                let value = leafValue(&random)
                written[slot.address] = value
                lines.append(entryAccess("write", mapping, value: value))
                invalidateEverywhere(slot.linear, allowFlush: false)
            }
            writeEntry()
            if vcpus > 1, random.next(below: 4) != 0 {
                let first = vcpu
                vcpu = 1 - first
                lines.append("vcpu \(vcpu)")
                if random.next(below: 2) == 0 {
                    lines.append(accessLine(slot.linear[0], kinds: ["read", "write"], userOdds: 2))
                }
                lines.append("flush")
                vcpu = first
                lines.append("vcpu \(vcpu)")
                writeEntry()
                for other in [1 - first, first] {
                    lines.append("vcpu \(other)")
                    lines.append(accessLine(slot.linear[Int(random.next(below: UInt64(slot.linear.count)))], kinds: ["read", "write", "fetch"], userOdds: 2))
                }
            } else {
                lines.append(accessLine(slot.linear[Int(random.next(below: UInt64(slot.linear.count)))], kinds: ["read", "write", "fetch"], userOdds: 2))
            }
        }

        /// The spare frame: written as data through its ordinary mapping, linked
        /// as a page table (PD index 6, not present before: no invalidation
        /// needed), used, written again through the old mapping, and unlinked.
        func spareTable() {
            let mapping = selfBase + 0x3000
            let index = random.next(below: UInt64(4))
            let entry = mapping + index * UInt64(entrySize)
            let linear = spareLinear + index << 12
            let pde = Layout.pd0 + UInt64(6 * entrySize)
            if !spareLinked {
                for _ in 0..<(1 + random.next(below: 2)) {
                    lines.append(entryAccess("write", mapping + random.next(below: 4) * UInt64(entrySize), value: leafValue(&random)))
                }
                lines.append(entryAccess("write", entry, value: leafValue(&random)))
                let link = Layout.spare | tableFlags | 0x20
                written[pde] = link
                lines.append("store \(hex(pde)) \(hex(link))\(width)")
                spareLinked = true
                lines.append(accessLine(linear, kinds: ["read", "read", "write", "fetch"], userOdds: 2))
            }
            lines.append(entryAccess("write", entry, value: leafValue(&random)))
            everyVCPU { lines.append("invlpg \(hex(linear))") }
            lines.append(accessLine(linear, kinds: ["read", "write", "fetch"], userOdds: 2))
            if random.next(below: 2) == 0 {
                lines.append("store \(hex(pde)) 0x0\(width)")
                written[pde] = 0
                spareLinked = false
                everyVCPU { lines.append("flush") }
            }
        }

        /// The two PDEs of the huge page get rights of their own (writable or
        /// not, user or not, dirty or not); under CR0.WP either way, the guest
        /// reads through one, writes through the other, writes through the
        /// first, and reads both entries.
        func hugeAlias() {
            guard let huge = hugeSlot, let alias = hugeAliasSlot else { return }
            // Half the time both get the same rights (D aside).
            let sameRights = random.next(below: 2) == 0
            var rights = random.next(below: UInt64(4)) << 1
            for slot in [huge, alias] {
                if !sameRights { rights = random.next(below: UInt64(4)) << 1 }
                let value = Layout.huge | 0xa1 | rights | random.next(below: 2) << 6
                written[slot.address] = value
                lines.append("store \(hex(slot.address)) \(hex(value))\(width)")
            }
            everyVCPU { lines.append("flush") }
            if random.next(below: 2) == 0 {
                cr0 ^= 0x10000
                lines.append("cr0 \(hex(cr0))")
            }
            let (first, second) = random.next(below: 2) == 0 ? (huge, alias) : (alias, huge)
            let page = Int(random.next(below: 4))
            let user = random.next(below: 2) == 0 ? " user" : ""
            let offset = random.next(below: UInt64(512)) * 8
            lines.append("read \(hex(first.linear[page] + offset))\(user)")
            lines.append("write \(hex(second.linear[page] + offset))\(user)")
            lines.append("write \(hex(first.linear[page] + offset))\(user)")
            lines.append("peek \(hex(first.address))\(width)")
            lines.append("peek \(hex(second.address))\(width)")
        }

        /// Long mode: PDPTE[0] and PDPTE[3] point to one page directory with
        /// different rights, and its PDEs for regions A and B differ in R/W; the
        /// guest uses a translation through each combination, mostly the more
        /// permissive PDPTE first.
        func sharedTable() {
            guard let shared = sharedSlot else { return }
            let taken: UInt64 = [0x2, 0x4, 0x6][random.next(below: 3)]
            let sharedValue = Layout.pd0 | 0x27 & ~taken
            written[shared.address] = sharedValue
            lines.append("store \(hex(shared.address)) \(hex(sharedValue))\(width)")
            let pdes = [(Layout.pd0 + 8, Layout.ptA, UInt64(1) << 21), (Layout.pd0 + 16, Layout.ptB, UInt64(2) << 21)]
            let writableA = random.next(below: 2) == 0
            var pages: [UInt64] = []
            for (index, (pde, table, region)) in pdes.enumerated() {
                let value = table | 0x25 | ((index == 0) == writableA ? 0x2 : 0)
                written[pde] = value
                lines.append("store \(hex(pde)) \(hex(value))\(width)")
                let entry = UInt64(random.next(below: 16))
                let leaf = Layout.data + random.next(below: Layout.dataPages) << 12 | 0x67
                written[table + entry * 8] = leaf
                lines.append("store \(hex(table + entry * 8)) \(hex(leaf))\(width)")
                pages.append(region + entry << 12)
            }
            everyVCPU { lines.append("flush") }
            let bases: [UInt64] = random.next(below: 4) != 0 ? [0, Layout.sharedPDPT] : [Layout.sharedPDPT, 0]
            let user = taken & 0x4 != 0 || random.next(below: 2) == 0 ? " user" : ""
            for base in bases {
                for (index, page) in (random.next(below: 2) == 0 ? Array(pages.enumerated()) : pages.enumerated().reversed()) {
                    // Mostly what the PDE allows: reads through the read-only one, writes through the other.
                    let writable = (index == 0) == writableA
                    let kind = writable != (random.next(below: 4) == 0) ? "write" : "read"
                    lines.append("\(kind) \(hex(base + page + random.next(below: 512) * 8))\(user)")
                }
            }
        }

        /// 32-bit: entries i and i+512 of a page table map one frame with every
        /// right; the upper one is used, then loses a right (a write to a
        /// table that may be unsync), is invalidated and used again.
        func quadrantTwins() {
            let table = random.next(below: 2) == 0 ? Layout.ptA : Layout.ptB
            let index = random.next(below: UInt64(4))
            let lower = slots.first { $0.address == table + index * 4 }, upper = slots.first { $0.address == table + (index + 512) * 4 }
            guard let lower, let upper else { return }
            let frame = Layout.data + random.next(below: Layout.dataPages) << 12
            for slot in [lower, upper] {
                written[slot.address] = frame | 0x67
                lines.append("store \(hex(slot.address)) \(hex(frame | 0x67))\(width)")
            }
            everyVCPU { lines.append("flush") }
            let user = random.next(below: 2) == 0 ? " user" : ""
            lines.append("write \(hex(upper.linear[0] + random.next(below: UInt64(512)) * 8))\(user)")
            if random.next(below: 2) == 0 { lines.append("read \(hex(lower.linear[0] + random.next(below: UInt64(512)) * 8))\(user)") }
            let value = frame | 0x61 | (random.next(below: 2) == 0 ? 0x4 : 0x2)
            written[upper.address] = value
            lines.append("store \(hex(upper.address)) \(hex(value))\(width)")
            invalidateEverywhere(upper.linear)
            lines.append("write \(hex(upper.linear[0] + random.next(below: UInt64(512)) * 8))\(user)")
        }

        /// A PDE is re-pointed to the other page table (an emulated write to a
        /// shadowed directory), its pages are invalidated and used (32-bit:
        /// mostly the upper 2 MiB of the 4 MiB region), and it is put back.
        func repoint() {
            let tables = slots.filter { $0.level == 2 && !$0.leaf }
            guard !tables.isEmpty else { return }
            let slot = tables[Int(random.next(below: UInt64(tables.count)))]
            let original = written[slot.address] ?? 0
            let frame = original & 0xffff_f000
            guard frame == Layout.ptA || frame == Layout.ptB else { return }
            let upperHalf = slot.linear.filter { $0 >> 12 & 0x3ff >= 512 }
            func use() {
                let pool = entrySize == 4 && !upperHalf.isEmpty && random.next(below: 4) != 0 ? upperHalf : slot.linear
                lines.append(accessLine(pool[Int(random.next(below: UInt64(pool.count)))], kinds: ["read", "read", "write", "fetch"], userOdds: 2))
            }
            use()
            let other = frame == Layout.ptA ? Layout.ptB : Layout.ptA
            let value = original & ~0xffff_f000 | other | 1
            written[slot.address] = value
            lines.append("store \(hex(slot.address)) \(hex(value))\(width)")
            invalidateEverywhere(slot.linear)
            for _ in 0..<(1 + random.next(below: 2)) { use() }
            written[slot.address] = original
            lines.append("store \(hex(slot.address)) \(hex(original))\(width)")
            invalidateEverywhere(slot.linear)
        }

        /// A setting episode: use a translation through an entry that carries
        /// the bit a setting makes reserved or meaningful, change the setting
        /// (and maybe flush), make one other access, and repeat the first ones.
        func settingEpisode() {
            var choices: [Setting] = [.wp, .smep, .smap, .wpSMAP]
            if mode == .pae || mode.isLongMode { choices += [.nxe, .nxe, .nxe] }
            if mode.isLongMode { choices.append(.pke) }
            if entrySize == 4 { choices += [.pse, .pse, .pse, .pse36, .pse36] }
            choices += [.wpSMEP, .wpSMAP]
            let setting = choices[Int(random.next(below: UInt64(choices.count)))]
            let editable = slots.filter { !(mode == .pae && $0.level == 3) }
            guard !editable.isEmpty else { return }
            func pick(_ pool: [EntrySlot]) -> EntrySlot { pool[Int(random.next(below: UInt64(pool.count)))] }
            func cr4Line() -> String { "cr4 \(hex(cr4Base | cr4Extra))" }

            switch setting {
            case .wpSMEP:
                // A read-only user page; SMEP and SMAP off, WP off: a supervisor
                // write (allowed), then SMEP on and a supervisor fetch (a fault).
                let slot = pick(editable.filter { $0.level == 1 })
                var value = (written[slot.address] ?? 0) & ~0x2 | 0x5
                if entrySize == 8 { value &= ~(0x1f << 59) }
                edit(slot, value)
                let address = targets(slot)[0]
                cr4Extra &= ~0x30_0000
                lines.append(cr4Line())
                cr0 &= ~0x10000
                lines.append("cr0 \(hex(cr0))")
                lines.append(accessLine(address, kinds: ["write"], userOdds: 0))
                cr4Extra |= 0x10_0000
                lines.append(cr4Line())
                maybeInvalidateAfterSetting()
                lines.append(accessLine(address, kinds: ["fetch", "fetch", "read"], userOdds: 0))
                if random.next(below: 2) == 0 { lines.append(accessLine(address, kinds: ["read", "fetch"], userOdds: 1)) }
            case .wpSMAP:
                // A read-only user page; SMAP on, WP off, AC=1 (protection keys off).
                // Half the time the write comes while SMAP is still off, and SMAP is
                // turned on after it: the page was built without SMAP.
                let slot = pick(editable.filter { $0.level == 1 })
                edit(slot, (written[slot.address] ?? 0) & ~0x2 | 0x5)
                let address = targets(slot)[0]
                let smapAfterWrite = random.next(below: 2) == 0
                cr4Extra = cr4Extra & ~0x60_0000 | (smapAfterWrite ? 0 : 0x20_0000)
                lines.append(cr4Line())
                cr0 &= ~0x10000
                lines.append("cr0 \(hex(cr0))")
                lines.append("rflags.ac 1")
                lines.append(accessLine(address, kinds: ["write"], userOdds: 0))
                if smapAfterWrite {
                    cr4Extra |= 0x20_0000
                    lines.append(cr4Line())
                    maybeInvalidateAfterSetting()
                }
                if random.next(below: 3) == 0 {
                    lines.append(accessLine(address, kinds: ["read", "write"], userOdds: 0, implicitOdds: 1))
                } else {
                    lines.append("rflags.ac 0")
                    lines.append(accessLine(address, kinds: ["read", "write"], userOdds: 0, implicitOdds: 4))
                }
                if random.next(below: 3) == 0 { lines.append(accessLine(address, kinds: ["read", "write"], userOdds: 1)) }
            case .pse36:
                // PSE on; a 4 MiB PDE with PSE-36 address bits (20:13), one of 20:17 among them.
                guard let slot = hugeSlot else { return }
                let original = written[slot.address] ?? 0
                var high: UInt64 = random.next(below: UInt64(256)) << 13
                if high & 0x1e_0000 == 0 { high |= UInt64(1) << (17 + random.next(below: UInt64(4))) }
                if random.next(below: 8) == 0 { high |= UInt64(1) << 21 }  // reserved whatever MAXPHYADDR is
                cr4Base |= 0x10
                lines.append(cr4Line())
                let mask: UInt64 = 0x3f_e000
                edit(slot, original & ~mask | high | 0x80)
                for address in targets(slot) { lines.append(accessLine(address, kinds: ["read", "read", "write", "fetch"], userOdds: 2)) }
                edit(slot, original)  // back, so that the huge page's frames stay data
            default:
                // The entry and the bit it carries: XD (NXE), R/W clear (WP), U/S (SMEP,
                // SMAP), a protection key (PKE), PS and D in the huge PDE (PSE).
                let slot: EntrySlot
                switch setting {
                case .pse:
                    guard let huge = hugeSlot else { return }
                    slot = huge
                    if random.next(below: 2) == 0 { edit(slot, (written[slot.address] ?? 0) | 0x40) }
                default:
                    let pool = setting == .pke ? editable.filter { $0.level == 1 } : editable
                    let carries: (UInt64) -> Bool = { value in
                        switch setting {
                        case .nxe: value & 1 << 63 != 0
                        case .wp: value & 0x2 == 0
                        case .pke: value >> 59 & 0xf != 0
                        default: value & 0x4 != 0
                        }
                    }
                    let carrying = pool.filter { carries(written[$0.address] ?? 0) && (written[$0.address] ?? 0) & 1 != 0 }
                    if !carrying.isEmpty, random.next(below: 2) == 0 {
                        slot = pick(carrying)
                    } else {
                        slot = pick(pool)
                        var value = (written[slot.address] ?? 0) | 0x1
                        switch setting {
                        case .nxe: value |= 1 << 63
                        case .wp: value &= ~0x2
                        case .pke: value = value & ~(0xf << 59) | (1 + random.next(below: 15)) << 59
                        default: value |= 0x4
                        }
                        edit(slot, value)
                    }
                }
                // Before: NXE on for XD to be usable (mostly; sometimes the other way).
                if setting == .nxe {
                    if random.next(below: 4) == 0 { efer &= ~0x800 } else { efer |= 0x800 }
                    lines.append("efer \(hex(efer))")
                }
                let kinds: [String] = switch setting {
                case .nxe: ["read", "write", "read", "fetch"]
                case .wp: ["write"]
                case .smep: ["fetch", "fetch", "read"]
                case .smap: ["read", "write"]
                default: ["read", "write", "fetch"]
                }
                let uses = targets(slot).map { accessLine($0, kinds: kinds, userOdds: setting == .smep || setting == .smap || setting == .wp ? 4 : 2, implicitOdds: 5) }
                lines += uses
                switch setting {
                case .nxe:
                    efer ^= 0x800
                    lines.append("efer \(hex(efer))")
                case .wp:
                    cr0 ^= 0x10000
                    lines.append("cr0 \(hex(cr0))")
                case .pse:
                    cr4Base ^= 0x10
                    lines.append(cr4Line())
                default:
                    cr4Extra ^= setting == .smep ? 0x10_0000 : setting == .smap ? 0x20_0000 : 0x40_0000
                    lines.append(cr4Line())
                }
                maybeInvalidateAfterSetting()
                // One access elsewhere first (it may fill the new root), then the same ones again.
                if !linearPages.isEmpty {
                    lines.append(accessLine(linearPages[Int(random.next(below: UInt64(linearPages.count)))], kinds: ["read", "write"], userOdds: 2))
                }
                lines += uses
            }
        }
    }

    func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    /// What a table episode does (`tableEpisode`).
    enum TableEpisode {
        case selfMappedEdit, spareTable, hugeAlias, sharedTable, repoint
        /// 32-bit: entries i and i+512 of one table (two shadow pages) map one frame.
        case quadrantTwins
    }

    /// What a setting episode changes.
    enum Setting: CaseIterable {
        case nxe, wp, smep, smap, pke, pse
        /// PSE-36 address bits in a 4 MiB PDE (CR4.PSE on).
        case pse36
        /// A CPL-0 write with CR0.WP=0, CR4.SMAP=1 and EFLAGS.AC=1 to a
        /// read-only user page, then a supervisor access that SMAP guards.
        case wpSMAP
        /// A CPL-0 write with CR0.WP=0 and CR4.SMEP=0 to a read-only user page,
        /// then SMEP on and a supervisor fetch from it.
        case wpSMEP
    }
}
