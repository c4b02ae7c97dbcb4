/// The rights a translation grants, combined over every entry used:
/// U/S and R/W are ANDed, XD is ORed (only where XD exists and EFER.NXE=1).
/// PAE PDPTEs contribute nothing.
public struct EffectiveRights: Hashable, Sendable, CustomStringConvertible {
    public var user: Bool
    public var writable: Bool
    public var executeDisable: Bool

    public init(user: Bool, writable: Bool, executeDisable: Bool) {
        self.user = user
        self.writable = writable
        self.executeDisable = executeDisable
    }

    /// What a translation without paging grants: everything.
    public static let unrestricted = EffectiveRights(user: true, writable: true, executeDisable: false)

    public var description: String {
        "\(user ? "user" : "supervisor") \(writable ? "read/write" : "read-only")\(executeDisable ? " no-execute" : "")"
    }
}

/// Which of the architecture's permission rules (SDM Vol. 3A §4.6) an access
/// breaks. Any violation is a page fault with P=1; `protectionKey` also sets
/// the PK bit of the error code, whether or not another rule is broken too.
public struct PermissionViolations: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// A user-mode access to a page that is supervisor-only at some level.
    public static let userAccessToSupervisorPage = PermissionViolations(rawValue: 1 << 0)
    /// A write to a page read-only at some level, by user mode or with CR0.WP=1.
    public static let writeToReadOnlyPage = PermissionViolations(rawValue: 1 << 1)
    /// A fetch from a page with XD set at some level (EFER.NXE=1).
    public static let fetchFromNoExecutePage = PermissionViolations(rawValue: 1 << 2)
    /// CR4.SMEP: a supervisor fetch from a user page.
    public static let supervisorExecutionPrevention = PermissionViolations(rawValue: 1 << 3)
    /// CR4.SMAP: a supervisor data access to a user page, implicit or with EFLAGS.AC=0.
    public static let supervisorAccessPrevention = PermissionViolations(rawValue: 1 << 4)
    /// CR4.PKE: PKRU's access-disable, or write-disable for a write that
    /// honours it, for the leaf's key on a user page.
    public static let protectionKey = PermissionViolations(rawValue: 1 << 5)

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
    @inlinable
    public func permissionViolations(_ rights: EffectiveRights, protectionKey: Int, _ access: MemoryAccess) -> PermissionViolations {
        var violations: PermissionViolations = []
        let userMode = access.mode == .user
        let writeHonoursReadOnly = userMode || cr0.wp
        if userMode, !rights.user { violations.insert(.userAccessToSupervisorPage) }
        switch access.kind {
        case .write:
            if !rights.writable, writeHonoursReadOnly { violations.insert(.writeToReadOnlyPage) }
        case .fetch:
            if rights.executeDisable { violations.insert(.fetchFromNoExecutePage) }
            if !userMode, rights.user, cr4.contains(.smep) { violations.insert(.supervisorExecutionPrevention) }
            return violations
        case .read:
            break
        }
        if !userMode, rights.user, cr4.contains(.smap), access.mode == .supervisorImplicit || !alignmentCheck {
            violations.insert(.supervisorAccessPrevention)
        }
        if rights.user, cr4.contains(.pke), efer.contains(.lma) {
            if pkru.accessDisabled(key: protectionKey)
                || (pkru.writeDisabled(key: protectionKey) && access.kind == .write && writeHonoursReadOnly)
            {
                violations.insert(.protectionKey)
            }
        }
        return violations
    }

    /// The error-code bits every page fault of `access` carries: W/R, U/S and
    /// I/D (a fetch, reported only with CR4.SMEP or PAE+NXE).
    @inlinable
    public func errorCodeBase(for access: MemoryAccess) -> PageFaultErrorCode {
        var code: UInt64 = 0
        switch access.kind {
        case .write: code |= PageFaultErrorCode.write.rawValue
        case .fetch:
            if cr4.contains(.smep) || executeDisableEnabled { code |= PageFaultErrorCode.instructionFetch.rawValue }
        case .read: break
        }
        if access.mode == .user { code |= PageFaultErrorCode.user.rawValue }
        return PageFaultErrorCode(rawValue: code)
    }

    /// The error code of a permission fault with these violations.
    @inlinable
    public func permissionFaultCode(_ violations: PermissionViolations, _ access: MemoryAccess) -> PageFaultErrorCode {
        var code = errorCodeBase(for: access).rawValue | PageFaultErrorCode.present.rawValue
        if violations.contains(.protectionKey) { code |= PageFaultErrorCode.protectionKey.rawValue }
        return PageFaultErrorCode(rawValue: code)
    }
}
