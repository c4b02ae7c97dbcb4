import MMUEncoding
import X86Paging

/// How much an audit checks (DESIGN.md §5.3).
public enum AuditLevel: Int, Comparable, Sendable {
    /// Bookkeeping: hash, parent pointers, local pages, roots.
    case structure = 1
    /// Also every leaf spte: rmaps, memslots, write protection, permissions.
    case full = 2

    public static func < (a: AuditLevel, b: AuditLevel) -> Bool { a.rawValue < b.rawValue }
}

extension ShadowMMU {
    /// Checks the MMU's invariants; returns one line per violation, each
    /// naming `point` (where the audit ran), empty when everything holds.
    public func audit(level: AuditLevel = .full, at point: String) -> [String] {
        var problems: [String] = []
        func fail(_ message: String) { problems.append("\(point): \(message)") }

        // The hash: keys match, valid pages only, no local page.
        // Dictionaries are walked in a fixed order, so that the findings come
        // out in the same order in every run (and `check --jobs N` prints
        // exactly what `--jobs 1` does).
        for (key, page) in hash.sorted(by: { $0.value.serial < $1.value.serial }) {
            if key.gfn != page.gfn || key.role != page.role { fail("hash key \(key.gfn.hex)/\(key.role) holds page \(page.gfn.hex)/\(page.role)") }
            if page.isLocal { fail("local page at frame \(page.frame.hex) is in the hash") }
            if isObsolete(page) { fail("obsolete page \(page.gfn.hex) (\(page.role)) is still in the hash") }
            if pageByFrame[page.frame] !== page { fail("hashed page \(page.gfn.hex) is not live at its frame") }
        }
        if usedPages != hash.count { fail("used page count \(usedPages) differs from the hash's \(hash.count)") }

        let owners = Dictionary(grouping: pageByFrame.values.filter(\.isLocal), by: { $0.owner! })
        for (owner, pages) in owners.sorted(by: { $0.key < $1.key }) {
            for page in pages where !isReachable(page, from: contexts[owner].root) && !isReachable(page, from: nestedContexts[owner]?.root) {
                fail("local page at frame \(page.frame.hex) of vCPU \(owner) is not on its root path")
            }
        }

        // Special root tables exist only while they are some vCPU's current root.
        for page in pageByFrame.values where page.isSpecialRoot {
            let owner = page.owner!
            let roots = [contexts[owner].root, nestedContexts[owner]?.root].compactMap { $0 }.filter(\.isSpecialRoot)
            if !roots.contains(where: { $0 === page || paeRoot(of: $0) === page || isOnSpecialPath(page, from: $0) }) {
                fail("special root table at \(page.frame.hex) of vCPU \(owner) is not part of its current root")
            }
        }

        for page in pageByFrame.values {
            if host.freedFrames.contains(page.frame) { fail("live page \(page.gfn.hex) sits on a freed frame \(page.frame.hex)") }
            if page.unsync, page.role.level != 1 || page.role.direct { fail("page \(page.gfn.hex) (\(page.role)) is unsync") }
            // Parent pointers and sptes agree both ways.
            for sptep in page.parentSPTEs {
                let spte = SPTE(rawValue: host.entry(sptep))
                if !spte.isShadowPresent || spte.frame != page.frame {
                    fail("page \(page.gfn.hex) (\(page.role)) lists parent spte \(sptep.hex) which holds \(spte)")
                }
            }
            guard page.role.level > 1 else { continue }
            for index in 0..<512 {
                let sptep = page.spteAddress(index)
                let spte = SPTE(rawValue: host.entry(sptep))
                guard spte.isShadowPresent, !spte.isLeaf(atLevel: page.role.level) else { continue }
                guard let child = child(of: spte) else {
                    fail("spte \(sptep.hex) points to frame \(spte.frame.hex), which holds no live page")
                    continue
                }
                if page.isSpecialRoot {
                    // A special table has no page header: its children keep no parent pointer to it;
                    // below pml5_root/pml4_root comes another special table, below pae_root a root.
                    if page.role.level > 3, !child.isSpecialRoot { fail("special root table at \(page.frame.hex) links a shadow page at entry \(index)") }
                    if page.role.level == 3, child.rootCount == 0 { fail("page \(child.gfn.hex) (\(child.role)) under special pae_root \(page.frame.hex) holds no root reference") }
                    if child.parentSPTEs.contains(sptep) { fail("page \(child.gfn.hex) lists special root entry \(sptep.hex) as a parent") }
                } else if !child.parentSPTEs.contains(sptep) {
                    fail("page \(child.gfn.hex) (\(child.role)) does not list its parent spte \(sptep.hex)")
                }
                if child.role.level != page.role.level - 1 { fail("spte \(sptep.hex) links a level-\(child.role.level) page under level \(page.role.level)") }
            }
        }

        // No loaded root reaches a freed frame; no freed frame was ever read.
        // Every page a root reaches was built for the root's paging settings:
        // it carries the root's role bits (the first page below special root
        // tables stands for the root).
        if host.poisonedReads > 0 { fail("\(host.poisonedReads) reads of freed host frames") }
        for context in allContexts {
            for root in [context.root].compactMap({ $0 }) + context.cachedRoots {
                var stack: [(page: ShadowPage, rootRole: PageRole?)] = [(root, nil)]
                while let (page, above) = stack.popLast() {
                    if host.freedFrames.contains(page.frame) { fail("vCPU \(context.vcpu)'s root reaches freed frame \(page.frame.hex)") }
                    let rootRole = page.isSpecialRoot ? nil : above ?? page.role
                    if let rootRole, !page.role.inheritsSettings(of: rootRole) {
                        fail("page \(page.gfn.hex) (\(page.role)) under vCPU \(context.vcpu)'s root (\(rootRole)) was built for other paging settings")
                    }
                    guard page.role.level > 1 else { continue }
                    for index in 0..<512 {
                        let spte = SPTE(rawValue: host.entry(page.spteAddress(index)))
                        if spte.isShadowPresent, let child = child(of: spte) { stack.append((child, rootRole)) }
                    }
                }
            }
        }

        guard level >= .full else { return problems }
        auditLeaves(fail)
        return problems
    }

