import MMUEncoding
import ShadowMMU
import X86Paging

/// `run --shadow-tree`: the hypervisor's current root as an indented tree
/// for a person (the form docs/shadow-paging.md draws). A page several
/// entries link (a shadow page shared by two PDEs, say) is printed in full
/// the first time and referred to by its host frame after. The JSON of
/// `--dump-shadow` is the contract; this is not.
extension ShadowTableDump {
    public func treeLines(format: SPTEFormat) -> [String] {
        var seen: Set<UInt64> = []
        var lines = [header]
        seen.insert(hostFrame)
        appendEntries(to: &lines, prefix: "", format: format, seen: &seen)
        return lines
    }

    /// "L3 local (level=3 direct …) host 0x100", "L2 gfn 0x2 unsync (…) host 0x101".
    var header: String {
        var words = ["L\(level)"]
        if special { words.append("special root table") } else if local { words.append("local") } else { words.append("gfn \(gfn.hex)") }
        if quadrant != 0 { words.append("quadrant \(quadrant)") }
        if unsync { words.append("unsync") }
        return words.joined(separator: " ") + (special ? "" : " (\(role))") + " host \(hostFrame.hex)"
    }

    private func appendEntries(to lines: inout [String], prefix: String, format: SPTEFormat, seen: inout Set<UInt64>) {
        for (position, item) in entries.enumerated() {
            let last = position == entries.count - 1
            let branch = prefix + (last ? "└─ " : "├─ ") + "[\(item.index)] "
            switch item.entry {
            case .table(let child):
                if seen.contains(child.hostFrame) {
                    lines.append(branch + "→ L\(child.level) host \(child.hostFrame.hex) (shown above)")
                } else {
                    seen.insert(child.hostFrame)
                    lines.append(branch + child.header)
                    child.appendEntries(to: &lines, prefix: prefix + (last ? "   " : "│  "), format: format, seen: &seen)
                }
            case .leaf(let spte, let gfn, let frame):
                let flags = format == .ept ? EPTEntry(rawValue: spte).description : SPTE(rawValue: spte).description
                lines.append(branch + "gfn \(gfn.hex) → host \((frame << 12).hex) (spte \(flags))")
            case .mmio(_, let gfn):
                lines.append(branch + "gfn \(gfn.hex): MMIO spte (no memslot)")
            }
        }
    }
}

extension ScenarioRunner {
    /// `run --shadow-tree`: each vCPU's current root as an indented tree.
    public var shadowTreeText: [String] {
        (0..<scenario.machine.vcpuCount).flatMap { vcpu -> [String] in
            guard let hypervisor = machine.hypervisor else { return ["vCPU \(vcpu): no hypervisor (mmu native): no shadow tables"] }
            guard let root = hypervisor.currentRoot(vcpu: vcpu) else { return ["vCPU \(vcpu): no root loaded"] }
            return ["vCPU \(vcpu):"] + root.treeLines(format: hypervisor.mmu.spteFormat).map { "  " + $0 }
        }
    }
}
