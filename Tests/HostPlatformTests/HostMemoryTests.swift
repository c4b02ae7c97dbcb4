import HostPlatform
import Testing
import X86Paging

/// Host memory on its own: table frames come from below 4 GiB, are zeroed
/// when handed out, poisoned when freed, and a read of a freed frame counts.
@Suite("Host memory")
struct HostMemoryTests {
    @Test("host memory poisons a freed table frame")
    func freedFramesArePoisoned() {
        let host = HostMemory()
        let frame = host.allocateTableFrame()
        host.setEntry(frame << 12, 0x1234)
        host.freeTableFrame(frame)
        #expect(host.freedFrames.contains(frame))
        #expect(host.entry(frame << 12) == HostMemory.poison)
    }

    @Test("a table frame is addressable by a 32-bit CR3, zeroed, and reused after a free")
    func tableFramesAreLowZeroedAndReused() {
        let host = HostMemory()
        let frame = host.allocateTableFrame()
        #expect(frame << 12 < 1 << 32)
        #expect(host.tableFramesInUse == 1)
        host.freeTableFrame(frame)
        let again = host.allocateTableFrame()
        #expect(again == frame && !host.freedFrames.contains(frame))
        #expect(host.entry(again << 12) == 0, "a reused frame still holds poison")
        #expect(host.tableFramesInUse == 1)
    }

    @Test("reading a freed frame counts as a poisoned read; reading a live frame does not")
    func poisonedReadsAreCounted() {
        let host = HostMemory()
        let live = host.allocateTableFrame()
        let freed = host.allocateTableFrame()
        host.setEntry(live << 12, HostMemory.poison)  // a live frame may hold the same bits
        host.freeTableFrame(freed)
        _ = host.load(live << 12, width: 8)
        #expect(host.poisonedReads == 0)
        _ = host.load(freed << 12 | 8, width: 8)
        #expect(host.poisonedReads == 1)
    }
}
