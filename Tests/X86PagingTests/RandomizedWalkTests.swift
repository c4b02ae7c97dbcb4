import Testing
import X86Paging

// Randomized differential test: random paging mode, MAXPHYADDR, linear
// address, page size (4 KiB … 1 GiB), flags at *every* level (not only leaf
// and parent), random ignored bits, random protection key and PKRU, random
// control bits and access; the walker against `ExpectedAccessModel`.
// Deterministic (SplitMix64); a failure prints its seed and case number.

@Suite("Randomized walks")
struct RandomizedWalkTests {
    static let casesPerSeed = 40_000

    @Test("random walks agree with the expected model", arguments: [UInt64(0x5eed_0001), 0x5eed_0002, 0x5eed_0003, 0x5eed_0004])
    func randomWalks(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let memory = makeMemory()
        var mismatches = 0
        var successes = 0
        var faults = 0
        for caseNumber in 0..<Self.casesPerSeed {
            let description = try runCase(&rng, memory: memory) { ok in if ok { successes += 1 } else { faults += 1 } }
            if let description {
                mismatches += 1
                if mismatches <= 10 { Issue.record("seed \(hex(seed)) case \(caseNumber): \(description)") }
            }
        }
        #expect(mismatches == 0, "seed \(hex(seed)): \(mismatches) of \(Self.casesPerSeed) random walks disagree")
        // The generator must exercise both outcomes substantially.
        #expect(successes > Self.casesPerSeed / 10 && faults > Self.casesPerSeed / 10, "successes \(successes), faults \(faults)")
    }

