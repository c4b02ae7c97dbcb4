import X86Paging
import ScenarioLanguage
import ScenarioRuntime

/// User accesses and the page-fault handler: demand paging, the zero page,
/// page-cache text, huge pages, copy-on-write.
extension GuestKernel {
    public enum UserAccessResult: Equatable {
        /// The access completed; a read reports its value.
        case completed(value: UInt64?)
        /// The address is not in any region the process may use that way: the
        /// kernel sends SIGSEGV (the process survives it here).
        case segmentationFault
    }

    enum FaultResolution {
        case retry
        case segmentationFault
    }

    /// An access by the current process: performed, and after a page fault
    /// handled and retried, until it completes or the process is signalled.
    @discardableResult
    public func userAccess(_ kind: AccessCommand.Kind, _ address: UInt64, width: Int = 8, value: UInt64? = nil) throws(KernelPanic) -> UserAccessResult {
        guard let process = current else {
            throw KernelPanic(.unusable, "a user access with no process running")
        }
        counters.userAccesses += 1
        let command = AccessCommand(kind: kind, address: address, width: kind == .fetch ? 1 : width, value: value, user: true)
        for _ in 0..<3 {
            let mapping = process.space.mapping(containing: address, hugePageSize: layout.hugePageSize)
            let outcome = recorder.access(command)
            switch outcome {
            case .ok(let gpa, let read):
                guard let mapping, mapping.permits(kind) else {
                    throw KernelPanic(.mismatch, "pid \(process.pid)'s \(kind) at \(address.hex) completed at \(gpa.hex), but its page tables do not allow it")
                }
                let expected = mapping.frame + (address & (mapping.huge ? layout.hugePageSize - 1 : 0xfff))
                guard gpa == expected else {
                    throw KernelPanic(.mismatch, "pid \(process.pid)'s \(kind) at \(address.hex) reached \(gpa.hex); its page tables map it to \(expected.hex)")
                }
                if kind == .read {
                    let stored = loadModel(gpa, width: command.width)
                    guard read == stored else {
                        throw KernelPanic(.mismatch, "pid \(process.pid)'s read at \(address.hex) (guest physical \(gpa.hex)) returned \((read ?? 0).hex); the guest last stored \(stored.hex) there")
                    }
                }
                if kind == .write, let value { storeModel(gpa, width: command.width, value) }
                return .completed(value: read)
            case .pageFault(let code):
                if let mapping, mapping.permits(kind) {
                    throw KernelPanic(.mismatch, "pid \(process.pid)'s \(kind) at \(address.hex) page-faulted (error code \(code.hex)), but its page tables allow it")
                }
                switch try handlePageFault(process, address, kind, errorCode: code) {
                case .retry: continue
                case .segmentationFault:
                    counters.segmentationFaults += 1
                    log?("pid \(process.pid): SIGSEGV at \(address.hex) (\(kind), error code \(code.hex))")
                    return .segmentationFault
                }
            case .generalProtection:
                throw KernelPanic(.mismatch, "pid \(process.pid)'s \(kind) at \(address.hex) raised #GP, but the address is canonical")
            case .nestedFault(let fault):
                throw KernelPanic(.mismatch, "pid \(process.pid)'s \(kind) at \(address.hex) ended in \(fault.result), but the guest kernel runs with no L1 hypervisor")
            }
        }
        throw KernelPanic(.mismatch, "pid \(process.pid)'s \(kind) at \(address.hex) still faults after the fault handler mapped it")
    }

    /// The page-fault handler.
    func handlePageFault(_ process: GuestProcess, _ address: UInt64, _ kind: AccessCommand.Kind, errorCode: UInt64) throws(KernelPanic) -> FaultResolution {
        try enterKernel(.pageFault)
        counters.pageFaultsHandled += 1
        guard errorCode & 0x8 == 0 else {
            throw KernelPanic(.mismatch, "a page fault with the reserved-bit flag at \(address.hex): the kernel never writes reserved bits")
        }
        guard let region = process.region(containing: address), region.permits(kind) else { return .segmentationFault }
        let page = address & ~0xfff
        guard errorCode & 1 != 0 else {
            try mapOnDemand(process, page, region, kind)
            return .retry
        }
        // A protection fault on a present page.
        guard var mapping = process.space.mapping(containing: address, hugePageSize: layout.hugePageSize) else {
            throw KernelPanic(.mismatch, "a protection fault (error code \(errorCode.hex)) at \(address.hex), which pid \(process.pid) never mapped")
        }
        if kind == .write, mapping.copyOnWrite {
            try copyOnWrite(process, page, mapping)
            return .retry
        }
        guard region.kind == .firstTouch else { return .segmentationFault }
        // A traced program writes its text or runs its data: widen the page's rights.
        if kind == .write { mapping.writable = true }
        if kind == .fetch { mapping.executable = true }
        counters.permissionUpgrades += 1
        log?("pid \(process.pid): \(page.hex) may now be \(kind == .write ? "written" : "executed")")
        try remap(process, page, mapping)
        return .retry
    }

