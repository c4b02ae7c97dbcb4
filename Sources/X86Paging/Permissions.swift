/// The rights a translation grants, combined over every entry used:
/// U/S and R/W are ANDed, XD is ORed (only where XD exists and EFER.NXE=1).
/// PAE PDPTEs contribute nothing.
public struct EffectiveRights: Hashable, Sendable, CustomStringConvertible {
    public var user: Bool
    public var writable: Bool
    public var executeDisable: Bool

    @inlinable
    public init(user: Bool, writable: Bool, executeDisable: Bool) {
        self.user = user
        self.writable = writable
        self.executeDisable = executeDisable
    }

    /// What a translation without paging grants: everything.
    @inlinable public static var unrestricted: EffectiveRights { EffectiveRights(user: true, writable: true, executeDisable: false) }

    public var description: String {
        "\(user ? "user" : "supervisor") \(writable ? "read/write" : "read-only")\(executeDisable ? " no-execute" : "")"
    }
}

/// Which of the architecture's permission rules (SDM Vol. 3A §4.6) an access
/// breaks. Any violation is a page fault with P=1; `protectionKey` also sets
/// the PK bit of the error code, whether or not another rule is broken too.
///
/// The flags are computed properties rather than `static let`s: a client
/// module reads another module's `static let` through a call to its lazy
/// initializer, once per use, which a TLB hit cannot afford.
public struct PermissionViolations: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// A user-mode access to a page that is supervisor-only at some level.
    @inlinable public static var userAccessToSupervisorPage: PermissionViolations { PermissionViolations(rawValue: 1 << 0) }
    /// A write to a page read-only at some level, by user mode or with CR0.WP=1.
    @inlinable public static var writeToReadOnlyPage: PermissionViolations { PermissionViolations(rawValue: 1 << 1) }
    /// A fetch from a page with XD set at some level (EFER.NXE=1).
    @inlinable public static var fetchFromNoExecutePage: PermissionViolations { PermissionViolations(rawValue: 1 << 2) }
    /// CR4.SMEP: a supervisor fetch from a user page.
    @inlinable public static var supervisorExecutionPrevention: PermissionViolations { PermissionViolations(rawValue: 1 << 3) }
    /// CR4.SMAP: a supervisor data access to a user page, implicit or with EFLAGS.AC=0.
    @inlinable public static var supervisorAccessPrevention: PermissionViolations { PermissionViolations(rawValue: 1 << 4) }
    /// CR4.PKE: PKRU's access-disable, or write-disable for a write that
    /// honours it, for the leaf's key on a user page.
    @inlinable public static var protectionKey: PermissionViolations { PermissionViolations(rawValue: 1 << 5) }

    public var description: String {
        let names: [(PermissionViolations, String)] = [
            (.userAccessToSupervisorPage, "user access to a supervisor page"),
            (.writeToReadOnlyPage, "write to a read-only page"),
            (.fetchFromNoExecutePage, "fetch from an execute-disabled page"),
            (.supervisorExecutionPrevention, "SMEP: supervisor fetch from a user page"),
            (.supervisorAccessPrevention, "SMAP: supervisor data access to a user page"),
            (.protectionKey, "protection key denies the access"),
        ]
        let set = names.filter { contains($0.0) }.map(\.1)
        return set.isEmpty ? "none" : set.joined(separator: "; ")
    }
}

