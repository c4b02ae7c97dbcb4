import Testing
import X86Paging

// In the spirit of kvm-unit-tests x86/access.c: every combination of leaf and
// parent flags, access kind and mode, and control bits, walked by `Walker`
// and compared with `ExpectedAccessModel` — the result (physical address and
// page size, or the exact #PF error code) and the A/D bits left in every
// paging-structure entry afterwards.
//
// One test case per (paging mode, control-bit combination); inside it the
// entry flags and the nine accesses are enumerated, rewriting only the
// handful of entries on the path between walks.

/// One argument of the enumeration: a paging mode and its control bits.
struct EnumerationCase: Sendable, CustomTestStringConvertible {
    var paging: AccessCombination.Paging
    var controls: AccessCombination.Controls

    var testDescription: String { "\(paging) \(controls)" }

    /// Every control combination that means something in `paging`: SMAP off,
    /// on with AC=0, on with AC=1; PKE off or on with the four PKRU AD/WD
    /// values of the leaf's key (4/5-level), or PKE on without effect
    /// (32-bit/PAE, where keys need long mode).
    static func all(_ paging: AccessCombination.Paging) -> [EnumerationCase] {
        let longMode = paging == .level4 || paging == .level5
        var keyOptions: [(Bool, Bool, Bool)] = [(false, false, false), (true, false, false)]
        if longMode { keyOptions += [(true, true, false), (true, false, true), (true, true, true)] }
        let smapOptions: [(Bool, Bool)] = [(false, false), (true, false), (true, true)]
        var cases: [EnumerationCase] = []
        for wp in [false, true] {
            for smep in [false, true] {
                for (smap, ac) in smapOptions {
                    for (pke, ad, wd) in keyOptions {
                        for nxe in [false, true] {
                            let controls = AccessCombination.Controls(
                                wp: wp, smep: smep, smap: smap, ac: ac, pke: pke, pkruAD: ad, pkruWD: wd, nxe: nxe)
                            cases.append(EnumerationCase(paging: paging, controls: controls))
                        }
                    }
                }
            }
        }
        return cases
    }

    static let everyMode: [EnumerationCase] = AccessCombination.Paging.allCases.flatMap(all)
}

/// How the enumeration lays out one (mode, PDE.PS) pair.
private struct PathShape {
    let paging: AccessCombination.Paging
    let huge: Bool

    var mode: PagingMode { paging.pagingMode }
    var longMode: Bool { mode.isLongMode }
    var hasXD: Bool { ExpectedAccessModel.formatHasXD(paging) }
    var large: Bool { huge && paging != .bits32 }
    var leafLevel: Int { large ? 2 : 1 }
    var parentKind: ExpectedAccessModel.ParentKind {
        if !large { return .entry }
        if paging == .bits32PSE { return .none }
        if paging == .pae { return .pdpteRegister }
        return .entry
    }

    var pageBase: UInt64 {
        if !large { return Layout.page4K }
        return paging == .bits32PSE ? Layout.page4M : Layout.page2M
    }

    /// The one reserved bit the enumeration may set in the leaf (§4 of the
    /// semantics reference, MAXPHYADDR 46, NXE either way): none exists in a
    /// 32-bit PTE; bit 21 of a 4 MiB PDE; bit 62 of a PAE PTE (reserved in
    /// PAE only); bit 13 of a 2 MiB PDE; bit 51 of a 4/5-level PTE.
    var reservedBit: UInt64? {
        switch paging {
        case .bits32: return nil
        case .bits32PSE: return large ? 1 << 21 : nil
        case .pae: return large ? 1 << 13 : 1 << 62
        case .level4, .level5: return large ? 1 << 13 : 1 << 51
        }
    }

    var leafFlagCount: Int { hasXD ? 6 : 5 }
    var parentFlagCount: Int {
        switch parentKind {
        case .entry: hasXD ? 4 : 3
        case .pdpteRegister: 1
        case .none: 0
        }
    }

    /// Levels whose entries the loop writes (PAE PDPTEs are registers).
    var memoryLevels: [Int] {
        Array(stride(from: mode.levels, through: leafLevel, by: -1)).filter { !(paging == .pae && $0 == 3) }
    }

