/// A fast sparse `PhysicalMemory`: 4 KiB pages allocated on first write,
/// found through a two-level table indexed by frame number (no hashing on the
/// access path). Pages never written read as zero.
public final class SparseMemory: PhysicalMemory {
    public let size: UInt64

    /// Frames per second-level table: one table covers 1 GiB.
    @usableFromInline static let framesPerChunk = 1 << 18
    /// First level, one slot per GiB; a `let` pointer so that the access path
    /// needs no exclusivity check and no array bounds check.
    @usableFromInline let chunks: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<UInt64>?>?>
    let chunkCount: Int
    /// Number of pages currently backed by real storage.
    public private(set) var allocatedPages = 0

    public init(size: UInt64) {
        self.size = size
        chunkCount = max(Int((size + (1 << 30) - 1) >> 30), 1)
        chunks = .allocate(capacity: chunkCount)
        chunks.initialize(repeating: nil, count: chunkCount)
    }

    deinit {
        for chunkIndex in 0..<chunkCount {
            guard let chunk = chunks[chunkIndex] else { continue }
            for index in 0..<Self.framesPerChunk {
                chunk[index]?.deallocate()
            }
            chunk.deallocate()
        }
        chunks.deallocate()
    }

    @inlinable @inline(__always)
    func page(_ address: UInt64) -> UnsafeMutablePointer<UInt64>? {
        let frame = Int(truncatingIfNeeded: address >> 12)
        guard let chunk = chunks[frame >> 18] else { return nil }
        return chunk[frame & (Self.framesPerChunk - 1)]
    }

    private func materialize(_ address: UInt64) -> UnsafeMutablePointer<UInt64> {
        let frame = Int(truncatingIfNeeded: address >> 12)
        let chunkIndex = frame >> 18
        let chunk: UnsafeMutablePointer<UnsafeMutablePointer<UInt64>?>
        if let existing = chunks[chunkIndex] {
            chunk = existing
        } else {
            chunk = .allocate(capacity: Self.framesPerChunk)
            chunk.initialize(repeating: nil, count: Self.framesPerChunk)
            chunks[chunkIndex] = chunk
        }
        let slot = frame & (Self.framesPerChunk - 1)
        if let existing = chunk[slot] { return existing }
        let fresh = UnsafeMutablePointer<UInt64>.allocate(capacity: 512)
        fresh.initialize(repeating: 0, count: 512)
        chunk[slot] = fresh
        allocatedPages += 1
        return fresh
    }

    /// The low `width` bytes: what a read of unclaimed memory returns (all ones).
    @inlinable
    @inline(__always)
    public static func widthMask(_ width: Int) -> UInt64 {
        width >= 8 ? ~0 : (1 << UInt64(width * 8)) - 1
    }

    @inlinable @inline(__always)
    public func load(_ address: UInt64, width: Int) -> UInt64 {
        guard address < size else { return Self.widthMask(width) }
        guard let page = page(address) else { return 0 }
        let bytes = UnsafeRawPointer(page)
        let offset = Int(address & 0xfff)
        switch width {
        case 8: return bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        case 4: return UInt64(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        case 2: return UInt64(bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        default: return UInt64(bytes.load(fromByteOffset: offset, as: UInt8.self))
        }
    }

    public func store(_ address: UInt64, width: Int, _ value: UInt64) {
        guard address < size else { return }
        let offset = Int(address & 0xfff)
        if value == 0, page(address) == nil { return }
        let bytes = UnsafeMutableRawPointer(materialize(address))
        switch width {
        case 8: bytes.storeBytes(of: value, toByteOffset: offset, as: UInt64.self)
        case 4: bytes.storeBytes(of: UInt32(truncatingIfNeeded: value), toByteOffset: offset, as: UInt32.self)
        case 2: bytes.storeBytes(of: UInt16(truncatingIfNeeded: value), toByteOffset: offset, as: UInt16.self)
        default: bytes.storeBytes(of: UInt8(truncatingIfNeeded: value), toByteOffset: offset, as: UInt8.self)
        }
    }

    /// Sets all 512 words of frame `frame` to `value` at once (a table
    /// frame zeroed when allocated, poisoned when freed): one page look-up,
    /// not 512 stores.
    public func fill(frame: UInt64, with value: UInt64) {
        let address = frame << 12
        guard address < size, frame < 1 << 52 else { return }
        if value == 0, page(address) == nil { return }
        materialize(address).update(repeating: value, count: 512)
    }

    /// Frame numbers of the pages that hold any data, ascending (for dumps and tests).
    public var backedFrames: [UInt64] {
        var frames: [UInt64] = []
        for chunkIndex in 0..<chunkCount {
            guard let chunk = chunks[chunkIndex] else { continue }
            for slot in 0..<Self.framesPerChunk where chunk[slot] != nil {
                frames.append(UInt64(chunkIndex << 18 | slot))
            }
        }
        return frames
    }
}
