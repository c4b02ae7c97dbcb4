import Testing
import X86Paging

// The TLB of ArchitecturalCPU: cached translations are used until INVLPG,
// MOV CR3 (non-global, per PCID) or a full flush; every hit is judged against
// the registers of the moment; a write through an entry cached with D=0 walks
// again. (SDM Vol. 3A §4.10.)

/// One CPU over one guest mapping `gva` → `pageA`, with a second page to
/// repoint the mapping to.
private final class TLBFixture {
    static let pageA: UInt64 = 0x0345_6000
    static let pageB: UInt64 = 0x0789_a000

    let memory = makeMemory()
    let builder: PageTableBuilder
    let cpu: ArchitecturalCPU
    var gva: UInt64 { builder.gva }

    init(mode: PagingMode = .level4, leafFlags: UInt64 = Entry.p | Entry.rw | Entry.us | Entry.a | Entry.d,
         configure: (inout RegisterSetup) -> Void = { _ in }) throws {
        builder = PageTableBuilder(mode: mode, memory: memory)
        builder.map4K(frame: Self.pageA, leafFlags: leafFlags)
        var setup = builder.setup()
        configure(&setup)
        cpu = try setup.cpu(memory: memory)
    }

    func translate(_ address: UInt64? = nil, _ access: MemoryAccess = .read) -> AccessTranslation {
        cpu.translate(address ?? gva, access, memory: memory)
    }

    func pa(_ page: UInt64, _ address: UInt64? = nil) -> AccessTranslation {
        .physical(page | (address ?? gva) & 0xfff)
    }

    /// Repoints the PTE in memory, without telling the TLB.
    func repoint(to page: UInt64, flags: UInt64 = Entry.p | Entry.rw | Entry.us) {
        builder.setEntry(level: 1, page | flags)
    }

    func write(_ register: ControlRegister, _ value: UInt64) -> RegisterWriteResult {
        cpu.write(register, value, memory: memory)
    }
}

/// An operation that must make the CPU forget a non-global translation of `gva`.
struct Invalidation: Sendable, CustomTestStringConvertible {
    var name: String
    var mode: PagingMode
    var testDescription: String { "\(mode) \(name)" }

    static let names = ["INVLPG of the address", "INVLPG of another byte of the page", "MOV CR3 (same value)", "flush", "CR4.PGE toggle"]
    static let all: [Invalidation] = [PagingMode.bits32, .pae, .level4, .level5].flatMap { mode in names.map { Invalidation(name: $0, mode: mode) } }
}

@Suite("TLB (ArchitecturalCPU)")
struct TLBTests {
    @Test("a changed PTE is not seen until the invalidation, then exactly", arguments: Invalidation.all)
    func staleUntilInvalidated(_ inv: Invalidation) throws {
        let f = try TLBFixture(mode: inv.mode)
        let what = inv.testDescription
        #expect(f.translate() == f.pa(TLBFixture.pageA), "\(what): first translation")
        f.repoint(to: TLBFixture.pageB)
        let walks = f.cpu.walks
        #expect(f.translate() == f.pa(TLBFixture.pageA), "\(what): the changed PTE was seen without invalidation")
        #expect(f.translate(nil, .write) == f.pa(TLBFixture.pageA), "\(what): a write through the cached (dirty) entry re-walked")
        #expect(f.cpu.walks == walks, "\(what): TLB hits walked")
        // An INVLPG of another page leaves this translation (this TLB never
        // drops more than it must, which keeps the test meaningful).
        f.cpu.invalidatePage(f.gva ^ 0x40_0000)
        #expect(f.translate() == f.pa(TLBFixture.pageA), "\(what): INVLPG of another page invalidated this one")

        switch inv.name {
        case Invalidation.names[0]: f.cpu.invalidatePage(f.gva)
        case Invalidation.names[1]: f.cpu.invalidatePage(f.gva ^ 0xfff)
        case Invalidation.names[2]: #expect(f.write(.cr3, f.builder.cr3).isAccepted)
        case Invalidation.names[3]: f.cpu.flush()
        default:
            let cr4 = f.cpu.registers.cr4.rawValue
            #expect(f.write(.cr4, cr4 | Bit.cr4PGE).isAccepted)
        }
        #expect(f.translate() == f.pa(TLBFixture.pageB), "\(what): the new PTE is not seen after the invalidation")
        #expect(f.cpu.walks == walks + 1, "\(what): expected exactly one walk after the invalidation, got \(f.cpu.walks - walks)")
        #expect(f.builder.entry(level: 1) & Entry.a != 0, "\(what): the walk after the invalidation did not set A")
    }

