import MMUEncoding
import X86Paging

extension ShadowMMU {
    /// Removes a shadow page (`kvm_mmu_prepare_zap_page` + commit): zaps the
    /// unsync pages below it, unlinks its children and its parents, stops
    /// write-protecting its guest table, and frees it — or, while a vCPU still
    /// holds it as a root, marks it invalid until the last holder lets go.
    func zapPage(_ page: ShadowPage) {
        guard pageByFrame[page.frame] === page, !page.role.invalid, page.owner == nil else { return }
        statistics.pagesZapped += 1
        if page.role.level > 1 {
            var unsyncLeaves: [ShadowPage] = []
            gatherUnsync(page, into: &unsyncLeaves)
            for leaf in unsyncLeaves { zapPage(leaf) }
        }
        for index in 0..<512 { zapSPTE(page, index) }
        for sptep in page.parentSPTEs { host.setEntry(sptep, 0) }
        page.parentSPTEs = []
        if page.hasGuestPTEs { unaccountShadowed(page) }
        page.unsync = false
        removeFromHash(page)
        if page.rootCount == 0 {
            freePage(page)
        } else {
            page.role.invalid = true
        }
        flushRemoteTLBs()
    }

    func removeFromHash(_ page: ShadowPage) {
        let key = PageKey(gfn: page.gfn, role: page.role)
        guard hash[key] === page else { return }
        hash[key] = nil
        pagesByGFN[page.gfn]?.removeAll { $0 === page }
        if pagesByGFN[page.gfn]?.isEmpty == true { pagesByGFN[page.gfn] = nil }
        usedPages -= 1
    }

    /// Returns the page's table frame to the host (poisoned).
    func freePage(_ page: ShadowPage) {
        pageByFrame[page.frame] = nil
        host.freeTableFrame(page.frame)
    }

    /// Clears entry `index` of `page` (`mmu_page_zap_pte`): a leaf leaves its
    /// rmap; a table entry leaves its child's parent list (the child itself
    /// stays, in the hash, for reuse).
    func zapSPTE(_ page: ShadowPage, _ index: Int) {
        let sptep = page.spteAddress(index)
        let spte = SPTE(rawValue: host.entry(sptep))
        guard spte.rawValue != 0 else { return }
        if spte.isShadowPresent, spte.isLeaf(atLevel: page.role.level) {
            dropLeaf(page, index)
        } else if spte.isShadowPresent, let child = child(of: spte) {
            unlinkChild(child, from: sptep)
        } else {
            host.setEntry(sptep, 0)
        }
    }

    /// Clears the parent entry at `sptep` that points to `child` (`drop_parent_pte`).
    func unlinkChild(_ child: ShadowPage, from sptep: UInt64) {
        child.parentSPTEs.remove(sptep)
        host.setEntry(sptep, 0)
    }

    /// The gfn entry `index` of `page` maps or shadows: a direct page's
    /// linear range, an indirect table's own gfn above the leaves, and for an
    /// indirect leaf the gfn its spte names. KVM keeps that gfn beside each
    /// spte (`shadowed_translation`, 4 KiB per page) because a host pfn does
    /// not name its gfn; here memslots back guest memory linearly and never
    /// move, so a present leaf's host frame names its gfn, and an MMIO spte
    /// carries it. Nil for an indirect leaf entry that maps nothing.
    func mappedGFN(_ page: ShadowPage, _ index: Int) -> UInt64? {
        if page.role.direct { return page.directGFN(index) }
        guard page.role.level == 1 else { return page.gfn }
        let spte = SPTE(rawValue: host.entry(page.spteAddress(index)))
        if spte.isMMIO { return spte.mmioGFN }
        guard spte.isShadowPresent else { return nil }
        return memory.guestAddress(ofHost: spte.frame << 12).map { $0 >> 12 }
    }

