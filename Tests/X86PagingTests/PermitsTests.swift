import Testing
import X86Paging

/// `ControlRegisters.permits` is the TLB-hit path's verdict: it must be
/// exactly "`permissionViolations` is empty", on every combination of the
/// rights, the key, the access and every register bit the rules read.
@Suite("Permission verdict")
struct PermitsTests {
    @Test("permits agrees with permissionViolations on every combination")
    func permitsAgreesWithViolations() {
        var combinations = 0
        for bits in 0..<(1 << 6) {
            let bit = { (n: Int) in bits & 1 << n != 0 }
            var cr4: UInt64 = 0x20  // PAE
            if bit(0) { cr4 |= 1 << 20 }  // SMEP
            if bit(1) { cr4 |= 1 << 21 }  // SMAP
            if bit(2) { cr4 |= 1 << 22 }  // PKE
            let cr0: UInt64 = 0x8000_0001 | (bit(3) ? 1 << 16 : 0)  // WP
            let efer: UInt64 = bit(4) ? 0xd00 : 0x800  // LMA (and LME) or not; NXE
            for pkru: UInt32 in [0, 1 << 10, 2 << 10, 3 << 10] {  // key 5: none, AD, WD, both
                let registers = ControlRegisters(
                    model: CPUModel(), cr0: CR0(rawValue: cr0), cr3: 0, cr4: CR4(rawValue: cr4), efer: EFER(rawValue: efer),
                    pkru: PKRU(rawValue: pkru), alignmentCheck: bit(5))
                for rightsBits in 0..<8 {
                    let rights = EffectiveRights(user: rightsBits & 1 != 0, writable: rightsBits & 2 != 0, executeDisable: rightsBits & 4 != 0)
                    for key in [0, 5] {
                        for kind in [MemoryAccess.Kind.read, .write, .fetch] {
                            for mode in MemoryAccess.Mode.allCases {
                                let access = MemoryAccess(kind, mode)
                                let expected = registers.permissionViolations(rights, protectionKey: key, access).isEmpty
                                #expect(registers.permits(rights, protectionKey: key, access) == expected,
                                        "cr0 \(cr0) cr4 \(cr4) efer \(efer) pkru \(pkru) ac \(bit(5)) rights \(rights) key \(key) \(kind) \(mode)")
                                combinations += 1
                            }
                        }
                    }
                }
            }
        }
        #expect(combinations == 64 * 4 * 8 * 2 * 3 * MemoryAccess.Mode.allCases.count)
    }
}