    @Test("global pages survive MOV CR3 with CR4.PGE; not flush, INVLPG or a PGE toggle", arguments: ["flush", "INVLPG", "CR4.PGE toggle"])
    func globalPages(_ killer: String) throws {
        let flags = Entry.p | Entry.rw | Entry.us | Entry.a | Entry.d | Entry.g
        let f = try TLBFixture(leafFlags: flags) { $0.pge = true }
        #expect(f.translate() == f.pa(TLBFixture.pageA))
        f.repoint(to: TLBFixture.pageB, flags: flags)
        #expect(f.write(.cr3, f.builder.cr3).isAccepted)
        #expect(f.translate() == f.pa(TLBFixture.pageA), "global entry lost on MOV CR3 with PGE=1")
        switch killer {
        case "flush": f.cpu.flush()
        case "INVLPG": f.cpu.invalidatePage(f.gva)
        default:
            let cr4 = f.cpu.registers.cr4.rawValue
            #expect(f.write(.cr4, cr4 & ~Bit.cr4PGE).isAccepted)
        }
        #expect(f.translate() == f.pa(TLBFixture.pageB), "global entry survived \(killer)")
    }

    @Test("without CR4.PGE the G bit is ignored: MOV CR3 drops the translation")
    func globalBitWithoutPGE() throws {
        let flags = Entry.p | Entry.rw | Entry.us | Entry.a | Entry.d | Entry.g
        let f = try TLBFixture(leafFlags: flags)
        #expect(f.translate() == f.pa(TLBFixture.pageA))
        f.repoint(to: TLBFixture.pageB, flags: flags)
        #expect(f.write(.cr3, f.builder.cr3).isAccepted)
        #expect(f.translate() == f.pa(TLBFixture.pageB), "G=1 with PGE=0 survived MOV CR3")
    }

    /// One control whose current value a TLB hit must honour.
    struct Recheck: Sendable, CustomTestStringConvertible {
        var name: String
        var access: MemoryAccess
        var testDescription: String { name }
        static let all = [
            Recheck(name: "CR0.WP (supervisor write, read-only user page)", access: .write),
            Recheck(name: "EFLAGS.AC with SMAP (supervisor read, user page)", access: .read),
            Recheck(name: "PKRU.AD (user read, key 1)", access: MemoryAccess(.read, .user)),
            Recheck(name: "PKRU.WD with WP=1 (supervisor write, key 1)", access: .write),
        ]
    }

    @Test("a TLB hit is judged against the current WP, SMAP/AC and PKRU", arguments: Recheck.all)
    func permissionsRecheckedOnHit(_ r: Recheck) throws {
        let readOnly = r.name.hasPrefix("CR0.WP")
        let leafFlags = Entry.p | Entry.us | Entry.a | Entry.d | (readOnly ? 0 : Entry.rw) | Entry.key(1)
        let f = try TLBFixture(leafFlags: leafFlags) { setup in
            setup.smap = r.name.contains("SMAP")
            setup.pke = r.name.contains("PKRU")
            setup.wp = r.name.contains("WP=1")
        }
        if r.name.contains("SMAP") { f.cpu.setAlignmentCheck(true) }
        // Permissive: the access succeeds and is cached.
        #expect(f.translate(nil, r.access) == f.pa(TLBFixture.pageA), "\(r.name): permissive state")
        // Make any walk fail (PTE not present) without telling the TLB.
        f.builder.setEntry(level: 1, 0)
        let walks = f.cpu.walks
        #expect(f.translate(nil, r.access) == f.pa(TLBFixture.pageA), "\(r.name): the cached translation was not used")
        #expect(f.cpu.walks == walks)
        // Restrictive, without any invalidation.
        var effects: RegisterWriteResult = .accepted([])
        switch r.name {
        case _ where r.name.hasPrefix("CR0.WP"): effects = f.write(.cr0, f.cpu.registers.cr0.rawValue | Bit.cr0WP)
        case _ where r.name.contains("SMAP"): f.cpu.setAlignmentCheck(false)
        case _ where r.name.contains("AD"): effects = f.write(.pkru, 1 << 2)
        default: effects = f.write(.pkru, 1 << 3)
        }
        #expect(effects == .accepted([]), "\(r.name): the restricting write had effects \(effects)")
        let result = f.translate(nil, r.access)
        guard case .pageFault(let code) = result else {
            Issue.record("\(r.name): the cached translation allowed an access the current registers forbid: \(result)")
            return
        }
        // Either the cached rights are reported (P=1) or the CPU walked again
        // and found the PTE gone (P=0); W and U follow the access either way.
        #expect(code.rawValue & (PFEC.w | PFEC.u) == (r.access.kind == .write ? PFEC.w : 0) | (r.access.mode == .user ? PFEC.u : 0), "\(r.name): \(code)")
    }

