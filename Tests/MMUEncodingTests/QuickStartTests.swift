import MMUEncoding
import Testing
import X86Paging

// The quick start of the MMUEncoding catalogue, compiled and run.
@Suite struct MMUEncodingQuickStart {
    @Test func aLeafAndAPAERootRole() {
        let spte = SPTE.leaf(frame: 0x1234, access: [.user, .write], writable: true, mmuWritable: true, protectionKey: 0)
        // spte.description == "0x1234000 P W U A D MW NX"

        let registers = ControlRegisters(
            model: CPUModel(), cr0: CR0(rawValue: 0x8000_0001), cr3: 0x1000, cr4: CR4(rawValue: 0x20), efer: EFER(rawValue: 0))
        let root = PageRole.shadowRoot(for: CPURole(registers))
        // root.level == 3 (a PAE root), root.eferNX == true (KVM forces it)

        #expect(spte.description == "0x1234000 P W U A D MW NX")
        #expect(root.level == 3 && root.eferNX)
    }
}
