import Foundation
import Testing

// MARK: Paths

/// The package root, found from this file's path (Tests/ShadowMMUCommandsTests/Support.swift).
let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

let examplesDirectory = packageRoot.appendingPathComponent("examples")

/// Every `.scenario` file in `examples/`, by name, sorted.
let exampleFiles: [String] = {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: examplesDirectory.path)) ?? []
    return names.filter { $0.hasSuffix(".scenario") }.sorted()
}()

/// The `shadowmmu` executable built with these tests.
///
/// `swift test` runs the test product from the build directory that also holds
/// the `shadowmmu` executable (`.build*/<triple>/debug/`). Looked for, in order:
/// `$SHADOWMMU_BINARY`; next to the running test executable (Linux) or next to
/// the `.xctest` bundle (macOS); the newest `.build*/debug/shadowmmu` under the
/// package root.
let shadowmmuBinary: Result<URL, BinaryNotFound> = {
    let fileManager = FileManager.default
    var tried: [String] = []
    func usable(_ url: URL) -> Bool {
        tried.append(url.path)
        return fileManager.isExecutableFile(atPath: url.path)
    }
    if let explicit = ProcessInfo.processInfo.environment["SHADOWMMU_BINARY"], usable(URL(fileURLWithPath: explicit)) {
        return .success(URL(fileURLWithPath: explicit))
    }
    var directories: [URL] = []
    if let argument0 = ProcessInfo.processInfo.arguments.first {
        directories.append(URL(fileURLWithPath: argument0).resolvingSymlinksInPath().deletingLastPathComponent())
    }
    let bundle = Bundle.main.bundleURL.resolvingSymlinksInPath()
    directories += [bundle, bundle.deletingLastPathComponent()]
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        directories.append(bundle.bundleURL.resolvingSymlinksInPath().deletingLastPathComponent())
    }
    for directory in directories {
        let candidate = directory.appendingPathComponent("shadowmmu")
        if usable(candidate) { return .success(candidate) }
    }
    // Fall back to any build directory of the package, newest binary first.
    let buildDirectories = ((try? fileManager.contentsOfDirectory(atPath: packageRoot.path)) ?? [])
        .filter { $0.hasPrefix(".build") }
    var found: [(URL, Date)] = []
    for name in buildDirectories {
        let candidate = packageRoot.appendingPathComponent(name).appendingPathComponent("debug/shadowmmu")
        if usable(candidate) {
            let date = (try? fileManager.attributesOfItem(atPath: candidate.path)[.modificationDate] as? Date) ?? .distantPast
            found.append((candidate, date))
        }
    }
    if let newest = found.max(by: { $0.1 < $1.1 }) { return .success(newest.0) }
    return .failure(BinaryNotFound(tried: tried))
}()

struct BinaryNotFound: Error, CustomStringConvertible {
    var tried: [String]
    var description: String {
        "the shadowmmu executable was not found (build it with `swift build --build-tests`, or set "
            + "SHADOWMMU_BINARY); looked at: " + tried.joined(separator: ", ")
    }
}

// MARK: Running the tool

struct ToolResult {
    var status: Int32
    var stdout: String
    var stderr: String

    var stdoutLines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
    var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
}

