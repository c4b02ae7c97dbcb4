import X86Paging
import ScenarioLanguage

/// Guest physical memory that remembers which frames the guest wrote while
/// dirty logging is on. Every guest write goes through `store` (data writes,
/// `store` commands, accessed/dirty-flag updates by the walker); loader writes
/// go to `backing` directly and are not guest writes.
public final class LoggedMemory: PhysicalMemory {
    public let backing: SparseMemory
    @exclusivity(unchecked) public private(set) var isLogging = false
    @exclusivity(unchecked) private var written: Set<UInt64> = []

    public init(size: UInt64) {
        backing = SparseMemory(size: size)
    }

    public var size: UInt64 { backing.size }

    @inlinable
    public func load(_ address: UInt64, width: Int) -> UInt64 {
        backing.load(address, width: width)
    }

    public func store(_ address: UInt64, width: Int, _ value: UInt64) {
        if isLogging, address < size { written.insert(address >> 12) }
        backing.store(address, width: width, value)
    }

    public func startLogging() {
        if !isLogging { written = [] }
        isLogging = true
    }

    public func stopLogging() { isLogging = false }

    /// Get-and-clear.
    public func takeWrittenFrames() -> [UInt64] {
        defer { written = [] }
        return written.sorted()
    }
}
