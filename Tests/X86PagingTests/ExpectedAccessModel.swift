import X86Paging

/// One point of the access enumeration: the paging mode, the control bits,
/// the flags of the leaf entry and of the entry directly above it, and the
/// access. Entries above the parent are always present, writable, user, XD=0.
struct AccessCombination: CustomStringConvertible {
    enum Paging: String, CaseIterable, Sendable, CustomStringConvertible {
        case bits32 = "32-bit"
        case bits32PSE = "32-bit+PSE"
        case pae = "PAE"
        case level4 = "4-level"
        case level5 = "5-level"

        var pagingMode: PagingMode {
            switch self {
            case .bits32, .bits32PSE: .bits32
            case .pae: .pae
            case .level4: .level4
            case .level5: .level5
            }
        }

        var description: String { rawValue }
    }

    struct Controls: Hashable, Sendable, CustomStringConvertible {
        var wp = false
        var smep = false
        var smap = false
        /// EFLAGS.AC.
        var ac = false
        var pke = false
        /// PKRU access-disable for the leaf's protection key.
        var pkruAD = false
        /// PKRU write-disable for the leaf's protection key.
        var pkruWD = false
        var nxe = false

        var description: String {
            var parts: [String] = []
            parts.append(wp ? "WP=1" : "WP=0")
            parts.append(smep ? "SMEP=1" : "SMEP=0")
            parts.append(smap ? "SMAP=1" : "SMAP=0")
            parts.append(ac ? "AC=1" : "AC=0")
            parts.append(pke ? "PKE=1(AD=\(pkruAD ? 1 : 0),WD=\(pkruWD ? 1 : 0))" : "PKE=0")
            parts.append(nxe ? "NXE=1" : "NXE=0")
            return parts.joined(separator: " ")
        }
    }

    struct Parent {
        var present = true
        var writable = true
        var user = true
        var xd = false
    }

    struct Leaf {
        var present = true
        var writable = true
        var user = true
        var accessed = false
        var dirty = false
        var xd = false
        /// One bit the table of reserved bits lists for this entry is set.
        var reservedBit = false
    }

    var paging: Paging
    var controls: Controls
    /// PS=1 in the PDE. In 32-bit paging without CR4.PSE the bit is ignored
    /// and the PDE still points to a page table.
    var huge: Bool
    var parent: Parent
    var leaf: Leaf
    var access: MemoryAccess
    var gva: UInt64
    /// Physical base of the page the leaf maps (4 KiB, 2 MiB or 4 MiB aligned).
    var pageBase: UInt64

    var description: String {
        func flag(_ on: Bool, _ name: String) -> String { on ? name : "-" }
        let parentText = "parent[\(flag(parent.present, "P")) \(flag(parent.writable, "RW")) \(flag(parent.user, "US")) \(flag(parent.xd, "XD"))]"
        let leafText = "leaf[\(flag(leaf.present, "P")) \(flag(leaf.writable, "RW")) \(flag(leaf.user, "US")) \(flag(leaf.accessed, "A")) \(flag(leaf.dirty, "D")) \(flag(leaf.xd, "XD")) \(flag(leaf.reservedBit, "RSVD"))]"
        return "\(paging) \(controls) PDE.PS=\(huge ? 1 : 0) \(parentText) \(leafText) access=\(access) gva=\(hex(gva))"
    }
}

/// The architecture's verdict for an `AccessCombination`, written directly
/// from x86-paging-semantics.md §§3–7 (SDM Vol. 3A §4.3–4.8) one rule at a
/// time. It shares nothing with `Walker` or `Permissions.swift`.
enum ExpectedAccessModel {
    enum Outcome: Equatable, CustomStringConvertible {
        case translated(physicalAddress: UInt64, pageShift: Int)
        case pageFault(errorCode: UInt64)

        var description: String {
            switch self {
            case .translated(let pa, let shift): "ok pa=\(hex(pa)) shift=\(shift)"
            case .pageFault(let code): "#PF \(hex(code))"
            }
        }
    }

    struct Result: Equatable {
        var outcome: Outcome
        /// A=1 ends up in every paging-structure entry used (memory entries).
        var setsAccessed: Bool
        /// D=1 ends up in the leaf.
        var setsDirty: Bool
    }

    /// Which entry sits above the leaf, as far as the rules are concerned.
    enum ParentKind {
        /// A paging-structure entry in memory with P, R/W, U/S (and XD where the format has it).
        case entry
        /// A PAE PDPTE register: only P; no rights, no A flag.
        case pdpteRegister
        /// The leaf is the top-level entry (32-bit 4 MiB PDE).
        case none
    }

    /// True when PS=1 in the PDE makes the PDE the leaf.
    static func isLargePage(_ c: AccessCombination) -> Bool {
        if !c.huge { return false }
        if c.paging == .bits32 { return false } // CR4.PSE=0: PS is ignored
        return true
    }

    static func parentKind(_ c: AccessCombination) -> ParentKind {
        if !isLargePage(c) { return .entry }
        if c.paging == .bits32PSE { return .none }
        if c.paging == .pae { return .pdpteRegister }
        return .entry
    }

    /// Whether the entry format has an XD bit (bit 63 of 64-bit entries).
    static func formatHasXD(_ paging: AccessCombination.Paging) -> Bool {
        paging == .pae || paging == .level4 || paging == .level5
    }