    /// Clears a leaf spte and removes it from its rmap (`drop_spte`).
    func dropLeaf(_ page: ShadowPage, _ index: Int) {
        let sptep = page.spteAddress(index)
        if let gfn = mappedGFN(page, index), var list = rmap[gfn], let position = list.firstIndex(of: sptep) {
            list.remove(at: position)
            rmap[gfn] = list.isEmpty ? nil : list
        }
        host.setEntry(sptep, 0)
    }

    /// `host zap-all` (`kvm_mmu_zap_all_fast`): a new generation makes every
    /// page obsolete at once; loaded roots are rebuilt before the vCPUs run
    /// again, and the obsolete pages are zapped, oldest first.
    public func zapAllFast() {
        statistics.fastZaps += 1
        generation &+= 1
        for page in hashedPages where isObsolete(page) { zapPage(page) }
        flushRemoteTLBs()
    }

    /// `host invalidate`: the host takes the backing of `[gpa, gpa+size)` away
    /// (an MMU-notifier invalidation): every spte mapping it is dropped.
    ///
    /// A range may end at 2^64 and span far more pages than there are
    /// leaves: then the leaves are visited (each rmap entry once) instead of
    /// the range's pages, so the cost is bounded by what is mapped.
    public func invalidateRange(_ gpa: UInt64, size: UInt64) {
        guard size > 0 else { return }
        let first = gpa >> 12
        let (end, pastTop) = gpa.addingReportingOverflow(size - 1)
        let last = pastTop ? UInt64.max >> 12 : end >> 12
        var dropped = false
        // Drops the leaves keyed by `base` whose range holds a page of [low, high].
        func dropLeaves(keyedBy base: UInt64, covering low: UInt64, _ high: UInt64) {
            guard base <= high else { return }
            for sptep in rmap[base] ?? [] {
                // An rmap entry left behind by a leaf whose gfn its page does not
                // compute (cr4-pse-not-in-role: the audits flag it) may outlive
                // that page; there is nothing to drop then.
                guard let holder = pageByFrame[sptep >> 12] else { continue }
                let span = UInt64(1) << UInt64(9 * (holder.role.level - 1))
                guard base &+ span > low else { continue }
                dropLeaf(holder, Int(sptep & 0xfff) / 8)
                dropped = true
            }
        }
        if last - first >= UInt64(rmap.count) {
            for base in rmap.keys.sorted() { dropLeaves(keyedBy: base, covering: first, last) }
        } else {
            var gfn = first
            while gfn <= last {
                // 4 KiB leaves of this gfn, and huge leaves whose range holds it (keyed by their first gfn).
                for base in Set([gfn, gfn & ~0x1ff, gfn & ~0x3ffff]) { dropLeaves(keyedBy: base, covering: gfn, gfn) }
                gfn += 1
            }
        }
        if dropped { flushRemoteTLBs() }
    }

    /// The smallest cap. KVM refuses fewer than 64 pages; shadow paging here
    /// accepts down to 8 (one fault builds at most a page per level below the
    /// root), so that small scenarios exercise reclaim. Under TDP one access
    /// needs the guest's every table mapped, so KVM's 64 holds.
    public var minimumMaxPages: Int { mode.isTDP ? 64 : 8 }

    /// `host max-shadow-pages` (`kvm_mmu_change_mmu_pages`); caps below
    /// `minimumMaxPages` are raised to it.
    public func setMaxPages(_ count: Int) {
        maxPages = max(count, minimumMaxPages)
        if usedPages > maxPages { zapOldestPages(usedPages - maxPages) }
    }

    /// Before building pages (`make_mmu_pages_available`): keep a few pages
    /// free under the cap by zapping the oldest ones that are not roots.
    func makeMMUPagesAvailable() {
        guard maxPages != Int.max else { return }
        let available = maxPages - usedPages
        if available >= 5 { return }
        zapOldestPages(25 - available)
    }

    func zapOldestPages(_ count: Int) {
        var zapped = 0
        for page in hashedPages where zapped < count && page.rootCount == 0 && pageByFrame[page.frame] === page && !page.role.invalid {
            let before = statistics.pagesZapped
            zapPage(page)
            zapped += statistics.pagesZapped - before
        }
        statistics.pagesRecycled += zapped
    }
}
