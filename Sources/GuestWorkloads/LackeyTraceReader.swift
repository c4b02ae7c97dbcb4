#if canImport(Glibc)
import Glibc
#endif
import ScenarioLanguage

/// A Lackey trace file read as a stream: fixed-size chunks from the file,
/// lines found with `memchr` and parsed in place (no string per line), so
/// that memory stays the same whatever the trace's length. The same rules
/// as `LackeyTrace.parse` (`LackeyLineScanner`).
public final class LackeyTraceReader {
    public let fileName: String
    /// The file's size in bytes, and how many have been consumed (for progress).
    public let size: UInt64
    @exclusivity(unchecked) public private(set) var consumed: UInt64 = 0
    /// Records returned so far.
    public var records: Int { scanner.records }

    /// Bytes read at a time; also the longest line that can be a record (a
    /// longer one is skipped if it is not a record, an error if it starts like one).
    static let chunkSize = 1 << 20

    private let descriptor: Int32
    private let buffer: UnsafeMutableBufferPointer<UInt8>
    // Read on every line: no dynamic exclusivity checks (nothing here is
    // ever accessed overlapping).
    @exclusivity(unchecked) private var start = 0
    @exclusivity(unchecked) private var end = 0  // the unconsumed bytes are [start, end)
    @exclusivity(unchecked) private var endOfFile = false
    @exclusivity(unchecked) private var skippingLongLine = false
    @exclusivity(unchecked) private var finished = false
    @exclusivity(unchecked) private var scanner: LackeyLineScanner

    /// Opens `path`; an error names the file and what is wrong with it.
    public init(path: String) throws(ScenarioError) {
        fileName = path
        scanner = LackeyLineScanner(fileName: path)
        let advice = "valgrind --tool=lackey --trace-mem=yes --log-file=FILE PROGRAM writes one"
        var status = stat()
        guard stat(path, &status) == 0 else {
            let reason = errno == ENOENT ? "no such file" : String(cString: strerror(errno))
            throw ScenarioError(file: path, line: 1, column: 1, message: "expected a readable trace file (\(advice)), found \(reason)")
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw ScenarioError(file: path, line: 1, column: 1, message: "expected a trace file (\(advice)), found \(status.st_mode & S_IFMT == S_IFDIR ? "a directory" : "something that is not a regular file")")
        }
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw ScenarioError(file: path, line: 1, column: 1, message: "expected a readable trace file (\(advice)), found \(String(cString: strerror(errno)))")
        }
        self.descriptor = descriptor
        size = UInt64(status.st_size)
        buffer = .allocate(capacity: Self.chunkSize)
    }

    deinit {
        close(descriptor)
        buffer.deallocate()
    }

    /// The next record, or nil at the end of the trace (after checking that
    /// it had records).
    public func next() throws(ScenarioError) -> LackeyTrace.Record? {
        while true {
            if start < end, let newline = memchr(buffer.baseAddress! + start, 0x0a, end - start) {
                let lineEnd = buffer.baseAddress!.distance(to: newline.assumingMemoryBound(to: UInt8.self))
                let line = UnsafeBufferPointer(rebasing: buffer[start..<lineEnd])
                consumed += UInt64(lineEnd + 1 - start)
                start = lineEnd + 1
                if skippingLongLine {
                    skippingLongLine = false
                    continue
                }
                if let record = try scanner.scan(line) { return record }
                continue
            }
            if endOfFile {
                if start < end, !skippingLongLine {
                    // A last line without a newline.
                    let line = UnsafeBufferPointer(rebasing: buffer[start..<end])
                    consumed += UInt64(end - start)
                    start = end
                    if let record = try scanner.scan(line) { return record }
                }
                start = end
                if !finished {
                    finished = true
                    try scanner.finish()
                }
                return nil
            }
            try refill()
        }
    }

    /// Moves the unconsumed bytes to the front and reads more after them.
    private func refill() throws(ScenarioError) {
        if start == 0, end == buffer.count {
            // A line longer than the buffer: a record cannot be that long.
            let line = UnsafeBufferPointer(rebasing: buffer[0..<end])
            if !skippingLongLine, try scanner.scan(line) != nil || LackeyTrace.startsLikeRecord(line) {
                throw ScenarioError(file: fileName, line: scanner.line, column: 1, message: "expected a record of at most \(Self.chunkSize) bytes, found a longer line")
            }
            skippingLongLine = true
            consumed += UInt64(end)
            start = 0
            end = 0
        } else if start > 0 {
            let remaining = end - start
            if remaining > 0 { memmove(buffer.baseAddress!, buffer.baseAddress! + start, remaining) }
            start = 0
            end = remaining
        }
        let count = read(descriptor, buffer.baseAddress! + end, buffer.count - end)
        guard count >= 0 else {
            throw ScenarioError(file: fileName, line: scanner.line + 1, column: 1, message: "expected to read the trace, found \(String(cString: strerror(errno)))")
        }
        if count == 0 { endOfFile = true }
        end += count
    }
}

extension LackeyTrace {
    /// Whether a line's first word is a record letter (it must then parse as one).
    static func startsLikeRecord(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 }
        guard index < bytes.count, [0x49, 0x4c, 0x53, 0x4d].contains(bytes[index]) else { return false }
        return index + 1 == bytes.count || bytes[index + 1] == 0x20 || bytes[index + 1] == 0x09
    }
}
