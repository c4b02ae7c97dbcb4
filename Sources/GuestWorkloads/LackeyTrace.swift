import ScenarioLanguage
import ScenarioRuntime
/// A memory-access trace in the text format of Valgrind's Lackey tool
/// (`valgrind --tool=lackey --trace-mem=yes PROGRAM`):
///
/// ```
/// I  0400d7d4,8
///  S 7ff000398,8
///  L 04f6b868,8
///  M 0421b6c0,4
/// ```
///
/// One record per line: `I` an instruction fetch, `L` a load, `S` a store,
/// `M` a modify (a load then a store of the same bytes), then a hexadecimal
/// address (no `0x`), a comma and the size in bytes. Lines that start with
/// `==` (Valgrind's own messages) are ignored, and so is any line whose first
/// word is not a record letter (the traced program's output). A line that
/// starts like a record but does not finish like one is an error naming its
/// file, line and column.
public struct LackeyTrace: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case instruction = "I", load = "L", store = "S", modify = "M"
    }

    public struct Record: Sendable, Equatable {
        public var kind: Kind
        public var address: UInt64
        /// Bytes accessed, 1...4096.
        public var size: Int
        /// Where it came from (1-based; the column is the address's).
        public var line: Int
        public var column: Int

        public init(kind: Kind, address: UInt64, size: Int, line: Int, column: Int) {
            self.kind = kind
            self.address = address
            self.size = size
            self.line = line
            self.column = column
        }
    }

    public var fileName: String
    public var records: [Record]

    /// The largest access size accepted (a `fxsave`-sized access fits).
    public static let maximumSize = 4096

    /// Parses a whole trace held in memory (small traces and tests; a file
    /// is read with `LackeyTraceReader`, which never holds it).
    public static func parse(_ text: String, fileName: String) throws(ScenarioError) -> LackeyTrace {
        var bytes = Array(text.utf8)
        var records: [Record] = []
        var scanner = LackeyLineScanner(fileName: fileName)
        try bytes.withUnsafeMutableBufferPointer { (buffer) throws(ScenarioError) in
            var start = 0
            while start <= buffer.count {
                var end = start
                while end < buffer.count, buffer[end] != 0x0a { end += 1 }
                if end == buffer.count, start == end { break }
                if let record = try scanner.scan(UnsafeBufferPointer(rebasing: buffer[start..<end])) { records.append(record) }
                start = end + 1
            }
        }
        try scanner.finish()
        return LackeyTrace(fileName: fileName, records: records)
    }

    /// Parses one line (without its newline) as a record; nil for a line
    /// that is not one (Valgrind's messages, the program's output).
    static func parseLine(_ bytes: UnsafeBufferPointer<UInt8>, line: Int, fileName: String) throws(ScenarioError) -> Record? {
        func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0d }
        func column(_ index: Int) -> Int {
            // Columns count characters: the common all-ASCII prefix is its length.
            let prefix = UnsafeBufferPointer(rebasing: bytes[..<index])
            return prefix.allSatisfy { $0 < 0x80 } ? index + 1 : String(decoding: prefix, as: UTF8.self).count + 1
        }
        func word(at index: Int) -> String {
            var end = index
            while end < bytes.count, !isBlank(bytes[end]) { end += 1 }
            return end == index ? "end of line" : "'" + String(decoding: UnsafeBufferPointer(rebasing: bytes[index..<end]), as: UTF8.self) + "'"
        }
        func failure(_ expected: String, at index: Int) -> ScenarioError {
            ScenarioError(file: fileName, line: line, column: column(index), message: "expected \(expected), found \(index < bytes.count ? word(at: index) : "end of line")")
        }

        if bytes.count >= 2, bytes[0] == 0x3d, bytes[1] == 0x3d { return nil }  // "==pid== …"
        var index = 0
        while index < bytes.count, isBlank(bytes[index]) { index += 1 }
        guard index < bytes.count else { return nil }
        let kind: Kind
        switch bytes[index] {
        case 0x49: kind = .instruction  // I
        case 0x4c: kind = .load         // L
        case 0x53: kind = .store        // S
        case 0x4d: kind = .modify       // M
        default: return nil
        }
        // A record letter must stand alone ("Starting…" is program output).
        let letter = index
        index += 1
        guard index == bytes.count || isBlank(bytes[index]) else { return nil }
        while index < bytes.count, isBlank(bytes[index]) { index += 1 }

        let addressStart = index
        var address: UInt64 = 0
        var digits = 0
        while index < bytes.count, let digit = hexDigit(bytes[index]) {
            if digits == 16 {
                throw ScenarioError(file: fileName, line: line, column: column(addressStart), message: "expected an address of at most 16 hexadecimal digits after '\(kind.rawValue)', found \(word(at: addressStart))")
            }
            address = address << 4 | UInt64(digit)
            digits += 1
            index += 1
        }
        guard digits > 0 else {
            throw failure("a hexadecimal address (without 0x) after '\(kind.rawValue)' (column \(column(letter)))", at: index)
        }
        guard index < bytes.count, bytes[index] == 0x2c else {
            throw failure("',' and a size in bytes after the address", at: index)
        }
        index += 1
        let sizeStart = index
        var size = 0
        while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
            size = min(size * 10 + Int(bytes[index] - 0x30), Int(Int32.max))
            index += 1
        }
        guard index > sizeStart else { throw failure("a size in bytes (decimal) after ','", at: index) }
        guard (1...maximumSize).contains(size) else {
            throw ScenarioError(file: fileName, line: line, column: column(sizeStart), message: "expected a size from 1 to \(maximumSize) bytes, found \(word(at: sizeStart))")
        }
        while index < bytes.count, isBlank(bytes[index]) { index += 1 }
        guard index == bytes.count else { throw failure("the end of the line after the size", at: index) }
        guard address &+ UInt64(size) >= address else {
            throw ScenarioError(file: fileName, line: line, column: column(addressStart), message: "expected an access that ends below 2^64, found \(size) bytes at \(word(at: addressStart))")
        }
        return Record(kind: kind, address: address, size: size, line: line, column: column(addressStart))
    }

    @inline(__always)
    static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }
}

