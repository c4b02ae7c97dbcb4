import MMUEncoding
import Testing
import X86Paging

/// Shadow PTEs as words: what each constructor sets, and what the
/// accessors read back, in the x86 and EPT formats.
@Suite("Shadow PTE encoding")
struct SPTETests {
    @Test("an x86 leaf carries its rights, the shadow-present marker and the frame")
    func x86Leaf() {
        let spte = SPTE.leaf(frame: 0x1234, access: [.user, .write], writable: true, mmuWritable: true, protectionKey: 0)
        #expect(spte.isShadowPresent && spte.isWritable && spte.frame == 0x1234 && !spte.isMMIO)
        #expect(spte.access == [.user, .write])
        #expect(spte.description == "0x1234000 P W U A D MW NX")
        #expect(spte.isLeaf(atLevel: 1) && !spte.isLeaf(atLevel: 2))
    }

    @Test("an EPT leaf reads 'user' as readable and keeps MMU-writable in a high ignored bit")
    func eptLeaf() {
        let spte = SPTE.leaf(frame: 0x10, access: [.user, .execute], writable: false, mmuWritable: true, protectionKey: 0, format: .ept)
        #expect(spte.rawValue & 0x7 == 0x5)
        #expect(spte.rawValue & SPTE.eptMMUWritable != 0 && spte.rawValue & SPTE.mmuWritable == 0)
        #expect(spte.access(.ept) == [.user, .execute])
    }

    @Test("an MMIO spte is not shadow-present and carries its gfn and generation")
    func mmio() {
        let spte = SPTE.mmio(gfn: 0xfee00, generation: 130)
        #expect(spte.isMMIO && !spte.isShadowPresent)
        #expect(spte.mmioGFN == 0xfee00 && spte.mmioGeneration == 130 & 0x7f)
    }

    @Test("a PAE root entry has only P, the address and the software present bit")
    func paeRootEntry() {
        let spte = SPTE.paeRootEntry(child: 0x42)
        #expect(spte.rawValue == 0x42 << 12 | SPTE.present | SPTE.shadowPresent)
    }
}