    private func auditLeaves(_ fail: (String) -> Void) {
        var rmapCount = 0
        for (gfn, spteps) in rmap.sorted(by: { $0.key < $1.key }) {
            rmapCount += spteps.count
            for sptep in spteps {
                let spte = SPTE(rawValue: host.entry(sptep))
                guard spte.isShadowPresent else {
                    fail("rmap of gfn \(gfn.hex) lists spte \(sptep.hex), which is not present")
                    continue
                }
                // Every leaf maps the frame its memslot backs the gfn with.
                guard let slot = memory.slot(for: gfn), slot.hostFrame(of: gfn) == spte.frame else {
                    fail("spte \(sptep.hex) for gfn \(gfn.hex) maps host frame \(spte.frame.hex), not the gfn's backing")
                    continue
                }
                // No writable spte maps a guest table the MMU write-protects.
                if spte.isWritable {
                    if writeTrack[gfn] != nil { fail("writable spte \(sptep.hex) maps write-tracked gfn \(gfn.hex)") }
                    for page in shadowedPages(of: gfn) where !page.unsync {
                        fail("writable spte \(sptep.hex) maps gfn \(gfn.hex), shadowed by synced page (\(page.role))")
                    }
                }
                // Rights never exceed what the guest's upper levels grant.
                let page = page(holding: sptep)
                var allowed = page.role.access
                if !page.role.cr0WP { allowed.insert(.write) }  // CR0.WP=0 emulation: W without U
                if !spte.access(spteFormat).isSubset(of: allowed) {
                    fail("spte \(sptep.hex) grants \(spte.access(spteFormat)), more than its page's \(page.role.access)")
                }
            }
        }
        // A synced page table is write-protected: every change the guest makes
        // to it traps, so each present spte maps the frame its guest entry
        // names now (unsync pages may lag until the guest invalidates).
        for page in pageByFrame.values where page.role.level == 1 && !page.role.direct && !page.unsync && !isObsolete(page) {
            let fourByte = page.role.hasFourByteGPTE
            for index in 0..<512 {
                let spte = SPTE(rawValue: host.entry(page.spteAddress(index)))
                guard spte.isShadowPresent else { continue }
                let address = page.gfn << 12 + UInt64(fourByte ? page.role.quadrant * 2048 + index * 4 : index * 8)
                let gpte = memory.load(address, width: fourByte ? 4 : 8)
                let named = (fourByte ? gpte & 0xffff_f000 : gpte & 0x000f_ffff_ffff_f000) >> 12
                let mapped = mappedGFN(page, index)
                if named != mapped {
                    fail("synced page \(page.gfn.hex) (\(page.role)) maps gfn \(mapped?.hex ?? "outside guest memory") at entry \(index), whose guest entry \(address.hex) now names \(named.hex)")
                }
            }
        }
        var leafCount = 0
        for page in pageByFrame.values {
            for index in 0..<512 {
                let spte = SPTE(rawValue: host.entry(page.spteAddress(index)))
                if spte.isShadowPresent, spte.isLeaf(atLevel: page.role.level) { leafCount += 1 }
            }
        }
        if leafCount != rmapCount { fail("\(leafCount) present leaf sptes but \(rmapCount) rmap entries") }
    }

    func isOnSpecialPath(_ target: ShadowPage, from root: ShadowPage) -> Bool {
        var table = root
        while table.role.level > 3 {
            let spte = SPTE(rawValue: host.entry(table.spteAddress(0)))
            guard let next = child(of: spte), next.isSpecialRoot else { return false }
            if next === target { return true }
            table = next
        }
        return false
    }

    func isReachable(_ target: ShadowPage, from root: ShadowPage?) -> Bool {
        var page = root
        while let current = page {
            if current === target { return true }
            guard current.isLocal, current.role.level > 3 else { return false }
            let spte = SPTE(rawValue: host.entry(current.spteAddress(0)))
            page = spte.isShadowPresent ? child(of: spte) : nil
        }
        return false
    }
}
