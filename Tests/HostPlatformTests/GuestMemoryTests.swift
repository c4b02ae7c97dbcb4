import HostPlatform
import Testing
import X86Paging

/// Guest memory over its memslot: addresses map to host memory above
/// `guestRAMBase`, everything outside reads as all ones (MMIO), and the
/// dirty log records the guest's writes but not the loader's.
@Suite("Guest memory and memslots")
struct GuestMemoryTests {
    @Test("a memslot maps guest frames to host frames and back")
    func memslotTranslatesBothWays() {
        let slot = Memslot(baseGFN: 0x10, pageCount: 4, hostBase: 0x100_0000)
        #expect(slot.contains(gfn: 0x13) && !slot.contains(gfn: 0x14) && !slot.contains(gfn: 0xf))
        #expect(slot.hostFrame(of: 0x12) == 0x1002)
        #expect(slot.guestFrame(ofHostFrame: 0x1002) == 0x12)
        #expect(slot.guestFrame(ofHostFrame: 0x1004) == nil)
    }

    @Test("guest memory is backed at guestRAMBase; outside its slot it is unclaimed MMIO")
    func guestMemoryBackingAndMMIO() {
        let host = HostMemory()
        let memory = GuestMemory(host: host, size: 1 << 20)
        memory.store(0x2008, width: 8, 0xabcd)
        #expect(host.load(HostMemory.guestRAMBase + 0x2008, width: 8) == 0xabcd)
        #expect(memory.hostAddress(of: 0x2008) == HostMemory.guestRAMBase + 0x2008)
        #expect(memory.guestAddress(ofHost: HostMemory.guestRAMBase + 0x2008) == 0x2008)
        #expect(memory.hostAddress(of: 1 << 20) == nil)
        #expect(memory.load(1 << 20, width: 4) == 0xffff_ffff)
    }

    @Test("the dirty log holds the guest's writes, not the loader's, and starts afresh when harvested")
    func dirtyLogging() {
        let memory = GuestMemory(host: HostMemory(), size: 1 << 20)
        memory.setDirtyLogging(true)
        memory.loaderWrite(0x1000, width: 8, 1)
        memory.store(0x3000, width: 8, 1)
        memory.store(0x2000, width: 4, 1)
        #expect(memory.harvestDirtyFrames() == [2, 3])
        #expect(memory.harvestDirtyFrames() == [])
        memory.markDirty(5)  // marked but never written: a false positive
        #expect(memory.harvestDirtyFrames() == [5])
        #expect(memory.falsePositives == 1)
    }
}