extension ControlRegisters {
    /// The rules `access` breaks on a page with `rights` and protection key
    /// `protectionKey`, under the current CR0, CR4, EFER, PKRU and EFLAGS.AC.
    ///
    /// Every TLB hit runs this, so it tests raw register bits (`ControlBit`)
    /// and is always inlined.
    @inlinable @inline(__always)
    public func permissionViolations(_ rights: EffectiveRights, protectionKey: Int, _ access: MemoryAccess) -> PermissionViolations {
        var violations: PermissionViolations = []
        let userMode = access.mode == .user
        let writeHonoursReadOnly = userMode || cr0.rawValue & ControlBit.cr0WriteProtect != 0
        if userMode, !rights.user { violations.insert(.userAccessToSupervisorPage) }
        switch access.kind {
        case .write:
            if !rights.writable, writeHonoursReadOnly { violations.insert(.writeToReadOnlyPage) }
        case .fetch:
            if rights.executeDisable { violations.insert(.fetchFromNoExecutePage) }
            if !userMode, rights.user, cr4.rawValue & ControlBit.cr4SMEP != 0 { violations.insert(.supervisorExecutionPrevention) }
            return violations
        case .read:
            break
        }
        if !userMode, rights.user, cr4.rawValue & ControlBit.cr4SMAP != 0, access.mode == .supervisorImplicit || !alignmentCheck {
            violations.insert(.supervisorAccessPrevention)
        }
        if rights.user, cr4.rawValue & ControlBit.cr4PKE != 0, efer.rawValue & ControlBit.eferLMA != 0 {
            // PKRU: bit 2k is access-disable, bit 2k+1 write-disable for key k.
            let keyRights = pkru.rawValue >> UInt32(2 * protectionKey)
            if keyRights & 1 != 0 || (keyRights & 2 != 0 && access.kind == .write && writeHonoursReadOnly) {
                violations.insert(.protectionKey)
            }
        }
        return violations
    }

    /// Whether `access` breaks none of those rules: `permissionViolations(…)`
    /// is empty, decided with early exits for the TLB-hit path, which needs
    /// only the verdict (a test holds the two equal over every combination).
    @inlinable @inline(__always)
    public func permits(_ rights: EffectiveRights, protectionKey: Int, _ access: MemoryAccess) -> Bool {
        let userMode = access.mode == .user
        if userMode, !rights.user { return false }
        let writeHonoursReadOnly = userMode || cr0.rawValue & ControlBit.cr0WriteProtect != 0
        switch access.kind {
        case .write:
            if !rights.writable, writeHonoursReadOnly { return false }
        case .fetch:
            return !rights.executeDisable && (userMode || !rights.user || cr4.rawValue & ControlBit.cr4SMEP == 0)
        case .read:
            break
        }
        guard rights.user else { return true }
        if !userMode, cr4.rawValue & ControlBit.cr4SMAP != 0, access.mode == .supervisorImplicit || !alignmentCheck { return false }
        if cr4.rawValue & ControlBit.cr4PKE != 0, efer.rawValue & ControlBit.eferLMA != 0 {
            let keyRights = pkru.rawValue >> UInt32(2 * protectionKey)
            if keyRights & 1 != 0 || (keyRights & 2 != 0 && access.kind == .write && writeHonoursReadOnly) { return false }
        }
        return true
    }

    /// The error-code bits every page fault of `access` carries: W/R, U/S and
    /// I/D (a fetch, reported only with CR4.SMEP or PAE+NXE).
    @inlinable
    public func errorCodeBase(for access: MemoryAccess) -> PageFaultErrorCode {
        var code: UInt64 = 0
        switch access.kind {
        case .write: code |= ErrorCodeBit.write
        case .fetch:
            if cr4.rawValue & ControlBit.cr4SMEP != 0 || executeDisableEnabled { code |= ErrorCodeBit.instructionFetch }
        case .read: break
        }
        if access.mode == .user { code |= ErrorCodeBit.user }
        return PageFaultErrorCode(rawValue: code)
    }

    /// The error code of a permission fault with these violations.
    @inlinable
    public func permissionFaultCode(_ violations: PermissionViolations, _ access: MemoryAccess) -> PageFaultErrorCode {
        var code = errorCodeBase(for: access).rawValue | ErrorCodeBit.present
        if violations.contains(.protectionKey) { code |= ErrorCodeBit.protectionKey }
        return PageFaultErrorCode(rawValue: code)
    }
}

/// The bits of `PageFaultErrorCode`, as literals for inlinable code (see
/// `ControlBit` for why).
@usableFromInline
enum ErrorCodeBit {
    @inlinable static var present: UInt64 { 1 << 0 }
    @inlinable static var write: UInt64 { 1 << 1 }
    @inlinable static var user: UInt64 { 1 << 2 }
    @inlinable static var instructionFetch: UInt64 { 1 << 4 }
    @inlinable static var protectionKey: UInt64 { 1 << 5 }
}
