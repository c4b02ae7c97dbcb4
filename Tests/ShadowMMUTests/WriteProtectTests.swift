import MMUEncoding
@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

/// CR0.WP=0 under shadow paging: the hardware keeps WP=1, and KVM maps a
/// supervisor write to a read-only page writable but supervisor-only.
@Suite("CR0.WP toggling")
struct WriteProtectTests {
    static let scenario = """
        machine memory=16M
        poke 0x1000 0x2001
        poke 0x2000 0x3007
        poke 0x3008 0x100005                # linear 0x1000: user, read-only
        poke 0x3010 0x101001                # linear 0x2000: supervisor, read-only
        cr4 0x20
        cr3 0x1000
        cr0 0x80000001                      # PG PE, WP=0
        write 0x1000 value=0x11 width=1
        expect ok gpa=0x100000
        # @wp0-user
        write 0x2000 value=0x22 width=1
        expect ok gpa=0x101000
        # @wp0-supervisor
        read 0x1000 user
        expect ok gpa=0x100000 value=0x11
        # @wp0-user-read
        write 0x1000 user
        expect fault ec=0x7
        cr0 0x80010001                      # WP=1
        write 0x1000 value=0x12 width=1
        expect fault ec=0x3
        write 0x2000 value=0x23 width=1
        expect fault ec=0x3
        read 0x1000 user
        expect ok gpa=0x100000 value=0x11
        cr0 0x80000001                      # WP=0
        write 0x2000 value=0x33 width=1
        expect ok gpa=0x101000
        read 0x2000
        expect ok gpa=0x101000 value=0x33
        cr0 0x80010001                      # WP=1
        write 0x2000 value=0x34 width=1
        expect fault ec=0x3
        read 0x2000
        expect ok gpa=0x101000 value=0x33
        cr0 0x80000001                      # WP=0
        write 0x1000 value=0x44 width=1
        expect ok gpa=0x100000
        read 0x1000 user
        expect ok gpa=0x100000 value=0x44
        cr0 0x80010001                      # WP=1
        write 0x1000 value=0x45 width=1
        expect fault ec=0x3
        peek 0x3008
        peek 0x3010
        """

    @Test("Supervisor writes to read-only pages: allowed with WP=0, #PF 0x3 with WP=1, across toggles; same as native",
          arguments: bothHosts)
    func toggledWriteProtectMatchesReference(host: HostKind) throws {
        let reference = try referenceRun(Self.scenario)
        #expect(reference.failures.isEmpty, "\(reference.failures.map(\.description))")
        let run = try ShadowRun(Self.scenario, host: host)
        run.runToEnd()
        run.expectClean()
        #expect(run.printed == reference.printed)
    }

    @Test("The spte built for a WP=0 supervisor write is writable and supervisor-only", arguments: bothHosts)
    func writeProtectOffSPTEIsSupervisorWritable(host: HostKind) throws {
        let run = try ShadowRun(Self.scenario, host: host)
        run.run(upTo: "wp0-user")
        let userPage = try #require(run.leafSPTE(0x1000))
        #expect(userPage.isWritable && userPage.rawValue & SPTE.user == 0, "user read-only page after a WP=0 write: \(userPage)")
        let root = try #require(run.root())
        #expect(!root.role.cr0WP)
        run.run(upTo: "wp0-supervisor")
        let supervisorPage = try #require(run.leafSPTE(0x2000))
        #expect(supervisorPage.isWritable && supervisorPage.rawValue & SPTE.user == 0, "supervisor read-only page: \(supervisorPage)")
        // A user read afterwards gets the page back as user, read-only.
        run.run(upTo: "wp0-user-read")
        let userAgain = try #require(run.leafSPTE(0x1000))
        #expect(!userAgain.isWritable && userAgain.rawValue & SPTE.user != 0, "after a user read: \(userAgain)")
        run.expectClean()  // the toggles that follow are the other test's subject
    }
}
