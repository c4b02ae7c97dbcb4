@testable import ShadowMMU
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import TestSupport
import Testing
import X86Paging

/// The accessed and dirty flags the guest finds in its own tables under
/// shadow paging are exactly those the reference walker sets.
@Suite("Guest accessed/dirty flags")
struct AccessedDirtyTests {
    /// `PEEK` lines expand to a peek of every entry the scenario uses.
    static func expand(_ text: String, entries: [UInt64], width: Int) -> String {
        let peeks = entries.map { "peek \($0.hex) width=\(width)" }.joined(separator: "\n")
        return text.replacingOccurrences(of: "PEEK", with: peeks)
    }

    static let pae = expand("""
        machine memory=16M
        poke 0x1000 0x2001                  # PDPTE[0] -> PD 0x2000
        poke 0x2000 0x3007                  # PDE[0] -> PT 0x3000
        poke 0x2008 0x400087                # PDE[1]: 2 MiB RW US at 0x400000
        poke 0x2010 0x600085                # PDE[2]: 2 MiB read-only US at 0x600000
        poke 0x3008 0x100007                # PTE[1] RW US
        poke 0x3010 0x101007                # PTE[2] RW US
        poke 0x3018 0x102005                # PTE[3] read-only US
        poke 0x3020 0x103067                # PTE[4] already A D
        poke 0x3028 0x104027                # PTE[5] A, clean
        cr4 0x20
        cr3 0x1000
        cr0 0x80010001
        read 0x1000
        write 0x2000 value=0x1 width=1
        read 0x5000                         # a clean page: mapped read-only ...
        PEEK
        write 0x5000 value=0x2 width=1      # ... so the write faults and sets D
        read 0x3000
        write 0x3000 user
        expect fault ec=0x7
        write 0x3000
        expect fault ec=0x3
        read 0x4000
        write 0x4000 value=0x3 width=1
        read 0x200010
        PEEK
        write 0x200010 value=0x4 width=1
        read 0x400010
        write 0x400010 user
        expect fault ec=0x7
        PEEK
        store 0x3008 0x100007               # the guest clears A in PTE[1] ...
        invlpg 0x1000
        read 0x1000                         # ... and the next access sets it again
        store 0x3010 0x101027               # clears D in PTE[2]
        invlpg 0x2000
        read 0x2000                         # a read leaves D clear ...
        PEEK
        write 0x2000 value=0x5 width=1      # ... a write sets it
        store 0x2000 0x3007                 # clears A in the PDE (a write-tracked table)
        invlpg 0x1000
        read 0x1000
        store 0x2008 0x400087               # clears A and D in the 2 MiB PDE
        invlpg 0x200000
        read 0x200010
        PEEK
        write 0x200010 value=0x6 width=1
        store 0x3020 0x103027               # clears D in PTE[4], invalidated by a full flush
        flush
        write 0x4000 value=0x7 width=1
        store 0x3028 0x104007               # clears A in PTE[5], invalidated by a CR3 load
        cr3 0x1000
        read 0x5000
        PEEK
        """, entries: [0x1000, 0x2000, 0x2008, 0x2010, 0x3008, 0x3010, 0x3018, 0x3020, 0x3028], width: 8)

    static let bits32 = expand("""
        machine memory=16M
        poke 0x1000 0x2007 width=4          # PDE[0] -> PT 0x2000
        poke 0x1004 0x400087 width=4        # PDE[1]: 4 MiB RW US at 0x400000
        poke 0x1400 0x2007 width=4          # PDE[256] -> the same PT (GiB 1)
        poke 0x2004 0x100007 width=4        # PTE[1] RW US
        poke 0x2008 0x101007 width=4        # PTE[2] RW US
        poke 0x200c 0x102005 width=4        # PTE[3] read-only
        poke 0x2014 0x104027 width=4        # PTE[5] A, clean
        cr4 0x10
        cr3 0x1000
        cr0 0x80010001
        read 0x1000
        read 0x40002000
        write 0x2000 value=0x1 width=1
        read 0x5000
        PEEK
        write 0x40005000 value=0x2 width=1
        read 0x3000 user
        write 0x3000
        expect fault ec=0x3
        read 0x400010
        PEEK
        write 0x600010 value=0x3 width=1
        store 0x2004 0x100007 width=4       # clear A in PTE[1]
        invlpg 0x1000
        read 0x40001000                     # the other GiB's alias of the same PTE
        store 0x2008 0x101027 width=4       # clear D in PTE[2]
        invlpg 0x2000
        read 0x2000
        PEEK
        write 0x2000 value=0x4 width=1
        store 0x1004 0x400087 width=4       # clear A and D in the 4 MiB PDE
        invlpg 0x400000
        read 0x400010
        PEEK
        write 0x400010 value=0x5 width=1
        store 0x1400 0x2007 width=4         # clear A in PDE[256]
        cr3 0x1000
        read 0x40003000
        PEEK
        """, entries: [0x1000, 0x1004, 0x1400, 0x2004, 0x2008, 0x200c, 0x2014], width: 4)

    @Test("Same peeks of every guest table entry under mmu native and mmu shadow",
          arguments: bothHosts, ["pae", "32-bit"])
    func accessedDirtyMatchReference(host: HostKind, guest: String) throws {
        let text = guest == "pae" ? Self.pae : Self.bits32
        let reference = try referenceRun(text, name: "\(guest)-ad.scenario")
        #expect(reference.failures.isEmpty, "\(reference.failures.map(\.description))")
        let run = try ShadowRun(text, host: host, name: "\(guest)-ad.scenario")
        run.runToEnd()
        run.expectClean()
        #expect(run.printed.count == reference.printed.count)
        for (index, (native, shadow)) in zip(reference.printed, run.printed).enumerated() where native != shadow {
            Issue.record("\(guest) under \(host), output \(index): native \(native)\n  shadow \(shadow)")
        }
        // The scenario does exercise A/D: at the end the written PTE has D set again, the read-only one only A.
        let (written, readOnly): (UInt64, UInt64) = guest == "pae" ? (0x3010, 0x3018) : (0x2008, 0x200c)
        let last = { (address: UInt64) in reference.printed.last { $0.contains("\"addr\":\"\(address.hex)\"") } ?? "" }
        #expect(last(written).hasSuffix("\"value\":\"0x101067\"}"), "\(last(written))")
        #expect(last(readOnly).hasSuffix("\"value\":\"0x102025\"}"), "\(last(readOnly))")
    }
}
