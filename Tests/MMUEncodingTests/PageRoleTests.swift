import MMUEncoding
import Testing
import X86Paging

/// Page roles and access rights as values: each field of the role word is
/// independent of the others, and the roles KVM derives from the guest's
/// registers have the bits KVM gives them.
@Suite("Page roles")
struct PageRoleTests {
    @Test("setting one role field leaves every other field as it was")
    func fieldsAreIndependent() {
        var role = PageRole(rawValue: 0)
        role.level = 4
        role.access = .all
        role.quadrant = 3
        role.cr0WP = true
        #expect(role.level == 4 && role.access == .all && role.quadrant == 3 && role.cr0WP)
        role.quadrant = 1
        role.level = 2
        #expect(role.level == 2 && role.access == .all && role.quadrant == 1 && role.cr0WP && !role.direct && !role.invalid)
        #expect(role.description == "level=2 indirect access=uwx cr0_wp")
    }

    @Test("a PAE guest is shadowed by a 3-level root with EFER.NX forced, unless the deviation is fixed")
    func shadowRootOfPAEGuest() {
        let registers = ControlRegisters(
            model: CPUModel(), cr0: CR0(rawValue: 0x8000_0001), cr3: 0x1000, cr4: CR4(rawValue: 0x20), efer: EFER(rawValue: 0))
        let cpuRole = CPURole(registers)
        #expect(cpuRole.level == 3 && !cpuRole.base.hasFourByteGPTE && !cpuRole.base.eferNX)
        #expect(PageRole.shadowRoot(for: cpuRole).eferNX)
        #expect(!PageRole.shadowRoot(for: cpuRole, keepingGuestNX: true).eferNX)
    }

    @Test("the TDP root is direct with CR0.WP and EFER.NX set")
    func tdpRoot() {
        let role = PageRole.tdpRoot(levels: 5)
        #expect(role.level == 5 && role.direct && role.access == .all && role.cr0WP && role.eferNX)
    }

    @Test("a guest entry's rights: R/W, U/S and the inverse of XD; EPT reads stand for user")
    func accessRights() {
        #expect(AccessRights(guestEntry: 0x7, hasExecuteDisable: true) == .all)
        #expect(AccessRights(guestEntry: 1 << 63 | 0x5, hasExecuteDisable: true) == [.user])
        #expect(AccessRights(guestEntry: 1 << 63 | 0x1, hasExecuteDisable: false) == [.execute])
        #expect(AccessRights(eptEntry: 0x5) == [.user, .execute])
        #expect(AccessRights([.user, .write]).description == "uw-")
    }
}
