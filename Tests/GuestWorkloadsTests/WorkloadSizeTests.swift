@testable import GuestWorkloads
import Testing

/// Issue 13: a `--size` the guest or the host cannot hold is refused before
/// the kernel boots, and the frame allocator's arithmetic cannot wrap.
@Suite struct WorkloadSizeLimits {
    /// `hugepages --size 32768` trapped: 32769 huge frames of 2 MiB do not fit
    /// the 64 GiB a 4-level guest can have, and the pool's start wrapped.
    @Test func aHugePagePoolLargerThanMemoryIsCutNotWrapped() {
        let allocator = FrameAllocator(start: 0x10_0000, memorySize: 64 << 30, hugeFrames: 32769, hugePageSize: 2 << 20)
        #expect(allocator.hugeFramesFree == Int(((64 << 30) - 0x20_0000) / (2 << 20)), "the pool holds what fits above the first free frame")
        let absurd = FrameAllocator(start: 0x10_0000, memorySize: 64 << 20, hugeFrames: .max, hugePageSize: 4 << 20)
        #expect(absurd.hugeFramesFree == 15)
    }

    @Test(arguments: WorkloadName.allCases)
    func aCountAboveTheLimitIsRefusedWithTheLimit(_ name: WorkloadName) {
        for mode in GuestPagingLayout.Mode.allCases {
            let maximum = name.maximumCount(in: mode)
            let fits = Workload.problem(name, options: WorkloadOptions(mode: mode, size: .count(maximum)))
            #expect(fits == nil, "\(name) --size \(maximum) --mode \(mode): \(fits ?? "")")
            let tooLarge = Workload.problem(name, options: WorkloadOptions(mode: mode, size: .count(maximum + 1)))
            #expect(tooLarge?.contains("at most \(maximum) \(name.sizeMeaning)") == true, "\(name) --mode \(mode): \(tooLarge ?? "accepted")")
            let run = Workload.run(name, options: WorkloadOptions(mode: mode, size: .count(Int.max), record: false))
            #expect(run.failure?.kind == .unusable && run.commands == 0, "\(name) --mode \(mode) with an absurd count runs nothing")
        }
    }

    /// The pool bound is the real one: the largest huge-page count a 32-bit
    /// guest takes runs to the end, every huge page faulted in.
    @Test func theLargestPoolFitsAndRuns() {
        let maximum = WorkloadName.hugepages.maximumCount(in: .bits32)
        #expect(maximum == 119)
        let run = Workload.run(.hugepages, options: WorkloadOptions(mode: .bits32, size: .count(maximum), record: false))
        #expect(run.failure == nil, "\(run.failure.map { "\($0)" } ?? "")")
    }
}