/// The line-by-line rules shared by the in-memory parser and the streaming
/// reader: line numbers, records, and the refusals of a file that is not a
/// Lackey trace — one whose first line is neither a Valgrind message
/// (`==PID== …`) nor a record (a scenario, a binary, a log of something
/// else), and one with no records at all (Lackey run without
/// `--trace-mem=yes`, or an empty file).
struct LackeyLineScanner {
    let fileName: String
    private(set) var line = 0
    private(set) var records = 0
    private var sawFirstLine = false

    init(fileName: String) { self.fileName = fileName }

    mutating func scan(_ bytes: UnsafeBufferPointer<UInt8>) throws(ScenarioError) -> LackeyTrace.Record? {
        line += 1
        let record = try LackeyTrace.parseLine(bytes, line: line, fileName: fileName)
        if !sawFirstLine, bytes.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0d }) {
            sawFirstLine = true
            let valgrind = bytes.count >= 2 && bytes[0] == 0x3d && bytes[1] == 0x3d
            guard valgrind || record != nil else {
                // The first 40 characters, not bytes: the in-memory parser sees
                // invalid UTF-8 already replaced (U+FFFD, 3 bytes), the streaming
                // reader the raw byte, and both must quote the same text.
                let text = String(String(decoding: UnsafeBufferPointer(rebasing: bytes[..<min(bytes.count, 160)]), as: UTF8.self).unicodeScalars.prefix(40))
                throw ScenarioError(
                    file: fileName, line: line, column: 1,
                    message: "expected a Lackey trace (lines '==PID== …' and records like ' L 04f6b868,8', as valgrind --tool=lackey --trace-mem=yes writes), found \(ScenarioParser.quoted(text))")
            }
        }
        if record != nil { records += 1 }
        return record
    }

    /// At the end of the input: a trace without records is refused.
    func finish() throws(ScenarioError) {
        guard records == 0 else { return }
        let found = sawFirstLine ? "\(line) lines and no I/L/S/M records" : "an empty file"
        throw ScenarioError(
            file: fileName, line: max(line, 1), column: 1,
            message: "expected memory-access records (record the trace with valgrind --tool=lackey --trace-mem=yes --log-file=FILE PROGRAM), found \(found)")
    }
}
