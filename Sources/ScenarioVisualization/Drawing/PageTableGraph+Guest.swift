import ShadowMMU
import X86Paging
import ScenarioLanguage
import ScenarioRuntime

extension PageTableGraph {
    /// The architectural name of a paging structure by level (`PT` … `PML5`).
    static func tableName(level: Int) -> String {
        switch level {
        case 1: "PT"
        case 2: "PD"
        case 3: "PDPT"
        case 4: "PML4"
        case 5: "PML5"
        default: "L\(level)"
        }
    }

    /// Node id of the guest table at `gpa`, read as a level-`level` table of
    /// `entrySize`-byte entries. A frame used at two levels (or by 32-bit and
    /// PAE guests) is two tables, since its entries mean different things.
    static func guestNodeID(entrySize: Int, level: Int, gpa: UInt64) -> String {
        "g\(entrySize)-L\(level)-\(gpa.hex)"
    }

    /// The flag names of an entry's description (`0x2007 [P RW US]` → `[P RW US]`).
    static func flags(_ description: String) -> String {
        guard let open = description.firstIndex(of: "[") else { return description }
        return String(description[open...])
    }
}

extension PageTableGraph.Builder {
    typealias Entry = PageTableGraph.Entry
    typealias Node = PageTableGraph.Node

    /// The shadow MMU when the hypervisor shadows the guest's tables (not under TDP).
    var shadowMMU: ShadowMMU? {
        guard let hypervisor = machine.hypervisor,
              !hypervisor.mmu.mode.isTDP || (0..<configuration.vcpuCount).contains(where: { machine.l1Paging(vcpu: $0) != nil })
        else { return nil }
        return hypervisor.mmu
    }

    /// The second stage of `vcpu`'s L1 hypervisor, when the vCPU runs L2.
    func l1Paging(vcpu: Int) -> NestedPaging? {
        machine.l1Paging(vcpu: vcpu)
    }

    /// Walks every vCPU's tables from its CR3, in its current paging mode.
    mutating func addGuestTables() {
        var modes: [String] = []
        var nested = false
        for vcpu in 0..<configuration.vcpuCount {
            var registers = machine.registers(vcpu: vcpu)
            switch l1Paging(vcpu: vcpu) {
            case .npt(let l1)?:
                // The tables L0 shadows for this vCPU are L1's nested tables, in L1's paging mode.
                registers = l1
                nested = true
            case .ept(let eptp, let bits)?:
                // L1's EPT tables, what L0 shadows for this vCPU's L2.
                let rootID = "root-g-\(vcpu)"
                let root = eptp.root(maxPhysicalAddressBits: bits)
                let top = eptTable(gpa: root, level: eptp.levels, maxPhysicalAddressBits: bits)
                if top == nil { notes.append("vCPU \(vcpu): the EPTP's table \(root.hex) lies outside L1's memory") }
                roots.append(.init(vcpu: vcpu, side: .guest, id: rootID, label: "vCPU \(vcpu) L1's EPTP \(eptp.rawValue.hex) (\(eptp.levels)-level EPT)", node: top))
                if let top { edges.append(.init(from: rootID, entry: nil, to: top, kind: .root)) }
                modes.append("EPT")
                nested = true
                continue
            case nil:
                break
            }
            let mode = registers.mode
            modes.append("\(mode)")
            let rootID = "root-g-\(vcpu)"
            let top: String?
            switch mode {
            case .none:
                notes.append("vCPU \(vcpu): paging is off (CR0.PG=0): linear addresses are guest-physical, no guest tables")
                top = nil
            case .pae:
                top = pdptTable(vcpu: vcpu, registers: registers)
            case .bits32, .level4, .level5:
                top = guestTable(gpa: registers.rootTableAddress, level: mode.levels, registers: registers)
                if top == nil { notes.append("vCPU \(vcpu): CR3 \(registers.cr3.hex) points outside guest memory") }
            }
            let rootName = l1Paging(vcpu: vcpu) == nil ? "CR3" : "L1's nCR3"
            roots.append(.init(vcpu: vcpu, side: .guest, id: rootID, label: "vCPU \(vcpu) \(rootName) \(registers.cr3.hex) (\(mode))", node: top))
            if let top { edges.append(.init(from: rootID, entry: nil, to: top, kind: .root)) }
        }
        let distinct = Set(modes)
        if nested {
            guestHeading = "L1's nested page tables (what L0 shadows for L2; L1-physical addresses; " + modes.enumerated().map { "vCPU \($0.offset): \($0.element)" }.joined(separator: ", ") + ")"
            return
        }
        guestHeading = distinct.count == 1
            ? "guest page tables (\(modes[0]); guest-physical addresses)"
            : "guest page tables (" + modes.enumerated().map { "vCPU \($0.offset): \($0.element)" }.joined(separator: ", ") + ")"
    }

