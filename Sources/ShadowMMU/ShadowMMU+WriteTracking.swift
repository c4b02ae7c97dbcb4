import MMUEncoding
import X86Paging

extension ShadowMMU {
    /// A guest store to guest memory through a mapping that is not under test
    /// (the scenario's `store`): it lands like any guest write would under this
    /// MMU. Returns `true` if the hypervisor trapped and emulated it (the frame
    /// holds a shadowed upper-level table, or a leaf table that may not go
    /// unsync); `false` if the store goes straight to memory — the caller
    /// writes it — possibly after the leaf tables there went unsync.
    public func guestStore(_ gpa: UInt64, width: Int, _ value: UInt64) -> Bool {
        let gfn = gpa >> 12
        if writeTrack[gfn] == nil, mmuTryToUnsyncPages(gfn, synchronizing: false, trace: nil) { return false }
        statistics.trappedStores += 1
        memory.store(gpa, width: width, value)
        trackWrite(gpa, width: width)
        return true
    }

    /// An emulated guest write of `width` bytes at `gpa` has been made to
    /// guest memory (`kvm_mmu_track_write`): zap the sptes that shadow the
    /// entries it touched, or the whole page when the write is misaligned or
    /// the page is being rewritten over and over (write flooding).
    public func trackWrite(_ gpa: UInt64, width: Int) {
        guard indirectShadowPages > 0 else { return }
        let gfn = gpa >> 12
        let pages = shadowedPages(of: gfn)
        guard !pages.isEmpty else { return }
        statistics.pteWritesEmulated += 1
        let offset = Int(gpa & 0xfff)
        var flush = false
        for page in pages where pageByFrame[page.frame] === page {
            if isMisalignedWrite(page, offset: offset, width: width) || detectWriteFlooding(page) {
                statistics.pagesFlooded += 1
                zapPage(page)
                continue
            }
            for index in writtenSPTEs(page, offset: offset) {
                if SPTE(rawValue: host.entry(page.spteAddress(index))).isShadowPresent { flush = true }
                zapSPTE(page, index)
            }
        }
        if flush { flushRemoteTLBs() }
    }

    /// A write that is not one whole guest entry (`detect_write_misaligned`).
    /// A single byte at the start of an entry is fine: kernels flip status
    /// bits that way.
    func isMisalignedWrite(_ page: ShadowPage, offset: Int, width: Int) -> Bool {
        let entrySize = page.role.hasFourByteGPTE ? 4 : 8
        if offset & (entrySize - 1) == 0, width == 1 { return false }
        return (offset ^ (offset + width - 1)) & ~(entrySize - 1) != 0 || width < 4
    }

    /// Upper-level pages written three times without being used for a
    /// translation in between are assumed no longer to be page tables.
    func detectWriteFlooding(_ page: ShadowPage) -> Bool {
        guard page.role.level > 1 else { return false }
        page.writeFloodingCount += 1
        return page.writeFloodingCount >= 3
    }

    /// The sptes of `page` that shadow the guest entry at byte `offset` of its
    /// table (`get_written_sptes`): a 4-byte guest PDE covers two 8-byte
    /// shadow PDEs, and a quadrant sees only its part of the guest table.
    func writtenSPTEs(_ page: ShadowPage, offset: Int) -> Range<Int> {
        var pageOffset = offset
        var count = 1
        if page.role.hasFourByteGPTE {
            pageOffset <<= 1
            if page.role.level == 2 {
                pageOffset &= ~7
                pageOffset <<= 1
                count = regressed(.pde32WriteZapsOneHalf) ? 1 : 2
            }
            let quadrant = pageOffset >> 12
            pageOffset &= 0xfff
            if quadrant != page.role.quadrant { return 0..<0 }
        }
        let first = (pageOffset & ~7) / 8
        return first..<(first + count)
    }

    // MARK: - Dirty logging

    /// `host dirty-log start`: write-protect every mapping so the first write
    /// to each frame faults and is logged (shadow paging has no PML).
    public func startDirtyLogging() {
        memory.setDirtyLogging(true)
        var changed = false
        // Huge mappings go: while logging, every page is mapped (and logged) at 4 KiB.
        for page in livePages where page.role.level > 1 {
            for index in 0..<512 {
                let spte = SPTE(rawValue: host.entry(page.spteAddress(index)))
                if spte.isShadowPresent, spte.isLeaf(atLevel: page.role.level) {
                    dropLeaf(page, index)
                    changed = true
                }
            }
        }
        for gfn in rmap.keys where writeProtect(gfn: gfn, keepMMUWritable: true) { changed = true }
        if changed { flushRemoteTLBs() }
    }

    public func stopDirtyLogging() { memory.setDirtyLogging(false) }

    /// `host dirty-log read`: the frames written since the last read; they are
    /// write-protected again so the next write is caught.
    public func harvestDirtyLog() -> [UInt64] {
        let frames = memory.harvestDirtyFrames()
        var changed = false
        for gfn in frames where writeProtect(gfn: gfn, keepMMUWritable: true) { changed = true }
        if changed { flushRemoteTLBs() }
        return frames
    }
}
