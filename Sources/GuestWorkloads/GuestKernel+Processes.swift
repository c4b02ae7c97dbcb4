import X86Paging
import ScenarioLanguage
import ScenarioRuntime

/// Processes: creating address spaces, context switches, fork, exec, exit,
/// mmap and munmap, and running a process for a while.
extension GuestKernel {
    /// The user layout every process starts with.
    enum UserLayout {
        static let codeBase: UInt64 = 0x40_0000
        static let codePages = 16
        static let heapBase: UInt64 = 0x100_0000
        static let heapCapacity = 4096
        static let mmapBase: UInt64 = 0x4000_0000
        static let mmapCapacity = 4096
        static let hugeBase: UInt64 = 0x8000_0000
        static let hugeCapacity = 64
        static let stackPages = 64
    }

    var stackTop: UInt64 { layout.mode.isLongMode ? 0x7fff_ffff_f000 : 0xbfff_f000 }

    /// The processes alive, oldest first.
    var liveProcesses: [GuestProcess] { processes }

    // MARK: - Address spaces

    /// A new address space: a top-level table holding the kernel half (the
    /// same entries as the kernel's own), and for PAE the three user page
    /// directories, allocated up front because the CPU latches PDPTEs at each
    /// CR3 load (as Linux does for PAE).
    func createAddressSpace() throws(KernelPanic) -> AddressSpace {
        let top = try allocateTable(level: layout.levels, parent: nil)
        let space = AddressSpace(id: nextSpaceID, top: top)
        nextSpaceID += 1
        let kernelHalf = (tables[kernelSpace.top]?.entries ?? [:]).filter { layout.isKernelSlot($0.key) }
        for (index, value) in kernelHalf.sorted(by: { $0.key < $1.key }) {
            try writeEntry(EntryLocation(table: top, index: index, level: layout.levels), value)
        }
        if layout.mode == .pae {
            for index in 0..<3 {
                let entry = EntryLocation(table: top, index: index, level: 3)
                let directory = try allocateTable(level: 2, parent: entry)
                space.userTables.insert(directory)
                try writeEntry(entry, tableEntry(directory, level: 3, user: true))
            }
        }
        return space
    }

    /// Unmaps everything of a space no CPU uses any more and frees its tables,
    /// clearing each entry first as a kernel tearing down an address space does.
    func tearDown(_ space: AddressSpace) throws(KernelPanic) {
        for (_, mapping) in space.mappings.sorted(by: { $0.key < $1.key }) {
            try writeEntry(mapping.entry, 0)
            release(mapping)
        }
        space.mappings = [:]
        let userTables = space.userTables.sorted { (tables[$0]?.level ?? 0, $0) < (tables[$1]?.level ?? 0, $1) }
        for table in userTables {
            if let parent = tables[table]?.parent { try writeEntry(parent, 0) }
            freeFrame(table)
            counters.pageTablesFreed += 1
        }
        space.userTables = []
        freeFrame(space.top)
        counters.pageTablesFreed += 1
    }

    func standardRegions(binary: Int) -> [MemoryRegion] {
        [
            MemoryRegion(start: UserLayout.codeBase, end: UserLayout.codeBase + UInt64(UserLayout.codePages) << 12,
                         kind: .code(file: binary), writable: false, executable: true),
            MemoryRegion(start: UserLayout.heapBase, end: UserLayout.heapBase + UInt64(UserLayout.heapCapacity) << 12,
                         kind: .anonymous, writable: true, executable: false),
            MemoryRegion(start: stackTop - UInt64(UserLayout.stackPages) << 12, end: stackTop,
                         kind: .anonymous, writable: true, executable: false),
        ]
    }

    // MARK: - Processes

    /// A new process running `binary` in a fresh address space (not yet scheduled).
    @discardableResult
    public func spawn(binary: Int = 1) throws(KernelPanic) -> GuestProcessHandle {
        try enterKernel(.exec)
        let process = GuestProcess(pid: nextPID, space: try createAddressSpace(), binary: binary)
        nextPID += 1
        process.regions = standardRegions(binary: binary)
        processes.append(process)
        counters.processesCreated += 1
        recorder.comment("spawn pid \(process.pid) (binary \(binary))")
        log?("spawn pid \(process.pid): address space at \(process.space.top.hex)")
        return GuestProcessHandle(process)
    }

    /// A context switch: the scheduler runs, records the new task and loads its CR3.
    public func switchTo(_ handle: GuestProcessHandle) throws(KernelPanic) {
        let process = handle.process
        guard current !== process else { return }
        try enterKernel(.schedule)
        // `current` lives in the kernel's data, reached through the kernel-image mapping.
        let slot = UInt64(Self.imageTextPages) << 12
        _ = try kernelAccess(.write, layout.kernelImageBase + slot, expecting: Self.imageStart + slot, value: UInt64(process.pid))
        storeModel(Self.imageStart + slot, width: 8, UInt64(process.pid))
        recorder.comment("switch to pid \(process.pid)")
        if loadedCR3 != process.space.top { try setRegister(.cr3, process.space.top) }
        current = process
        counters.contextSwitches += 1
    }