    /// Combinations per control case for this shape.
    var combinations: Int {
        (1 << leafFlagCount) * (reservedBit == nil ? 1 : 2) * (1 << parentFlagCount) * allAccesses.count
    }
}

/// PKRU: the leaf uses key 1 and the non-leaf entries key 2, whose AD and WD
/// are always set (keys outside the leaf must be ignored). Without an active
/// PKE every bit is set, so a walker that consulted PKRU anyway would fault.
private func pkruValue(_ c: AccessCombination.Controls, longMode: Bool) -> UInt32 {
    guard c.pke, longMode else { return 0xffff_ffff }
    return 0x30 | (c.pkruAD ? 1 << 2 : 0) | (c.pkruWD ? 1 << 3 : 0)
}

@Suite("Access enumeration (access.c style)")
struct AccessEnumerationTests {
    static let model = CPUModel(maxPhysicalAddressBits: 46)

    @Test("walker agrees with the expected model on every flag combination", arguments: EnumerationCase.everyMode)
    func everyCombination(_ testCase: EnumerationCase) throws {
        let paging = testCase.paging
        let controls = testCase.controls
        let mode = paging.pagingMode
        let memory = makeMemory()
        let builder = PageTableBuilder(mode: mode, memory: memory)
        let longMode = mode.isLongMode

        var setup = builder.setup()
        setup.pse = paging == .bits32PSE
        setup.wp = controls.wp
        setup.smep = controls.smep
        setup.smap = controls.smap
        setup.pke = controls.pke
        setup.nxe = controls.nxe
        setup.pkru = pkruValue(controls, longMode: longMode)

        // PAE: latch a PDPTE register with P=0 for the large-page parent, then
        // the present one used everywhere else.
        var registersWithoutPDPTE: ControlRegisters?
        if mode == .pae {
            builder.setEntry(level: 3, builder.table(level: 2))
            var absent = try setup.registers(model: Self.model, memory: memory)
            absent.alignmentCheck = controls.ac
            registersWithoutPDPTE = absent
        }
        builder.linkDown(to: 1)
        let pdptInMemory = mode == .pae ? builder.entry(level: 3) : 0
        var registers = try setup.registers(model: Self.model, memory: memory)
        registers.alignmentCheck = controls.ac

        var checked = 0
        var expectedChecks = 0
        var mismatches = 0
        func report(_ text: @autoclosure () -> String) {
            mismatches += 1
            if mismatches <= 12 { Issue.record(Comment(rawValue: text())) }
        }

        for huge in [false, true] {
            let shape = PathShape(paging: paging, huge: huge)
            expectedChecks += shape.combinations
            let levels = shape.memoryLevels
            let addresses = levels.map { builder.entryAddress(level: $0) }
            let width = builder.entrySize
            var initial = [UInt64](repeating: 0, count: levels.count)
            let keyBits: UInt64 = longMode ? Entry.key(2) : 0

            for leafBits in 0..<(1 << shape.leafFlagCount) {
                var leaf = AccessCombination.Leaf()
                leaf.present = leafBits & 1 != 0
                leaf.writable = leafBits & 2 != 0
                leaf.user = leafBits & 4 != 0
                leaf.accessed = leafBits & 8 != 0
                leaf.dirty = leafBits & 16 != 0
                leaf.xd = leafBits & 32 != 0
                for reserved in shape.reservedBit == nil ? [false] : [false, true] {
                    leaf.reservedBit = reserved
                    for parentBits in 0..<(1 << shape.parentFlagCount) {
                        var parent = AccessCombination.Parent()
                        switch shape.parentKind {
                        case .entry:
                            parent.present = parentBits & 1 != 0
                            parent.writable = parentBits & 2 != 0
                            parent.user = parentBits & 4 != 0
                            parent.xd = parentBits & 8 != 0
                        case .pdpteRegister:
                            parent.present = parentBits & 1 != 0
                        case .none:
                            break
                        }

                        // Encode the entries.
                        for (slot, level) in levels.enumerated() {
                            var value: UInt64
                            if level == shape.leafLevel {
                                value = shape.pageBase
                                if leaf.present { value |= Entry.p }
                                if leaf.writable { value |= Entry.rw }
                                if leaf.user { value |= Entry.us }
                                if leaf.accessed { value |= Entry.a }
                                if leaf.dirty { value |= Entry.d }
                                if leaf.xd { value |= Entry.xd }
                                if reserved { value |= shape.reservedBit! }
                                if shape.large { value |= Entry.ps }
                                if longMode { value |= Entry.key(1) }
                            } else if level == shape.leafLevel + 1 {
                                value = builder.table(level: level - 1) | keyBits
                                if parent.present { value |= Entry.p }
                                if parent.writable { value |= Entry.rw }
                                if parent.user { value |= Entry.us }
                                if parent.xd { value |= Entry.xd }
                                if huge && !shape.large { value |= Entry.ps } // ignored: CR4.PSE=0
                            } else {
                                value = builder.table(level: level - 1) | Entry.p | Entry.rw | Entry.us | keyBits
                            }
                            initial[slot] = value
                        }
                        let walkRegisters = shape.parentKind == .pdpteRegister && !parent.present ? registersWithoutPDPTE! : registers

                        for access in allAccesses {
                            let combination = AccessCombination(
                                paging: paging, controls: controls, huge: huge, parent: parent, leaf: leaf,
                                access: access, gva: builder.gva, pageBase: shape.pageBase)
                            for slot in 0..<levels.count { memory.store(addresses[slot], width: width, initial[slot]) }
                            let result = Walker.walk(builder.gva, access, registers: walkRegisters, memory: memory)
                            let expected = ExpectedAccessModel.evaluate(combination)
                            checked += 1

                            let agrees: Bool
                            switch (result, expected.outcome) {
                            case (.translated(let t), .translated(let pa, let shift)):
                                agrees = t.physicalAddress == pa && t.pageShift == shift
                            case (.pageFault(let code), .pageFault(let expectedCode)):
                                agrees = code.rawValue == expectedCode
                            default:
                                agrees = false
                            }
                            if !agrees {
                                report("\(combination): walker \(result.summary), expected \(expected.outcome)")
                                continue
                            }
                            for slot in 0..<levels.count {
                                var want = initial[slot]
                                if expected.setsAccessed { want |= Entry.a }
                                if expected.setsDirty && levels[slot] == shape.leafLevel { want |= Entry.d }
                                let got = memory.load(addresses[slot], width: width)
                                if got != want {
                                    report("\(combination): level-\(levels[slot]) entry after the walk is \(hex(got)), expected \(hex(want)) (before \(hex(initial[slot])))")
                                }
                            }
                        }
                    }
                }
            }
        }
        if mode == .pae {
            #expect(builder.entry(level: 3) == pdptInMemory, "\(testCase.testDescription): the in-memory PDPTE was written; PDPTE registers have no A flag")
        }
        #expect(checked == expectedChecks, "\(testCase.testDescription): enumerated \(checked) combinations, expected \(expectedChecks)")
        #expect(mismatches == 0, "\(testCase.testDescription): \(mismatches) of \(checked) combinations disagree (first 12 recorded above)")
    }