    /// A not-present fault inside `region`.
    func mapOnDemand(_ process: GuestProcess, _ page: UInt64, _ region: MemoryRegion, _ kind: AccessCommand.Kind) throws(KernelPanic) {
        switch region.kind {
        case .huge:
            let base = page & ~(layout.hugePageSize - 1)
            guard let frame = allocator.allocateHuge() else {
                throw KernelPanic(.unusable, "the huge-page pool is exhausted")
            }
            for small in stride(from: frame, to: frame + layout.hugePageSize, by: 4096) { try zero(small) }
            counters.hugePageFaults += 1
            try map(process, base, UserMapping(
                frame: frame, writable: true, executable: false, huge: true, backing: .huge, copyOnWrite: false,
                entry: makeEntry(base, level: 2, in: process.space, user: true)))
            log?("pid \(process.pid): huge page \(base.hex) → \(frame.hex)")
        case .code(let file):
            let frame = try pageCacheFrame(file: file, page: Int((page - region.start) >> 12))
            counters.fileFaults += 1
            try map(process, page, UserMapping(
                frame: frame, writable: false, executable: true, huge: false, backing: .file, copyOnWrite: false,
                entry: makeEntry(page, level: 1, in: process.space, user: true)))
            log?("pid \(process.pid): text page \(page.hex) → page-cache frame \(frame.hex)")
        case .anonymous where kind == .read:
            counters.zeroPageFaults += 1
            try map(process, page, UserMapping(
                frame: zeroPage, writable: false, executable: false, huge: false, backing: .zeroPage, copyOnWrite: region.writable,
                entry: makeEntry(page, level: 1, in: process.space, user: true)))
            log?("pid \(process.pid): read of untouched \(page.hex) → the zero page")
        case .anonymous, .firstTouch:
            let frame = try allocateFrame()
            counters.anonymousFaults += 1
            // A traced program's page is code if its first use is a fetch, data otherwise.
            let code = region.kind == .firstTouch && kind == .fetch
            try map(process, page, UserMapping(
                frame: frame, writable: !code, executable: code,
                huge: false, backing: .anonymous, copyOnWrite: false,
                entry: makeEntry(page, level: 1, in: process.space, user: true)))
            log?("pid \(process.pid): \(kind) of untouched \(page.hex) → new \(code ? "code" : "data") frame \(frame.hex)")
        }
    }

    /// A write to a copy-on-write page: copy it, or take it over when no one else maps it.
    func copyOnWrite(_ process: GuestProcess, _ page: UInt64, _ mapping: UserMapping) throws(KernelPanic) {
        var updated = mapping
        updated.writable = true
        updated.copyOnWrite = false
        if mapping.backing == .anonymous, references[mapping.frame] == 1 {
            counters.copyOnWriteReuses += 1
            log?("pid \(process.pid): copy-on-write \(page.hex): sole user, made writable in place")
            try remap(process, page, updated)
            return
        }
        let copy = try allocateFrame()
        for (index, value) in (contents[mapping.frame >> 12] ?? [:]).sorted(by: { $0.key < $1.key }) {
            let offset = UInt64(index * 8)
            let read = try readPhysical(mapping.frame + offset, width: 8)
            guard read == value else {
                throw KernelPanic(.mismatch, "copying \(mapping.frame.hex): word \(offset.hex) reads \(read.hex), the guest stored \(value.hex)")
            }
            try writeWord(copy + offset, value)
        }
        counters.copyOnWriteCopies += 1
        log?("pid \(process.pid): copy-on-write \(page.hex): copied \(mapping.frame.hex) → \(copy.hex)")
        updated.frame = copy
        updated.backing = .anonymous
        release(mapping)
        references[copy, default: 0] += 1
        try remap(process, page, updated)
    }

    /// Installs a new mapping where none was present (no invalidation needed:
    /// a CPU never caches a not-present entry).
    func map(_ process: GuestProcess, _ page: UInt64, _ mapping: UserMapping) throws(KernelPanic) {
        var mapping = mapping
        // Without execute-disable every readable page can be executed.
        if !layout.hasExecuteDisable { mapping.executable = true }
        try writeEntry(mapping.entry, leafEntry(mapping))
        process.space.mappings[page] = mapping
        references[mapping.frame, default: 0] += 1
    }

    /// Replaces a present mapping, then invalidates the page's translation.
    func remap(_ process: GuestProcess, _ page: UInt64, _ mapping: UserMapping) throws(KernelPanic) {
        var mapping = mapping
        if !layout.hasExecuteDisable { mapping.executable = true }
        try writeEntry(mapping.entry, leafEntry(mapping))
        process.space.mappings[mapping.huge ? page & ~(layout.hugePageSize - 1) : page] = mapping
        invalidatePage(page)
    }

    func invalidatePage(_ address: UInt64) {
        counters.invlpgs += 1
        recorder.perform(.invlpg(address))
    }

    /// Drops one user mapping of a frame; frees the frame when it was the last.
    func release(_ mapping: UserMapping) {
        let left = (references[mapping.frame] ?? 1) - 1
        references[mapping.frame] = left == 0 ? nil : left
        guard left == 0 else { return }
        switch mapping.backing {
        case .anonymous: freeFrame(mapping.frame)
        case .huge:
            for small in stride(from: mapping.frame, to: mapping.frame + layout.hugePageSize, by: 4096) {
                if let words = contents.removeValue(forKey: small >> 12) { staleWords[small] = (8, words.keys.map { $0 * 8 }) }
            }
            allocator.releaseHuge(mapping.frame)
        case .file, .zeroPage: break  // the page cache and the zero page stay
        }
    }

    /// The page-cache frame holding page `page` of executable `file`, read in
    /// on first use (the file lives in an initramfs: the kernel copies it with the CPU).
    func pageCacheFrame(file: Int, page: Int) throws(KernelPanic) -> UInt64 {
        if let frame = pageCache[file]?[page] { return frame }
        let frame = try allocateFrame()
        try writeWord(frame, 0xe8c3_0000_0000_0000 | UInt64(file) << 16 | UInt64(page))
        pageCache[file, default: [:]][page] = frame
        return frame
    }
}
