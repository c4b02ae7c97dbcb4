import ScenarioLanguage
import ScenarioRuntime
/// The guest kernel's physical frame allocator: 4 KiB frames from a general
/// region, and huge frames (2 or 4 MiB, naturally aligned) from a pool at the
/// top of guest memory, reserved at boot as hugetlbfs does.
///
/// Freed frames are reused last-in first-out, as a kernel's per-CPU free lists
/// hand out the hottest page first: a page table freed by `munmap` or `exec`
/// soon comes back as data or as another table, which is what makes a
/// hypervisor that still shadows it do work.
struct FrameAllocator {
    /// Guest physical addresses, all 4 KiB aligned.
    private var next: UInt64
    private let end: UInt64
    private var free: [UInt64] = []
    private var hugeNext: UInt64
    private let hugeEnd: UInt64
    private var hugeFree: [UInt64] = []
    let hugePageSize: UInt64

    private(set) var framesInUse = 0
    private(set) var peakFramesInUse = 0
    private(set) var framesAllocated = 0
    private(set) var hugeFramesInUse = 0

    /// Frames from `[start, memorySize − hugeFrames × hugePageSize)`, huge frames above.
    /// A pool that does not fit above `start` is cut to the huge frames that
    /// do (`hugeFramesFree` says how many): `Workload` refuses such a size
    /// before it boots, so the cut only keeps a caller's mistake from
    /// wrapping the arithmetic.
    init(start: UInt64, memorySize: UInt64, hugeFrames: Int, hugePageSize: UInt64) {
        self.hugePageSize = hugePageSize
        hugeEnd = memorySize & ~(hugePageSize - 1)
        let room = hugeEnd > start ? (hugeEnd - start) / hugePageSize : 0
        let pool = min(UInt64(max(hugeFrames, 0)), room)
        hugeNext = hugeEnd - pool * hugePageSize
        next = start
        end = hugeNext
    }

    /// A free 4 KiB frame (its guest physical address), or nil when memory is exhausted.
    mutating func allocate() -> UInt64? {
        let frame: UInt64
        if let reused = free.popLast() {
            frame = reused
        } else if next < end {
            frame = next
            next += 4096
        } else {
            return nil
        }
        framesInUse += 1
        framesAllocated += 1
        peakFramesInUse = max(peakFramesInUse, framesInUse)
        return frame
    }

    mutating func release(_ frame: UInt64) {
        framesInUse -= 1
        free.append(frame)
    }

    /// A free huge frame, or nil when the pool is exhausted.
    mutating func allocateHuge() -> UInt64? {
        let frame: UInt64
        if let reused = hugeFree.popLast() {
            frame = reused
        } else if hugeNext < hugeEnd {
            frame = hugeNext
            hugeNext += hugePageSize
        } else {
            return nil
        }
        hugeFramesInUse += 1
        return frame
    }

    var hugeFramesFree: Int { Int((hugeEnd - hugeNext) / hugePageSize) + hugeFree.count }

    mutating func releaseHuge(_ frame: UInt64) {
        hugeFramesInUse -= 1
        hugeFree.append(frame)
    }
}