    @Test("a write through an entry cached with D=0 walks again and sets D", arguments: [PagingMode.bits32, .pae, .level4, .level5])
    func writeThroughCleanEntry(mode: PagingMode) throws {
        let f = try TLBFixture(mode: mode, leafFlags: Entry.p | Entry.rw | Entry.us)
        #expect(f.translate() == f.pa(TLBFixture.pageA))
        #expect(f.builder.entry(level: 1) & (Entry.a | Entry.d) == Entry.a, "\(mode): read set D")
        let walks = f.cpu.walks
        #expect(f.translate() == f.pa(TLBFixture.pageA))
        #expect(f.cpu.walks == walks, "\(mode): a read hit walked")
        #expect(f.translate(nil, .write) == f.pa(TLBFixture.pageA))
        #expect(f.cpu.walks == walks + 1, "\(mode): a write through a clean cached entry did not walk")
        #expect(f.builder.entry(level: 1) & Entry.d != 0, "\(mode): D not set by the write")
        #expect(f.translate(nil, .write) == f.pa(TLBFixture.pageA))
        #expect(f.cpu.walks == walks + 1, "\(mode): a write through a dirty cached entry walked")
    }

    @Test("PCID-tagged entries survive a CR3 switch with bit 63 set")
    func pcidTagged() throws {
        // Two address spaces: root 1 (the fixture's) maps gva → A, root 2
        // maps gva → B and gva+4K → B+4K.
        let f = try TLBFixture { $0.pcide = true }
        let space2 = PageTableBuilder(mode: .level4, memory: f.memory, tables: [0x0020_4000, 0x0020_3000, 0x0020_2000, 0x0020_1000])
        let flags = Entry.p | Entry.rw | Entry.us | Entry.a | Entry.d
        space2.map4K(frame: TLBFixture.pageB, leafFlags: flags)
        let neighbour = f.gva + 0x1000
        space2.setEntry(level: 1, TLBFixture.pageB + 0x1000 | flags, address: neighbour)
        let root1 = f.builder.cr3, root2 = space2.cr3
        let pageC: UInt64 = 0x0abc_d000

        #expect(f.write(.cr3, root1 | 1).isAccepted)
        #expect(f.translate() == f.pa(TLBFixture.pageA), "PCID 1")
        f.repoint(to: pageC)
        // PCID 2 touches another page only (this direct-mapped TLB keeps one
        // entry per linear page, whatever its PCID).
        #expect(f.write(.cr3, root2 | 2).isAccepted)
        #expect(f.translate(neighbour) == f.pa(TLBFixture.pageB + 0x1000, neighbour), "PCID 2")
        #expect(f.write(.cr3, 1 << 63 | root1 | 1).isAccepted)
        let walks = f.cpu.walks
        #expect(f.translate() == f.pa(TLBFixture.pageA), "PCID 1's entry did not survive the switches with bit 63 set")
        #expect(f.cpu.walks == walks)
        #expect(f.cpu.registers.cr3 == root1 | 1, "bit 63 was stored in CR3")
        // Tagging: under PCID 2 the same gva must not use PCID 1's entry.
        #expect(f.write(.cr3, 1 << 63 | root2 | 2).isAccepted)
        #expect(f.translate(neighbour) == f.pa(TLBFixture.pageB + 0x1000, neighbour), "PCID 2's entry")
        #expect(f.cpu.walks == walks, "PCID 2's entry was lost across the switches with bit 63 set")
        #expect(f.translate() == f.pa(TLBFixture.pageB), "PCID 2 used PCID 1's translation of the same gva")
        // Without bit 63 the new PCID's entries go.
        #expect(f.write(.cr3, 1 << 63 | root1 | 1).isAccepted)
        #expect(f.translate() == f.pa(pageC))
        f.repoint(to: TLBFixture.pageA)
        #expect(f.write(.cr3, 1 << 63 | root1 | 1).isAccepted)
        #expect(f.translate() == f.pa(pageC), "stale entry expected with bit 63")
        #expect(f.write(.cr3, root1 | 1).isAccepted)
        #expect(f.translate() == f.pa(TLBFixture.pageA), "MOV CR3 without bit 63 kept PCID 1's stale entry")
    }

    @Test("without CR4.PCIDE, MOV CR3 to another root drops the old translations")
    func noPCIDFlushes() throws {
        let f = try TLBFixture()
        #expect(f.translate() == f.pa(TLBFixture.pageA))
        f.repoint(to: TLBFixture.pageB)
        #expect(f.write(.cr3, f.builder.cr3 | 0x18).isAccepted) // PWT|PCD, not a PCID
        #expect(f.cpu.registers.pcid == 0)
        #expect(f.translate() == f.pa(TLBFixture.pageB))
    }