    /// The idle loop: no process runs, the CPU stays on the last address space
    /// (lazy TLB, as Linux does) and runs kernel code only.
    public func idle(iterations: Int = 3) throws(KernelPanic) {
        counters.idlePeriods += 1
        for _ in 0..<iterations { try enterKernel(.idle) }
    }

    /// fork(): the child gets a new address space sharing every page; private
    /// writable pages become copy-on-write in both (write-protected in the
    /// parent with a read-modify-write of its entry), then the parent's TLB is
    /// flushed. Huge pages stay shared and writable.
    @discardableResult
    public func fork(_ handle: GuestProcessHandle) throws(KernelPanic) -> GuestProcessHandle {
        let parent = handle.process
        try switchTo(handle)
        try enterKernel(.fork)
        recorder.comment("fork pid \(parent.pid)")
        let child = GuestProcess(pid: nextPID, space: try createAddressSpace(), binary: parent.binary)
        nextPID += 1
        child.regions = parent.regions
        child.heapPages = parent.heapPages
        child.mmapPages = parent.mmapPages
        child.hugePages = parent.hugePages
        var protected = 0
        for (page, mapping) in parent.space.mappings.sorted(by: { $0.key < $1.key }) {
            var shared = mapping
            if mapping.backing == .anonymous, mapping.writable {
                let old = try readEntry(mapping.entry)
                try writeEntry(mapping.entry, old & ~Flags.writable)
                var parentMapping = mapping
                parentMapping.writable = false
                parentMapping.copyOnWrite = true
                parent.space.mappings[page] = parentMapping
                shared = parentMapping
                protected += 1
            }
            shared.entry = try makeEntry(page, level: mapping.huge ? 2 : 1, in: child.space, user: true)
            try map(child, page, shared)
        }
        if protected > 0 { try flushCurrent() }
        processes.append(child)
        counters.forks += 1
        counters.processesCreated += 1
        log?("fork: pid \(parent.pid) → pid \(child.pid), \(parent.space.mappings.count) pages shared, \(protected) made copy-on-write")
        return GuestProcessHandle(child)
    }

    /// execve(): the process gets a fresh address space for `binary`, switches
    /// to it, and the old one is torn down.
    public func exec(_ handle: GuestProcessHandle, binary: Int) throws(KernelPanic) {
        let process = handle.process
        try switchTo(handle)
        try enterKernel(.exec)
        recorder.comment("exec pid \(process.pid) (binary \(binary))")
        let old = process.space
        process.space = try createAddressSpace()
        process.binary = binary
        process.regions = standardRegions(binary: binary)
        process.heapPages = 0
        process.mmapPages = 0
        process.hugePages = 0
        try setRegister(.cr3, process.space.top)
        try tearDown(old)
        counters.execs += 1
        log?("exec pid \(process.pid): binary \(binary), new address space at \(process.space.top.hex)")
    }

    /// exit(): another process (or the idle loop on the kernel's own tables)
    /// takes the CPU, then the process's address space is torn down.
    public func exit(_ handle: GuestProcessHandle) throws(KernelPanic) {
        let process = handle.process
        try enterKernel(.exit)
        recorder.comment("exit pid \(process.pid)")
        processes.removeAll { $0 === process }
        if current === process {
            if let next = processes.first {
                try switchTo(GuestProcessHandle(next))
            } else {
                try setRegister(.cr3, kernelSpace.top)
                current = nil
            }
        }
        try tearDown(process.space)
        counters.exits += 1
        log?("exit pid \(process.pid)")
    }

    /// Reloads CR3: flushes the current address space's non-global translations.
    func flushCurrent() throws(KernelPanic) {
        counters.tlbFlushes += 1
        try setRegister(.cr3, loadedCR3)
    }

    // MARK: - mmap and munmap

    /// mmap() of `pages` anonymous pages at the process's mmap area (after what it maps already).
    public func mmapAnonymous(_ handle: GuestProcessHandle, pages: Int) throws(KernelPanic) -> UInt64 {
        let process = handle.process
        try enterKernel(.memoryMap)
        let start = UserLayout.mmapBase + UInt64(process.mmapPages) << 12
        process.mmapPages += pages
        process.regions.append(MemoryRegion(start: start, end: start + UInt64(pages) << 12, kind: .anonymous, writable: true, executable: false))
        return start
    }

    /// mmap() of `count` huge pages at the process's huge area.
    public func mmapHuge(_ handle: GuestProcessHandle, count: Int) throws(KernelPanic) -> UInt64 {
        let process = handle.process
        try enterKernel(.memoryMap)
        let start = UserLayout.hugeBase + UInt64(process.hugePages) * layout.hugePageSize
        process.hugePages += count
        process.regions.append(MemoryRegion(start: start, end: start + UInt64(count) * layout.hugePageSize, kind: .huge, writable: true, executable: false))
        return start
    }