    /// One entry a walk uses, as the rules see it.
    struct UsedEntry {
        var present = true
        var writable = true
        var user = true
        var xd = false
        /// Some bit of the reserved-bit table for this entry is set.
        var reservedBit = false
        /// A PAE PDPTE register: checked for P only, grants every right.
        var isPDPTERegister = false
    }

    /// The combination as the list of entries used, top-down, leaf last
    /// (only the parent and the leaf vary; entries above are permissive).
    static func usedEntries(_ c: AccessCombination) -> [UsedEntry] {
        var entries: [UsedEntry] = []
        switch parentKind(c) {
        case .entry:
            entries.append(UsedEntry(present: c.parent.present, writable: c.parent.writable, user: c.parent.user, xd: c.parent.xd))
        case .pdpteRegister:
            entries.append(UsedEntry(present: c.parent.present, isPDPTERegister: true))
        case .none:
            break
        }
        entries.append(UsedEntry(present: c.leaf.present, writable: c.leaf.writable, user: c.leaf.user, xd: c.leaf.xd, reservedBit: c.leaf.reservedBit))
        return entries
    }

    static func evaluate(_ c: AccessCombination) -> Result {
        var shift = 12
        if isLargePage(c) {
            shift = c.paging == .bits32PSE ? 22 : 21
        }
        return evaluate(
            paging: c.paging, controls: c.controls, entries: usedEntries(c), access: c.access,
            gva: c.gva, pageBase: c.pageBase, pageShift: shift)
    }

    /// The verdict for a walk through `entries` (top-down, leaf last) mapping
    /// a page of `1 << pageShift` bytes at `pageBase`. `controls.pkruAD/WD`
    /// are PKRU's bits for the leaf's protection key.
    static func evaluate(
        paging: AccessCombination.Paging, controls: AccessCombination.Controls, entries: [UsedEntry],
        access: MemoryAccess, gva: UInt64, pageBase: UInt64, pageShift: Int
    ) -> Result {
        let isWrite = access.kind == .write
        let isFetch = access.kind == .fetch
        let isData = !isFetch
        let userAccess = access.mode == .user
        let implicitAccess = access.mode == .supervisorImplicit
        let longMode = paging == .level4 || paging == .level5
        // XD is honoured only where the format has it and EFER.NXE=1; with
        // NXE=0 the same bit is reserved.
        let executeDisableOn = formatHasXD(paging) && controls.nxe

        // §6: W/R, U/S and I/D are part of every page-fault error code.
        var base: UInt64 = 0
        if isWrite { base |= PFEC.w }
        if userAccess { base |= PFEC.u }
        if isFetch && (controls.smep || executeDisableOn) { base |= PFEC.id }

        let noChange = { (code: UInt64) in Result(outcome: .pageFault(errorCode: code), setsAccessed: false, setsDirty: false) }

        // §3: top-down, the first entry not present or with a reserved bit
        // ends the walk.
        for entry in entries {
            if !entry.present {
                return noChange(base)
            }
            if entry.isPDPTERegister {
                continue
            }
            if entry.reservedBit {
                return noChange(base | PFEC.p | PFEC.rsvd)
            }
            if formatHasXD(paging) && !controls.nxe && entry.xd {
                return noChange(base | PFEC.p | PFEC.rsvd)
            }
        }

        // Effective rights (§0): AND of U/S and R/W, OR of XD over the
        // entries used; PDPTE registers contribute nothing.
        var pageIsUser = true
        var pageIsWritable = true
        var pageIsExecuteDisabled = false
        for entry in entries where !entry.isPDPTERegister {
            if !entry.user { pageIsUser = false }
            if !entry.writable { pageIsWritable = false }
            if executeDisableOn && entry.xd { pageIsExecuteDisabled = true }
        }

        // §5 rows F1–F6.
        var fault = false
        var protectionKeyFault = false
        // F1
        if userAccess && !pageIsUser {
            fault = true
        }
        // F2
        if isWrite && !pageIsWritable {
            if userAccess {
                fault = true
            } else if controls.wp {
                fault = true
            }
        }
        // F3
        if isFetch && pageIsExecuteDisabled {
            fault = true
        }
        // F4 (every supervisor fetch; an "implicit" fetch is still a supervisor fetch)
        if isFetch && !userAccess && controls.smep && pageIsUser {
            fault = true
        }
        // F5
        if isData && !userAccess && controls.smap && pageIsUser {
            if implicitAccess {
                fault = true
            } else if !controls.ac {
                fault = true
            }
        }
        // F6 (protection keys need long mode; the leaf's key is the one PKRU is read for)
        if isData && longMode && controls.pke && pageIsUser {
            if controls.pkruAD {
                protectionKeyFault = true
            } else if controls.pkruWD && isWrite {
                if userAccess {
                    protectionKeyFault = true
                } else if controls.wp {
                    protectionKeyFault = true
                }
            }
        }
        if protectionKeyFault {
            return noChange(base | PFEC.p | PFEC.pk)
        }
        if fault {
            return noChange(base | PFEC.p)
        }

        // §3.1–3.3: the page offset comes from the linear address.
        let offset = gva & ((1 << UInt64(pageShift)) - 1)
        // §7: A on every entry used, D on the leaf of a write.
        return Result(outcome: .translated(physicalAddress: pageBase | offset, pageShift: pageShift), setsAccessed: true, setsDirty: isWrite)
    }
}
