/// The paging hardware of the host the hypervisor runs on.
public enum HostPaging: Sendable, Hashable {
    /// x86-64: roots of 3 (PAE, for guests with fewer levels), 4 or 5 levels.
    case bits64
    /// A 32-bit PAE host: every root is a PAE root; guests with 4 or 5 levels
    /// cannot run.
    case pae32
}