/// Runs `shadowmmu ARGUMENTS` in the package root and collects its exit status and output.
func shadowmmu(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> ToolResult {
    let binary: URL
    switch shadowmmuBinary {
    case .success(let url): binary = url
    case .failure(let error):
        Issue.record("\(error)", sourceLocation: sourceLocation)
        throw error
    }
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("shadowmmu-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let outURL = scratch.appendingPathComponent("stdout")
    let errURL = scratch.appendingPathComponent("stderr")
    FileManager.default.createFile(atPath: outURL.path, contents: nil)
    FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL)
    let err = try FileHandle(forWritingTo: errURL)
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    process.currentDirectoryURL = packageRoot
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = out
    process.standardError = err
    try process.run()
    process.waitUntilExit()
    try out.close()
    try err.close()
    return ToolResult(
        status: process.terminationStatus,
        stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
        stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
}

/// A scenario written to a temporary file for the duration of `body`; the
/// file name (not the path) is what diagnostics show when run from its directory,
/// so `body` gets the full path.
func withScenarioFile<T>(_ name: String = "t.scenario", _ text: String, _ body: (String) throws -> T) throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shadowmmu-scenario-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent(name)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return try body(url.path)
}

// MARK: A small JSON reader that keeps object keys in order

/// Parsed JSON, objects as ordered (key, value) lists so tests can check the
/// contract's fixed field order.
indirect enum JSON: Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    static func == (a: JSON, b: JSON) -> Bool { a.description == b.description }

    var keys: [String] { if case .object(let fields) = self { fields.map(\.0) } else { [] } }

    subscript(key: String) -> JSON? {
        if case .object(let fields) = self { return fields.first { $0.0 == key }?.1 }
        return nil
    }

    var string: String? { if case .string(let value) = self { value } else { nil } }
    var int: Int? { if case .number(let value) = self, value == value.rounded() { Int(value) } else { nil } }
    var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    var array: [JSON]? { if case .array(let value) = self { value } else { nil } }

    var description: String {
        switch self {
        case .null: "null"
        case .bool(let value): "\(value)"
        case .number(let value): "\(value)"
        case .string(let value): "\"\(value)\""
        case .array(let items): "[" + items.map(\.description).joined(separator: ",") + "]"
        case .object(let fields): "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        var message: String
        var offset: Int
        var description: String { "invalid JSON at byte \(offset): \(message)" }
    }

    /// Parses exactly one JSON value (surrounding whitespace allowed).
    static func parse(_ text: String) throws -> JSON {
        var parser = Parser(bytes: Array(text.utf8))
        parser.skipWhitespace()
        let value = try parser.value()
        parser.skipWhitespace()
        guard parser.index == parser.bytes.count else { throw ParseError(message: "trailing characters", offset: parser.index) }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        mutating func skipWhitespace() {
            while index < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[index]) { index += 1 }
        }

        func fail(_ message: String) -> ParseError { ParseError(message: message, offset: index) }

        mutating func expect(_ literal: String) throws {
            let literalBytes = Array(literal.utf8)
            guard index + literalBytes.count <= bytes.count, Array(bytes[index..<index + literalBytes.count]) == literalBytes else {
                throw fail("expected \(literal)")
            }
            index += literalBytes.count
        }

        mutating func value() throws -> JSON {
            guard index < bytes.count else { throw fail("unexpected end") }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                index += 1
                var fields: [(String, JSON)] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(fields) }
                while true {
                    skipWhitespace()
                    let key = try string()
                    skipWhitespace()
                    try expect(":")
                    skipWhitespace()
                    fields.append((key, try value()))
                    skipWhitespace()
                    guard index < bytes.count else { throw fail("unterminated object") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(fields) }
                    throw fail("expected , or }")
                }
            case UInt8(ascii: "["):
                index += 1
                var items: [JSON] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                while true {
                    skipWhitespace()
                    items.append(try value())
                    skipWhitespace()
                    guard index < bytes.count else { throw fail("unterminated array") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                    throw fail("expected , or ]")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"):
                try expect("true"); return .bool(true)
            case UInt8(ascii: "f"):
                try expect("false"); return .bool(false)
            case UInt8(ascii: "n"):
                try expect("null"); return .null
            default:
                let start = index
                while index < bytes.count, "+-0123456789.eE".utf8.contains(bytes[index]) { index += 1 }
                guard index > start, let number = Double(String(decoding: bytes[start..<index], as: UTF8.self)) else {
                    throw fail("expected a value")
                }
                return .number(number)
            }
        }

        mutating func string() throws -> String {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a string") }
            index += 1
            var out: [UInt8] = []
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard index < bytes.count else { throw fail("unterminated escape") }
                    let escaped = bytes[index]
                    index += 1
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escaped)
                    case UInt8(ascii: "n"): out.append(0x0a)
                    case UInt8(ascii: "r"): out.append(0x0d)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0c)
                    case UInt8(ascii: "u"):
                        guard index + 4 <= bytes.count,
                              let code = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16),
                              let scalar = Unicode.Scalar(code)
                        else { throw fail("bad \\u escape") }
                        index += 4
                        out.append(contentsOf: Array(String(Character(scalar)).utf8))
                    default: throw fail("bad escape")
                    }
                case 0..<0x20:
                    throw fail("control character in a string")
                default:
                    out.append(byte)
                }
            }
            throw fail("unterminated string")
        }
    }
}

/// `0x` followed by lowercase hexadecimal digits (the contract's form for
/// addresses and register values).
func isContractHex(_ text: String?) -> Bool {
    guard let text, text.hasPrefix("0x") else { return false }
    let digits = text.dropFirst(2)
    return !digits.isEmpty && digits.allSatisfy { "0123456789abcdef".contains($0) }
}
