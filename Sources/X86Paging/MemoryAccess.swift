/// One memory access as the paging hardware judges it.
public struct MemoryAccess: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Int, Sendable, Hashable, CaseIterable {
        case read, write, fetch
    }

    /// Who makes the access, for U/S, SMEP, SMAP and protection keys.
    public enum Mode: Int, Sendable, Hashable, CaseIterable {
        /// CPL 3, explicit.
        case user
        /// CPL 0–2, explicit.
        case supervisor
        /// A supervisor-mode implicit access (GDT/LDT/IDT/TSS at any CPL):
        /// SMAP applies regardless of EFLAGS.AC.
        case supervisorImplicit
    }

    public var kind: Kind
    public var mode: Mode

    public init(_ kind: Kind, _ mode: Mode = .supervisor) {
        self.kind = kind
        self.mode = mode
    }

    public static let read = MemoryAccess(.read)
    public static let write = MemoryAccess(.write)
    public static let fetch = MemoryAccess(.fetch)

    public var isWrite: Bool { kind == .write }
    public var isFetch: Bool { kind == .fetch }
    public var isUser: Bool { mode == .user }

    public var description: String {
        let who = switch mode {
        case .user: "user"
        case .supervisor: "supervisor"
        case .supervisorImplicit: "implicit-supervisor"
        }
        return "\(who) \(kind)"
    }
}