    /// munmap() of `[start, start + length)` in the current process: clear
    /// the entries, free page tables left empty, then invalidate — page by
    /// page for up to 32 pages, else with a CR3 reload (Linux's ceiling).
    public func munmap(_ handle: GuestProcessHandle, _ start: UInt64, length: UInt64) throws(KernelPanic) {
        let process = handle.process
        try switchTo(handle)
        try enterKernel(.memoryMap)
        recorder.comment("munmap \(start.hex)+\(length.hex) in pid \(process.pid)")
        counters.munmaps += 1
        let end = start + length
        var unmapped: [UInt64] = []
        var emptied: Set<UInt64> = []
        for (page, mapping) in process.space.mappings.sorted(by: { $0.key < $1.key }) where page >= start && page < end {
            try writeEntry(mapping.entry, 0)
            process.space.mappings[page] = nil
            release(mapping)
            unmapped.append(page)
            emptied.insert(mapping.entry.table)
        }
        // Free tables the unmapping emptied, bottom-up (never the top; never a
        // PAE page directory, which the PDPTEs latch).
        var freed: [UInt64] = []
        var candidates = emptied.sorted()
        while let table = candidates.first {
            candidates.removeFirst()
            guard let info = tables[table], info.isEmpty, let parent = info.parent,
                  !(layout.mode == .pae && info.level == 2) else { continue }
            // Only when no part of the table's reach is still in use.
            try writeEntry(parent, 0)
            process.space.userTables.remove(table)
            freed.append(table)
            if !candidates.contains(parent.table) { candidates.append(parent.table) }
        }
        counters.pagesUnmapped += unmapped.count
        if unmapped.count <= 32 {
            for page in unmapped { invalidatePage(page) }
            if unmapped.isEmpty && !freed.isEmpty { try flushCurrent() }
        } else {
            try flushCurrent()
        }
        for table in freed {
            freeFrame(table)
            counters.pageTablesFreed += 1
        }
        // Cut the range out of the regions.
        var regions: [MemoryRegion] = []
        for region in process.regions {
            guard region.start < end, region.end > start else {
                regions.append(region)
                continue
            }
            if region.start < start { regions.append(MemoryRegion(start: region.start, end: start, kind: region.kind, writable: region.writable, executable: region.executable)) }
            if region.end > end { regions.append(MemoryRegion(start: end, end: region.end, kind: region.kind, writable: region.writable, executable: region.executable)) }
        }
        process.regions = regions
        log?("munmap pid \(process.pid): \(unmapped.count) pages, \(freed.count) page tables freed")
    }

    // MARK: - Running

    /// Runs the current process for `accesses` accesses: instruction fetches
    /// from its text, reads and writes of its heap, stack and mappings, with
    /// `newPages` of them touching heap pages for the first time.
    public func run(_ handle: GuestProcessHandle, accesses: Int, newPages: Int = 0) throws(KernelPanic) {
        let process = handle.process
        try switchTo(handle)
        var fresh = min(newPages, UserLayout.heapCapacity - process.heapPages)
        for step in 0..<accesses {
            let roll = random.next(below: 10)
            if fresh > 0, roll < 3 || accesses - step <= fresh {
                // A new heap page: sometimes read before it is written (the zero page, then copy-on-write).
                let page = UserLayout.heapBase + UInt64(process.heapPages) << 12
                process.heapPages += 1
                fresh -= 1
                let offset = random.next(below: 512 as UInt64) * 8
                if random.next(below: 2) == 0 { try userAccess(.read, page + offset) }
                try userAccess(.write, page + offset, value: random.next())
                continue
            }
            switch roll {
            case 0..<3:
                let page = UserLayout.codeBase + random.next(below: UInt64(UserLayout.codePages)) << 12
                try userAccess(.fetch, page + random.next(below: 256 as UInt64) * 16)
            case 3..<7 where process.heapPages > 0:
                let page = UserLayout.heapBase + random.next(below: UInt64(process.heapPages)) << 12
                try touch(page + random.next(below: 512 as UInt64) * 8)
            case 7..<9:
                let page = stackTop - (1 + random.next(below: 4 as UInt64)) << 12
                try touch(page + random.next(below: 512 as UInt64) * 8)
            default:
                if let region = process.regions.last(where: { $0.kind == .anonymous && $0.start >= UserLayout.mmapBase && $0.start < UserLayout.hugeBase }) {
                    let pages = (region.end - region.start) >> 12
                    try touch(region.start + random.next(below: pages) << 12 + random.next(below: 512 as UInt64) * 8)
                } else if let region = process.regions.last(where: { $0.kind == .huge }) {
                    try touch(region.start + random.next(below: (region.end - region.start) >> 3) * 8)
                } else {
                    try userAccess(.fetch, UserLayout.codeBase + random.next(below: 256 as UInt64) * 16)
                }
            }
        }
    }

    /// A read or a write (of a fresh value) at `address`.
    func touch(_ address: UInt64) throws(KernelPanic) {
        if random.next(below: 2) == 0 {
            try userAccess(.read, address)
        } else {
            try userAccess(.write, address, value: random.next())
        }
    }
}

/// A process of the guest kernel, as workloads refer to it.
public struct GuestProcessHandle {
    let process: GuestProcess
    init(_ process: GuestProcess) { self.process = process }
    public var pid: Int { process.pid }
}
