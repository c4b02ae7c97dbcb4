import X86Paging

/// Access rights in KVM's encoding (`ACC_*`): execute is positive (the
/// inverse of XD), so rights combine over levels with AND.
public struct AccessRights: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let execute = AccessRights(rawValue: 1)
    public static let write = AccessRights(rawValue: 2)
    public static let user = AccessRights(rawValue: 4)
    public static let all: AccessRights = [.execute, .write, .user]

    /// The rights one guest entry grants (`gpte_access`): R/W, U/S and !XD.
    /// 32-bit entries have no XD bit.
    @inlinable
    public init(guestEntry entry: UInt64, hasExecuteDisable: Bool) {
        var rights: AccessRights = []
        if entry & 2 != 0 { rights.insert(.write) }
        if entry & 4 != 0 { rights.insert(.user) }
        if !hasExecuteDisable || entry >> 63 == 0 { rights.insert(.execute) }
        self = rights
    }

    /// The rights of an EPT entry: read as `user`, write, execute (KVM's shadow
    /// EPT encoding, in which `ACC_USER_MASK` means readable).
    @inlinable
    public init(eptEntry entry: UInt64) {
        var rights: AccessRights = []
        if entry & 1 != 0 { rights.insert(.user) }
        if entry & 2 != 0 { rights.insert(.write) }
        if entry & 4 != 0 { rights.insert(.execute) }
        self = rights
    }

    public var description: String {
        (contains(.user) ? "u" : "-") + (contains(.write) ? "w" : "-") + (contains(.execute) ? "x" : "-")
    }
}

/// What a shadow page shadows and how (KVM's `kvm_mmu_page_role`): together
/// with the gfn it is the page's identity in the hash. Two valid shadow pages
/// never share (gfn, role).
public struct PageRole: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    @inlinable func field(_ shift: UInt32, _ width: UInt32) -> UInt32 { rawValue >> shift & (1 << width - 1) }
    @inlinable mutating func setField(_ shift: UInt32, _ width: UInt32, _ value: UInt32) {
        let mask: UInt32 = (1 << width - 1) << shift
        rawValue = rawValue & ~mask | value << shift & mask
    }

    /// Level of the table in the shadow hierarchy (1 = 4 KiB leaves); 0 in a
    /// cpu role means paging is off.
    public var level: Int {
        get { Int(field(0, 4)) }
        set { setField(0, 4, UInt32(newValue)) }
    }
    /// The shadowed guest table has 4-byte entries (32-bit paging).
    public var hasFourByteGPTE: Bool {
        get { field(4, 1) != 0 }
        set { setField(4, 1, newValue ? 1 : 0) }
    }
    /// Which part of a 1024-entry 32-bit guest table this 512-entry page covers.
    public var quadrant: Int {
        get { Int(field(5, 2)) }
        set { setField(5, 2, UInt32(newValue)) }
    }
    /// Maps a contiguous gfn range instead of shadowing a guest table.
    public var direct: Bool {
        get { field(7, 1) != 0 }
        set { setField(7, 1, newValue ? 1 : 0) }
    }
    /// Rights granted by the guest entries above this table.
    public var access: AccessRights {
        get { AccessRights(rawValue: UInt8(field(8, 3))) }
        set { setField(8, 3, UInt32(newValue.rawValue)) }
    }
    /// Zapped while still in use as a root; never found by a lookup.
    public var invalid: Bool {
        get { field(11, 1) != 0 }
        set { setField(11, 1, newValue ? 1 : 0) }
    }
    public var eferNX: Bool {
        get { field(12, 1) != 0 }
        set { setField(12, 1, newValue ? 1 : 0) }
    }
    public var cr0WP: Bool {
        get { field(13, 1) != 0 }
        set { setField(13, 1, newValue ? 1 : 0) }
    }
    /// CR4.SMEP && !CR0.WP: sptes built by CR0.WP=0 emulation differ.
    public var smepAndNotWP: Bool {
        get { field(14, 1) != 0 }
        set { setField(14, 1, newValue ? 1 : 0) }
    }
    /// CR4.SMAP && !CR0.WP.
    public var smapAndNotWP: Bool {
        get { field(15, 1) != 0 }
        set { setField(15, 1, newValue ? 1 : 0) }
    }
    /// Built without hardware accessed/dirty bits (EPT without A/D).
    public var adDisabled: Bool {
        get { field(16, 1) != 0 }
        set { setField(16, 1, newValue ? 1 : 0) }
    }
    /// Built while the vCPU runs a nested (L2) guest.
    public var guestMode: Bool {
        get { field(17, 1) != 0 }
        set { setField(17, 1, newValue ? 1 : 0) }
    }
    /// A top-level page with no guest table behind it (5-level host shadowing
    /// a 4-level L1's nested tables).
    public var passthrough: Bool {
        get { field(18, 1) != 0 }
        set { setField(18, 1, newValue ? 1 : 0) }
    }
    /// CR4.PKE && !CR0.WP (long mode). Not in KVM, which offers protection keys
    /// only with TDP; here shadow paging supports them, and for the reason
    /// `smap_andnot_wp` exists a page built by CR0.WP=0 emulation (user pages
    /// mapped supervisor-only) must not serve once protection keys are on.
    public var pkeAndNotWP: Bool {
        get { field(19, 1) != 0 }
        set { setField(19, 1, newValue ? 1 : 0) }
    }
    /// CR4.PSE of a 32-bit guest. Not in KVM's role (deviation
    /// `cr4-pse-not-in-role`); set only by that deviation's fix, so that a
    /// page directory shadowed under one setting never serves the other.
    public var cr4PSE: Bool {
        get { field(20, 1) != 0 }
        set { setField(20, 1, newValue ? 1 : 0) }
    }

    public var description: String {
        var parts = ["level=\(level)", direct ? "direct" : "indirect", "access=\(access)"]
        if hasFourByteGPTE { parts.append("4-byte-gpte quadrant=\(quadrant)") }
        if eferNX { parts.append("efer_nx") }
        if cr0WP { parts.append("cr0_wp") }
        if smepAndNotWP { parts.append("smep_andnot_wp") }
        if smapAndNotWP { parts.append("smap_andnot_wp") }
        if pkeAndNotWP { parts.append("pke_andnot_wp") }
        if cr4PSE { parts.append("cr4_pse") }
        if adDisabled { parts.append("ad_disabled") }
        if guestMode { parts.append("guest_mode") }
        if passthrough { parts.append("passthrough") }
        if invalid { parts.append("invalid") }
        return parts.joined(separator: " ")
    }
}