    /// Present entries of a table, in index order.
    func presentEntries(count: Int, _ read: (Int) -> UInt64?) -> [(index: Int, raw: UInt64)] {
        (0..<count).compactMap { index in read(index).map { (index, $0) } }
    }

    /// A PAE guest's top level: the four PDPTE registers loaded at the last
    /// CR3 load (Intel), or the 32-byte PDPT read on every walk (AMD under NPT).
    mutating func pdptTable(vcpu: Int, registers: ControlRegisters) -> String {
        let base = registers.cr3 & 0xffff_ffe0
        let latched = registers.model.latchesPDPTEs
        let id = latched ? "g-pdpte-v\(vcpu)" : PageTableGraph.guestNodeID(entrySize: 8, level: 3, gpa: base)
        if has(id) { return id }
        let values: [UInt64] = (0..<4).map { index in
            latched ? registers.pdptes[index] : machine.peek(base + UInt64(8 * index), width: 8)
        }
        let present = values.enumerated().filter { $0.element & 1 != 0 }
        var node = Node(
            id: id, side: .guest, level: 3,
            title: latched ? "PDPTE registers of vCPU \(vcpu)" : "PDPT at gpa \(base.hex)",
            details: latched ? ["loaded from the PDPT at gpa \(base.hex) by the last CR3 load"] : ["read from memory on every walk (AMD nested paging)"],
            entries: [], omittedEntries: 0, marks: [])
        if !latched { addProtection(&node, gfn: base >> 12) }
        add(node)
        var entries: [Entry] = []
        for (index, raw) in present {
            let gpa = raw & bitRange(registers.maxPhysicalAddressBits - 1, 12)
            let flags = PageTableGraph.flags(PTE64(rawValue: raw).description)
            entries.append(tableEntry(index: index, raw: raw, childGPA: gpa, childLevel: 2, flags: flags, registers: registers, from: id))
        }
        update(id) { $0.entries = entries }
        return id
    }

    /// The guest table at `gpa` of `level`, with the tables below it; nil when
    /// it lies outside guest memory (a walk through it faults as not present).
    mutating func guestTable(gpa: UInt64, level: Int, registers: ControlRegisters) -> String? {
        let entrySize = registers.mode.entrySize
        let id = PageTableGraph.guestNodeID(entrySize: entrySize, level: level, gpa: gpa)
        if has(id) { return id }
        guard gpa < configuration.memorySize else { return nil }
        let count = 4096 / entrySize
        let present = presentEntries(count: count) { index in
            let raw = machine.peek(gpa + UInt64(index * entrySize), width: entrySize)
            return raw & 1 != 0 ? raw : nil
        }
        let listed = present.prefix(maxEntries)
        var node = Node(
            id: id, side: .guest, level: level, title: "\(PageTableGraph.tableName(level: level)) at gpa \(gpa.hex)",
            details: [], entries: [], omittedEntries: present.count - listed.count, marks: [])
        addProtection(&node, gfn: gpa >> 12)
        add(node)
        var entries: [Entry] = []
        for (index, raw) in listed {
            entries.append(guestEntry(index: index, raw: raw, level: level, registers: registers, from: id))
        }
        update(id) { $0.entries = entries }
        return id
    }