    /// The size of the enumeration, per mode, so that a change in the loops
    /// that drops combinations shows up.
    @Test("enumeration size per mode", arguments: AccessCombination.Paging.allCases)
    func enumerationSize(_ paging: AccessCombination.Paging) {
        let perCase = [false, true].map { PathShape(paging: paging, huge: $0).combinations }.reduce(0, +)
        let cases = EnumerationCase.all(paging).count
        let expected: [AccessCombination.Paging: Int] = [
            // (2^5 leaf · 2^3 parent · 9) + (2^5 · 2^3 · 9), PS ignored; × WP·SMEP·SMAP/AC(3)·PKE(2)·NXE
            .bits32: (2304 + 2304) * 48,
            // 4 KiB: 2^5 · 2^3 · 9; 4 MiB: 2^5 · 2 rsvd · 9
            .bits32PSE: (2304 + 576) * 48,
            // 4 KiB: 2^6 · 2 · 2^4 · 9; 2 MiB: 2^6 · 2 · 2 (PDPTE.P) · 9
            .pae: (18432 + 2304) * 48,
            // 2^6 · 2 · 2^4 · 9 twice; × WP·SMEP·SMAP/AC(3)·PKE/AD/WD(5)·NXE
            .level4: (18432 + 18432) * 120,
            .level5: (18432 + 18432) * 120,
        ]
        #expect(perCase * cases == expected[paging], "\(paging): \(perCase) per control case × \(cases) control cases")
    }
}