    struct LargeCase: Sendable, CustomTestStringConvertible {
        var name: String
        var mode: PagingMode
        var level: Int
        var pse = false
        var base: UInt64
        var newBase: UInt64
        var size: UInt64
        var testDescription: String { name }
        static let all = [
            LargeCase(name: "4-level 2 MiB", mode: .level4, level: 2, base: Layout.page2M, newBase: 0x0a00_0000, size: 1 << 21),
            LargeCase(name: "5-level 2 MiB", mode: .level5, level: 2, base: Layout.page2M, newBase: 0x0a00_0000, size: 1 << 21),
            LargeCase(name: "PAE 2 MiB", mode: .pae, level: 2, base: Layout.page2M, newBase: 0x0a00_0000, size: 1 << 21),
            LargeCase(name: "32-bit 4 MiB", mode: .bits32, level: 2, pse: true, base: Layout.page4M, newBase: 0x0a00_0000, size: 1 << 22),
            LargeCase(name: "4-level 1 GiB", mode: .level4, level: 3, base: Layout.page1G, newBase: 0x8000_0000, size: 1 << 30),
        ]
    }

    @Test("a large-page translation goes on INVLPG of any address inside the page", arguments: LargeCase.all)
    func largePageInvalidation(_ c: LargeCase) throws {
        let memory = makeMemory()
        let builder = PageTableBuilder(mode: c.mode, memory: memory)
        let flags = Entry.p | Entry.rw | Entry.us | Entry.a | Entry.d
        builder.mapLarge(level: c.level, base: c.base, leafFlags: flags)
        var setup = builder.setup()
        setup.pse = c.pse
        let cpu = try setup.cpu(memory: memory)
        let start = builder.gva & ~(c.size - 1)
        // Three 4 KiB pages of the large page: two translated, one invalidated.
        let first = start + 0x1234, second = start + c.size - 0x10, third = start + c.size / 2 + 0x3000
        for address in [first, second] {
            #expect(cpu.translate(address, .read, memory: memory) == .physical(c.base | address & (c.size - 1)), "\(c.name) \(hex(address))")
        }
        builder.setEntry(level: c.level, c.newBase | flags | Entry.ps)
        for address in [first, second] {
            #expect(cpu.translate(address, .read, memory: memory) == .physical(c.base | address & (c.size - 1)), "\(c.name): stale entry not used")
        }
        // Outside the large page: nothing changes.
        cpu.invalidatePage(start + c.size + 0x1000)
        #expect(cpu.translate(first, .read, memory: memory) == .physical(c.base | first & (c.size - 1)), "\(c.name): INVLPG outside invalidated")
        cpu.invalidatePage(third)
        for address in [first, second] {
            #expect(cpu.translate(address, .read, memory: memory) == .physical(c.newBase | address & (c.size - 1)),
                    "\(c.name): INVLPG \(hex(third)) left the translation of \(hex(address))")
        }
    }

    @Test("INVLPG of a non-canonical address neither faults nor invalidates")
    func invlpgNonCanonical() throws {
        let f = try TLBFixture()
        #expect(f.translate() == f.pa(TLBFixture.pageA))
        f.repoint(to: TLBFixture.pageB)
        f.cpu.invalidatePage(f.gva & 0x0000_ffff_ffff_ffff) // bits 63:48 cleared: non-canonical
        #expect(f.translate() == f.pa(TLBFixture.pageA))
    }

    @Test("switching paging mode forgets everything, global entries included")
    func modeChangeFlushes() throws {
        let global = Entry.p | Entry.rw | Entry.us | Entry.a | Entry.d | Entry.g
        let f = try TLBFixture(mode: .bits32, leafFlags: global) { $0.pge = true }
        #expect(f.translate() == f.pa(TLBFixture.pageA))
        // PAE tables for the same gva, mapping it elsewhere; MOV CR3 first
        // (a global entry survives that), then CR4.PAE (PGE unchanged).
        let pae = PageTableBuilder(mode: .pae, memory: f.memory, gva: f.gva, tables: [0x0030_3fe0, 0x0030_2000, 0x0030_1000])
        pae.map4K(frame: 0x0bcd_e000, leafFlags: global)
        #expect(f.write(.cr3, pae.cr3).isAccepted)
        #expect(f.translate() == f.pa(TLBFixture.pageA), "global 32-bit entry lost on MOV CR3")
        #expect(f.write(.cr4, Bit.cr4PGE | Bit.cr4PAE).isAccepted)
        #expect(f.cpu.registers.mode == .pae)
        #expect(f.translate() == .physical(0x0bcd_e000 | f.gva & 0xfff), "a 32-bit paging translation survived the switch to PAE paging")
    }
}