    /// An L1's EPT table at `gpa` of `level`, with the tables below it; nil
    /// when it lies outside memory (an EPT walk through it is a violation).
    mutating func eptTable(gpa: UInt64, level: Int, maxPhysicalAddressBits bits: Int) -> String? {
        let id = PageTableGraph.guestNodeID(entrySize: 8, level: level, gpa: gpa)
        if has(id) { return id }
        guard gpa < configuration.memorySize else { return nil }
        let present = presentEntries(count: 512) { index in
            let raw = machine.peek(gpa + UInt64(index * 8), width: 8)
            return raw & 7 != 0 ? raw : nil
        }
        let listed = present.prefix(maxEntries)
        var node = Node(
            id: id, side: .guest, level: level, title: "EPT \(PageTableGraph.tableName(level: level)) at gpa \(gpa.hex)",
            details: [], entries: [], omittedEntries: present.count - listed.count, marks: [])
        addProtection(&node, gfn: gpa >> 12)
        add(node)
        var entries: [Entry] = []
        for (index, raw) in listed {
            let flags = PageTableGraph.flags(EPTEntry(rawValue: raw).description)
            let large = raw & EPTEntry.pageSize.rawValue != 0 && (level == 2 || level == 3)
            if level == 1 || large {
                let shift = 12 + 9 * (level - 1)
                let base = raw & bitRange(bits - 1, shift)
                entries.append(Entry(index: index, raw: raw, kind: .leaf, hugePageSize: large ? (level == 2 ? "2M" : "1G") : nil, text: "→ \(base.hex) \(flags)"))
                continue
            }
            let childGPA = raw & bitRange(bits - 1, 12)
            let name = PageTableGraph.tableName(level: level - 1)
            guard let child = eptTable(gpa: childGPA, level: level - 1, maxPhysicalAddressBits: bits) else {
                entries.append(Entry(index: index, raw: raw, kind: .broken, text: "→ EPT \(name) \(childGPA.hex): outside memory, an EPT violation \(flags)"))
                continue
            }
            edges.append(.init(from: id, entry: index, to: child, kind: .entry))
            entries.append(Entry(index: index, raw: raw, kind: .table, text: "→ EPT \(name) \(childGPA.hex) \(flags)", child: child))
        }
        update(id) { $0.entries = entries }
        return id
    }

    /// Marks a guest table the shadow MMU watches.
    func addProtection(_ node: inout Node, gfn: UInt64) {
        guard let mmu = shadowMMU else { return }
        switch mmu.protection(ofGuestFrame: gfn) {
        case .none: return
        case .writeProtected: node.marks.insert(.writeProtected)
        case .writeTracked: node.marks.insert(.writeTracked)
        }
        node.details.append(mmu.protection(ofGuestFrame: gfn).description)
    }

    /// One present entry of a guest table: a huge page, a 4 KiB page, or the next table.
    mutating func guestEntry(index: Int, raw: UInt64, level: Int, registers: ControlRegisters, from id: String) -> Entry {
        let maxBits = registers.maxPhysicalAddressBits
        if registers.mode == .bits32 {
            let pte = PTE32(rawValue: UInt32(truncatingIfNeeded: raw))
            let flags = PageTableGraph.flags(pte.description)
            if level == 1 {
                return Entry(index: index, raw: raw, kind: .leaf, text: "→ \(pte.frameAddress.hex) \(flags)")
            }
            if pte.contains(.pageSize), registers.cr4.contains(.pse) {
                return Entry(index: index, raw: raw, kind: .leaf, hugePageSize: "4M",
                             text: "→ \(pte.largePageAddress(maxPhysicalAddressBits: maxBits).hex) \(flags)")
            }
            return tableEntry(index: index, raw: raw, childGPA: pte.frameAddress, childLevel: level - 1, flags: flags, registers: registers, from: id)
        }
        let pte = PTE64(rawValue: raw)
        let flags = PageTableGraph.flags(pte.description)
        if level == 1 {
            return Entry(index: index, raw: raw, kind: .leaf, text: "→ \(pte.frameAddress(maxPhysicalAddressBits: maxBits).hex) \(flags)")
        }
        if pte.contains(.pageSize) {
            switch level {
            case 2: return Entry(index: index, raw: raw, kind: .leaf, hugePageSize: "2M", text: "→ \((raw & bitRange(maxBits - 1, 21)).hex) \(flags)")
            case 3: return Entry(index: index, raw: raw, kind: .leaf, hugePageSize: "1G", text: "→ \((raw & bitRange(maxBits - 1, 30)).hex) \(flags)")
            default: return Entry(index: index, raw: raw, kind: .broken, text: "PS is reserved at this level: the walk faults \(flags)")
            }
        }
        return tableEntry(
            index: index, raw: raw, childGPA: pte.frameAddress(maxPhysicalAddressBits: maxBits), childLevel: level - 1, flags: flags,
            registers: registers, from: id)
    }

    /// An entry that points to the next guest table, which is drawn too.
    mutating func tableEntry(
        index: Int, raw: UInt64, childGPA: UInt64, childLevel: Int, flags: String, registers: ControlRegisters, from id: String
    ) -> Entry {
        let name = PageTableGraph.tableName(level: childLevel)
        guard let child = guestTable(gpa: childGPA, level: childLevel, registers: registers) else {
            return Entry(index: index, raw: raw, kind: .broken, text: "→ \(name) \(childGPA.hex): outside guest memory, the walk faults \(flags)")
        }
        edges.append(.init(from: id, entry: index, to: child, kind: .entry))
        return Entry(index: index, raw: raw, kind: .table, text: "→ \(name) \(childGPA.hex) \(flags)", child: child)
    }
}