/// What the guest's paging looks like (KVM's `cpu_role`): a base page role
/// plus the state that affects the guest walk but not shadow-page validity.
public struct CPURole: Hashable, Sendable {
    public var base: PageRole
    public var cr4PSE = false
    public var cr4SMEP = false
    public var cr4SMAP = false
    public var cr4PKE = false
    public var cr4LA57 = false
    public var eferLMA = false

    /// `kvm_calc_cpu_role`, from the guest's CR0, CR4 and EFER.
    public init(_ registers: ControlRegisters) {
        base = PageRole(rawValue: 0)
        base.access = .all
        guard registers.cr0.pg else {
            base.direct = true
            return
        }
        let cr4 = registers.cr4
        let lma = registers.efer.contains(.lma)
        base.eferNX = registers.efer.contains(.nxe)
        base.cr0WP = registers.cr0.wp
        base.smepAndNotWP = cr4.contains(.smep) && !registers.cr0.wp
        base.smapAndNotWP = cr4.contains(.smap) && !registers.cr0.wp
        base.hasFourByteGPTE = !cr4.contains(.pae)
        base.level = lma ? (cr4.contains(.la57) ? 5 : 4) : (cr4.contains(.pae) ? 3 : 2)
        cr4PSE = cr4.contains(.pse)
        cr4SMEP = cr4.contains(.smep)
        cr4SMAP = cr4.contains(.smap)
        cr4PKE = lma && cr4.contains(.pke)
        base.pkeAndNotWP = cr4PKE && !registers.cr0.wp
        cr4LA57 = lma && cr4.contains(.la57)
        eferLMA = lma
    }

    /// Paging levels of the guest (0 when paging is off).
    public var level: Int { base.level }
}

