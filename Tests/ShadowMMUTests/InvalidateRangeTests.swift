@testable import ShadowMMU
import Testing

/// `host invalidate` over ranges at the edges of the address space (found by
/// the input fuzzer's edge corpus, issue 13): a range ending at 2^64 trapped
/// on overflow, and a range of 2^52 pages would have walked every page.
@Suite struct InvalidateRange {
    static let guest = """
        machine memory=64M
        mmu shadow
        poke 0x1000 0x2007
        poke 0x2000 0x3007
        poke 0x3000 0x4007
        poke 0x4008 0x100007
        cr4 0x20
        cr3 0x1000
        efer 0x100
        cr0 0x80000001
        read 0x1000
        # @mapped
        """

    @Test(arguments: [
        (UInt64(0xffff_ffff_ffff_f000), UInt64(0x1000), false),  // ends exactly at 2^64: nothing of the guest's
        (0, 0xffff_ffff_ffff_f000, true),                          // every page but the last: the walk goes by leaves
        (0x10_0000, 0x1000, true),                                 // the mapped page alone: the walk goes by pages
        (0x20_0000, 0xffff_ffff_ffe0_0000, false),                 // everything above the mapped page, to 2^64
    ])
    func aRangeDropsExactlyTheLeavesInsideIt(_ gpa: UInt64, _ size: UInt64, _ dropsTheMapping: Bool) throws {
        let run = try ShadowRun(Self.guest)
        run.run(upTo: "mapped")
        #expect(run.leafSPTE(0x1000)?.isShadowPresent == true)
        run.mmu.invalidateRange(gpa, size: size)
        #expect((run.leafSPTE(0x1000)?.isShadowPresent != true) == dropsTheMapping, "invalidate \(gpa.hex) \(size.hex)")
        run.expectClean()
    }
}
