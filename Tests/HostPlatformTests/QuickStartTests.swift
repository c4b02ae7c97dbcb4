import HostPlatform
import Testing

// The quick start of the HostPlatform catalogue, compiled and run.
@Suite struct HostPlatformQuickStart {
    @Test func guestMemoryOverHostMemory() {
        let host = HostMemory()
        let memory = GuestMemory(host: host, size: 1 << 20)
        memory.setDirtyLogging(true)
        memory.store(0x2008, width: 8, 0xabcd)          // a write on the guest's behalf
        memory.loaderWrite(0x1000, width: 8, 1)         // the loader's: not logged
        let dirty = memory.harvestDirtyFrames()         // [2]
        let backing = memory.hostAddress(of: 0x2008)    // guestRAMBase + 0x2008

        let frame = host.allocateTableFrame()           // a zeroed table frame below 4 GiB
        host.freeTableFrame(frame)                      // now poison

        #expect(dirty == [2])
        #expect(backing == HostMemory.guestRAMBase + 0x2008)
        #expect(frame << 12 < 1 << 32 && host.entry(frame << 12) == HostMemory.poison)
    }
}