extension PageRole {
    /// The root role of shadow paging for a guest with `cpuRole`
    /// (`kvm_init_shadow_mmu`): the guest's role with at least three levels —
    /// 32-bit and PAE guests, and guests with paging off, are shadowed by a
    /// PAE root — and EFER.NX forced on, because KVM uses NX itself.
    ///
    /// `keepingGuestNX` (the fix for deviation `efer-nx-forced`): the role keeps
    /// the guest's EFER.NX instead, so that pages built while XD was a
    /// permission bit never serve a guest for which it is reserved.
    /// `keepingGuestPSE` (the fix for `cr4-pse-not-in-role`): a 32-bit guest's
    /// CR4.PSE is part of the role, so a PDE with PS=1 is shadowed as a 4 MiB
    /// page only for vCPUs that read it as one.
    public static func shadowRoot(for cpuRole: CPURole, keepingGuestNX: Bool = false, keepingGuestPSE: Bool = false) -> PageRole {
        var role = cpuRole.base
        role.level = max(role.level, 3)
        if !keepingGuestNX { role.eferNX = true }
        if keepingGuestPSE, role.hasFourByteGPTE { role.cr4PSE = cpuRole.cr4PSE }
        return role
    }
}

extension PageRole {
    /// The role bits a child takes from its parent unchanged (`kvm_mmu_child_role`
    /// changes only the level, direct, access, quadrant and passthrough).
    static let settingsMask: UInt32 = {
        var role = PageRole(rawValue: 0)
        role.hasFourByteGPTE = true
        role.eferNX = true
        role.cr0WP = true
        role.smepAndNotWP = true
        role.smapAndNotWP = true
        role.adDisabled = true
        role.guestMode = true
        role.pkeAndNotWP = true
        role.cr4PSE = true
        return role.rawValue
    }()

    /// Whether this role has the paging settings (CR0.WP, SMEP/SMAP/PKE and not
    /// WP, EFER.NX, 4-byte entries, A/D, guest mode, CR4.PSE) of `root`'s.
    package func inheritsSettings(of root: PageRole) -> Bool {
        rawValue & Self.settingsMask == root.rawValue & Self.settingsMask
    }

    /// The root role of two-dimensional paging (`kvm_calc_tdp_mmu_root_page_role`):
    /// a direct map whatever the guest does; CR0.WP and EFER.NX forced on,
    /// since the guest's own settings do not shape TDP pages.
    public static func tdpRoot(levels: Int) -> PageRole {
        var role = PageRole(rawValue: 0)
        role.level = levels
        role.direct = true
        role.access = .all
        role.cr0WP = true
        role.eferNX = true
        return role
    }
}

extension CPURole {
    /// The "guest" role of a nested context (`kvm_init_shadow_npt_mmu`,
    /// `kvm_init_shadow_ept_mmu`): what L1's nested tables look like. NPT
    /// tables have the format of L1's own paging mode; EPT tables have the
    /// EPTP's levels, and accessed/dirty flags only when the EPTP enables them.
    public init(nested paging: NestedPaging) {
        switch paging {
        case .npt(let l1):
            self.init(l1)
        case .ept(let eptp, _):
            self.init(ControlRegisters(model: CPUModel(maxPhysicalAddressBits: 52)))
            base.direct = false
            base.level = eptp.levels
            base.cr0WP = true
            base.eferNX = true
            base.adDisabled = !eptp.accessedDirtyEnabled
        }
        base.guestMode = true
    }
}

extension PageRole {
    /// The root role that shadows an L1's nested tables with L0's own TDP
    /// hardware (`kvm_calc_shadow_npt_root_page_role`): NPT roots have L0's
    /// TDP levels — local pages stand for the levels a 32-bit or PAE L1 lacks,
    /// and a 5-level root over a 4-level L1 is a passthrough page — while a
    /// shadow EPT root has the EPTP's levels. Unlike ordinary shadow paging,
    /// KVM does not force EFER.NX here: the role keeps L1's, which decides
    /// whether bit 63 of an NPT entry is NX or reserved.
    public static func nestedRoot(for cpuRole: CPURole, hostLevels: Int, ept: Bool) -> PageRole {
        var role = cpuRole.base
        if !ept {
            role.level = hostLevels
            role.passthrough = hostLevels == 5 && cpuRole.level == 4
        }
        return role
    }
}