    /// Runs one random case; returns a description of the disagreement, or nil.
    private func runCase(_ rng: inout SplitMix64, memory: SparseMemory, outcome: (Bool) -> Void) throws -> String? {
        func chance(_ p: Double) -> Bool { Double(rng.next() >> 11) / Double(1 << 53) < p }
        func pick<T>(_ items: [T]) -> T { items[Int(rng.next() % UInt64(items.count))] }

        let paging = pick(AccessCombination.Paging.allCases)
        let mode = paging.pagingMode
        let m = pick([36, 46, 52])
        let longMode = mode.isLongMode
        let hasXD = ExpectedAccessModel.formatHasXD(paging)

        var controls = AccessCombination.Controls()
        controls.wp = chance(0.5)
        controls.smep = chance(0.3)
        controls.smap = chance(0.3)
        controls.ac = chance(0.5)
        controls.pke = chance(0.4)
        controls.nxe = chance(0.6)
        let pkru = UInt32(truncatingIfNeeded: rng.next()) & (chance(0.5) ? 0 : 0xffff_ffff)

        // Linear address: random, canonical for the mode.
        var gva = rng.next()
        switch mode {
        case .level4: gva = UInt64(bitPattern: Int64(bitPattern: gva << 16) >> 16)
        case .level5: gva = UInt64(bitPattern: Int64(bitPattern: gva << 7) >> 7)
        default: gva &= 0xffff_ffff
        }
        let builder = PageTableBuilder(mode: mode, memory: memory, gva: gva)

        let leafLevel: Int = switch paging {
        case .bits32: 1
        case .bits32PSE, .pae: pick([1, 2])
        case .level4, .level5: pick([1, 1, 2, 3])
        }
        let pageShift = leafLevel == 1 ? 12 : leafLevel == 3 ? 30 : paging == .bits32PSE ? 22 : 21

        func kind(_ level: Int) -> SweptEntry {
            switch level {
            case 5: .pml5e
            case 4: .pml4e
            case 3: level == leafLevel ? .pdpte1G : .pdpteTable
            case 2: level == leafLevel ? .pde2M : .pdeTable
            default: .pte
            }
        }
        /// A random reserved bit of the entry at `level`, if it has any.
        func reservedBit(_ level: Int) -> UInt64? {
            let mask: UInt64
            if mode == .bits32 {
                mask = level == 2 && level == leafLevel ? ReservedBitTable.pde4M[m]! : 0
            } else {
                mask = ReservedBitTable.mask(kind(level), mode: mode, m: m, nxe: controls.nxe, vendor: .intel)
            }
            let candidates = (0..<64).filter { mask >> UInt64($0) & 1 != 0 }
            return candidates.isEmpty ? nil : 1 << UInt64(pick(candidates))
        }
        /// Bits the format ignores, set at random to prove they are ignored.
        func ignoredBits(leaf: Bool) -> UInt64 {
            var mask: UInt64 = 0xe00 | Entry.pwt | Entry.pcd
            if longMode { mask |= leaf ? bits(58, 52) : bits(62, 52) }
            if !leaf { mask |= Entry.d | Entry.g }
            return rng.next() & mask
        }

        // Build the entries top-down.
        var used: [ExpectedAccessModel.UsedEntry] = []
        var memoryLevels: [Int] = []
        var initial: [UInt64] = []
        var leafKey: UInt64 = 0
        var pageBase: UInt64 = 0
        var pdpteRegister: UInt64?
        for level in stride(from: mode.levels, through: leafLevel, by: -1) {
            var entry = ExpectedAccessModel.UsedEntry()
            entry.present = chance(0.94)
            if mode == .pae && level == 3 {
                entry.isPDPTERegister = true
                pdpteRegister = builder.table(level: 2) | (entry.present ? Entry.p : 0)
                used.append(entry)
                continue
            }
            let isLeaf = level == leafLevel
            entry.writable = chance(0.8)
            entry.user = chance(0.8)
            entry.xd = hasXD && chance(0.15)
            var value: UInt64
            if isLeaf {
                if mode == .bits32 && level == 2 {
                    // 4 MiB page with PSE-36 bits.
                    let mPrime = min(m, 40)
                    let high = rng.next() & ((1 << UInt64(mPrime - 32)) - 1)
                    let low = rng.next() & bits(31, 22)
                    pageBase = low | high << 32
                    value = low | high << 13 | Entry.ps
                } else {
                    let top = mode == .bits32 ? 31 : m - 1
                    pageBase = rng.next() & bits(top, pageShift)
                    value = pageBase | (leafLevel > 1 ? Entry.ps : 0)
                }
                if chance(0.3) { value |= leafLevel > 1 ? 1 << 12 : Entry.ps } // PAT
                if chance(0.5) { value |= Entry.g }
                if longMode {
                    leafKey = rng.next() & 0xf
                    value |= Entry.key(leafKey)
                }
                if chance(0.5) { value |= Entry.a }
                if chance(0.5) { value |= Entry.d }
            } else {
                value = builder.table(level: level - 1)
                if chance(0.5) { value |= Entry.a }
                if paging == .bits32 && level == 2 && chance(0.5) { value |= Entry.ps } // ignored without CR4.PSE
            }
            value |= ignoredBits(leaf: isLeaf) & (mode == .bits32 ? 0xffff_ffff : ~0)
            if entry.present { value |= Entry.p }
            if entry.writable { value |= Entry.rw }
            if entry.user { value |= Entry.us }
            if entry.xd { value |= Entry.xd }
            if chance(0.04), let bit = reservedBit(level) {
                value |= bit
                entry.reservedBit = true
            }
            used.append(entry)
            memoryLevels.append(level)
            initial.append(value)
        }
        controls.pkruAD = pkru >> UInt32(2 * leafKey) & 1 != 0
        controls.pkruWD = pkru >> UInt32(2 * leafKey + 1) & 1 != 0
        let access = pick(allAccesses)

        for (slot, level) in memoryLevels.enumerated() { builder.setEntry(level: level, initial[slot]) }
        if let pdpteRegister { builder.setEntry(level: 3, pdpteRegister) }
        var setup = builder.setup()
        setup.pse = paging == .bits32PSE
        setup.wp = controls.wp
        setup.smep = controls.smep
        setup.smap = controls.smap
        setup.pke = controls.pke
        setup.nxe = controls.nxe
        setup.pkru = pkru
        var registers = try setup.registers(model: CPUModel(maxPhysicalAddressBits: m), memory: memory)
        registers.alignmentCheck = controls.ac

        let result = Walker.walk(gva, access, registers: registers, memory: memory)
        let expected = ExpectedAccessModel.evaluate(
            paging: paging, controls: controls, entries: used, access: access, gva: gva, pageBase: pageBase, pageShift: pageShift)

        func context() -> String {
            let entries = zip(memoryLevels, initial).map { "L\($0)=\(hex($1))" }.joined(separator: " ")
            let pdpte = pdpteRegister.map { " PDPTE-register=\(hex($0))" } ?? ""
            return "\(paging) M=\(m) \(controls) PKRU=\(hex(UInt64(pkru))) gva=\(hex(gva)) \(access)\(pdpte) \(entries)"
        }
        let agrees: Bool
        switch (result, expected.outcome) {
        case (.translated(let t), .translated(let pa, let shift)): agrees = t.physicalAddress == pa && t.pageShift == shift
        case (.pageFault(let code), .pageFault(let want)): agrees = code.rawValue == want
        default: agrees = false
        }
        // Clean up for the next case before returning.
        defer {
            for level in memoryLevels { builder.setEntry(level: level, 0) }
            if pdpteRegister != nil { builder.setEntry(level: 3, 0) }
        }
        outcome(expected.setsAccessed)
        if !agrees { return "\(context()): walker \(result.summary), expected \(expected.outcome)" }
        for (slot, level) in memoryLevels.enumerated() {
            var want = initial[slot]
            if expected.setsAccessed { want |= Entry.a }
            if expected.setsDirty && level == leafLevel { want |= Entry.d }
            let got = builder.entry(level: level)
            if got != want { return "\(context()): level-\(level) entry \(hex(got)) after the walk, expected \(hex(want))" }
        }
        return nil
    }
}
