/// How the hypervisor watches writes to one guest frame that holds a guest
/// page table it shadows, as a drawing or a report shows it.
public enum GuestTableProtection: Sendable, Hashable, CustomStringConvertible {
    /// Not shadowed, or shadowed only by unsync pages: guest writes land
    /// without trapping.
    case none
    /// Shadowed by a leaf shadow page that is in sync: the frame is mapped
    /// read-only, and the guest's next write to it exits — the hypervisor then
    /// lets the page go unsync instead of emulating the write.
    case writeProtected
    /// Shadowed by an upper-level shadow page (KVM's write tracking,
    /// `kvm_gfn_is_write_tracked`): every guest write traps and is emulated,
    /// and the frame is never mapped writable.
    case writeTracked

    public var description: String {
        switch self {
        case .none: "not write-protected"
        case .writeProtected: "write-protected (the next write lets its shadow go unsync)"
        case .writeTracked: "write-tracked (every write traps and is emulated)"
        }
    }
}

extension ShadowMMU {
    /// How guest writes to frame `gfn` are watched now: the same decision the
    /// write paths take (`guestStore`, the spte builder), without changing
    /// anything.
    public func protection(ofGuestFrame gfn: UInt64) -> GuestTableProtection {
        if writeTrack[gfn] != nil { return .writeTracked }
        return shadowedPages(of: gfn).contains { !$0.unsync } ? .writeProtected : .none
    }
}
