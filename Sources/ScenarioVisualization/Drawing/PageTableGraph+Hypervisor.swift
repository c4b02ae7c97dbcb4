import MMUEncoding
import ShadowMMU
import X86Paging
import ScenarioLanguage
import ScenarioRuntime

extension PageTableGraph.Builder {
    /// Walks the hypervisor's tables from every vCPU's current root (none
    /// under `mmu native`).
    mutating func addHypervisorTables() {
        guard let hypervisor = machine.hypervisor else {
            notes.append("mmu native: no hypervisor; the CPU walks the guest's tables itself")
            return
        }
        let mmu = hypervisor.mmu
        switch mmu.mode {
        case .shadow:
            hypervisorHeading = "shadow pages (the tables the hardware walks; host frames)"
        case .tdp(let format, let levels):
            hypervisorHeading = "TDP direct map (\(format == .ept ? "EPT" : "NPT"), \(levels) levels; host frames)"
        }
        for vcpu in 0..<configuration.vcpuCount {
            let rootID = "root-h-\(vcpu)"
            let runsL2 = machine.l1Paging(vcpu: vcpu) != nil
            if runsL2 { hypervisorHeading = "L0's shadow of L1's nested tables (the hardware's second stage for L2; host frames)" }
            guard let root = hypervisor.currentRoot(vcpu: vcpu) else {
                notes.append("vCPU \(vcpu): no hypervisor root yet (the vCPU has not run since its paging last changed)")
                roots.append(.init(vcpu: vcpu, side: .hypervisor, id: rootID, label: "vCPU \(vcpu): no root", node: nil))
                continue
            }
            let top = hypervisorTable(root, vcpu: vcpu, mmu: mmu, paeRoot: root.level == 3)
            roots.append(.init(
                vcpu: vcpu, side: .hypervisor, id: rootID,
                label: "vCPU \(vcpu) root: host frame \(root.hostFrame.hex) (\(root.level) levels)", node: top))
            edges.append(.init(from: rootID, entry: nil, to: top, kind: .root))
        }
    }

    /// One hypervisor table and the tables below it. `paeRoot`: the root has
    /// three levels, so its level-3 page is a 4-entry PDPT.
    mutating func hypervisorTable(_ table: ShadowTableDump, vcpu: Int, mmu: ShadowMMU, paeRoot: Bool) -> String {
        let id = "h-\(table.hostFrame.hex)"
        if has(id) { return id }
        let role = table.role
        var marks: Set<PageTableGraph.Mark> = []
        var details: [String] = []
        let kind = table.special ? "special root table" : mmu.mode.isTDP ? (mmu.spteFormat == .ept ? "EPT table" : "NPT table") : "shadow page"
        if table.local {
            marks.insert(.local)
            details.append("local to vCPU \(vcpu): not in the hash, freed with the root")
        }
        if table.special {
            marks.insert(.special)
            let name = table.level == 3 ? "pae_root" : table.level == 4 ? "pml4_root" : "pml5_root"
            details.append("upstream's special root (\(name)): vCPU \(vcpu)'s raw table, no shadow page; entries filled at root load")
        }
        if table.unsync { marks.insert(.unsync); details.append("unsync: the guest may write its table without trapping") }
        if role.invalid { marks.insert(.invalid); details.append("invalid: zapped while still a root") }
        var shadowed: String?
        if role.direct {
            marks.insert(.direct)
            let perEntry = UInt64(1) << UInt64(9 * (table.level - 1))
            let count: UInt64 = paeRoot && table.level == 3 ? 4 : 512
            details.append("maps gfn \(table.gfn.hex)–\((table.gfn + perEntry * count - 1).hex)")
        } else if table.local || table.special {
            if table.level == 3, roots.contains(where: { $0.vcpu == vcpu && $0.side == .guest && $0.node == "g-pdpte-v\(vcpu)" }) {
                shadowed = "g-pdpte-v\(vcpu)"
                details.append("mirrors the guest's PDPTE registers")
            } else {
                details.append("no guest table behind it (the root's shape differs from the guest's)")
            }
        } else if !role.passthrough {
            let entrySize = role.hasFourByteGPTE ? 4 : 8
            let gpa = table.gfn << 12
            let name = PageTableGraph.tableName(level: table.level)
            let quadrant = role.hasFourByteGPTE ? ", quadrant \(table.quadrant)" : ""
            details.append("shadows the guest \(name) at gpa \(gpa.hex)\(quadrant)")
            let guest = PageTableGraph.guestNodeID(entrySize: entrySize, level: table.level, gpa: gpa)
            if has(guest) {
                shadowed = guest
            } else {
                details.append("(that guest table is not reachable from any vCPU's CR3 now)")
            }
        }
        details.append("role: \(role)")
        let listed = table.entries.prefix(maxEntries)
        add(Node(
            id: id, side: .hypervisor, level: table.level, title: "level-\(table.level) \(table.direct && !mmu.mode.isTDP ? "direct " : "")\(kind)",
            details: details + ["host frame \(table.hostFrame.hex)"], entries: [], omittedEntries: table.entries.count - listed.count,
            marks: marks))
        if let shadowed { edges.append(.init(from: id, entry: nil, to: shadowed, kind: .shadows)) }
        var entries: [PageTableGraph.Entry] = []
        for (index, entry) in listed {
            switch entry {
            case .table(let child):
                let childID = hypervisorTable(child, vcpu: vcpu, mmu: mmu, paeRoot: paeRoot)
                edges.append(.init(from: id, entry: index, to: childID, kind: .entry))
                let raw = mmu.host.load(table.hostFrame << 12 + UInt64(index * 8), width: 8)
                entries.append(.init(
                    index: index, raw: raw, kind: .table,
                    text: "→ level-\(child.level) page, host frame \(child.hostFrame.hex)", child: childID))
            case .leaf(let spte, let gfn, let hostFrame):
                let huge: String? = switch table.level {
                case 1: nil
                case 2: "2M"
                case 3: "1G"
                default: "L\(table.level)"
                }
                entries.append(.init(
                    index: index, raw: spte, kind: .leaf, hugePageSize: huge,
                    text: "gfn \(gfn.hex) → host \((hostFrame << 12).hex) \(Self.flags(spte, format: mmu.spteFormat))"))
            case .mmio(let spte, let gfn):
                entries.append(.init(index: index, raw: spte, kind: .mmio, text: "MMIO gfn \(gfn.hex) (no memslot: accesses are emulated)"))
            }
        }
        update(id) { node in node.entries = entries }
        return id
    }

    /// A leaf spte's flags, in the format of the tables.
    static func flags(_ spte: UInt64, format: SPTEFormat) -> String {
        if format == .ept { return PageTableGraph.flags(EPTEntry(rawValue: spte).description) }
        let words = SPTE(rawValue: spte).description.split(separator: " ").dropFirst()
        return "[" + words.joined(separator: " ") + "]"
    }
}
