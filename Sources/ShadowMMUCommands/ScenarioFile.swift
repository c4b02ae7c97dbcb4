import Foundation
import GuestWorkloads
import ScenarioLanguage
import ScenarioRuntime
import ScenarioVerification
import ScenarioVisualization

/// Loading a scenario file named on the command line.
enum ScenarioFile {
    /// The largest scenario file read. A scenario is held whole, parsed,
    /// while it runs: about 15 bytes of memory per byte of file (measured: a
    /// 20 MB file of a million pokes ran in 310 MB), so 64 MiB stays near 1 GB.
    /// Traces are streamed and have no such bound.
    static let maximumSize = 64 << 20

    /// Reads and parses `path`; a file that cannot be read or parsed is a
    /// located `ScenarioError`.
    static func load(_ path: String) throws(ScenarioError) -> Scenario {
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder)
        if exists, !isFolder.boolValue, let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size > maximumSize {
            throw ScenarioError(
                file: path, line: 1, column: 1,
                message: "expected a scenario file of at most \(maximumSize >> 20) MiB (it is held whole while it runs), found \(size >> 20) MiB; split it into several files")
        }
        guard exists, !isFolder.boolValue, let data = FileManager.default.contents(atPath: path) else {
            let reason = !exists ? "no such file" : isFolder.boolValue ? "a folder" : "a file that cannot be read (permission denied?)"
            throw ScenarioError(file: path, line: 1, column: 1, message: "expected a readable scenario file, found \(reason)")
        }
        // Invalid UTF-8 becomes U+FFFD, which the parser reports with its location.
        return try ScenarioParser.parse(String(decoding: data, as: UTF8.self), fileName: path)
    }

    /// Writes a generated scenario; its folder must exist (`OutputPath`).
    static func save(_ text: String, to path: String, option: String) throws(OutputPath.Problem) {
        try OutputPath(path: path, option: option).write(text)
    }
}

/// Standard output and error without per-line system calls.
final class OutputStream {
    private var buffer: [UInt8] = []
    private let descriptor: Int32

    nonisolated(unsafe) static let standardOutput = OutputStream(descriptor: 1)
    nonisolated(unsafe) static let standardError = OutputStream(descriptor: 2)

    init(descriptor: Int32) {
        self.descriptor = descriptor
        buffer.reserveCapacity(1 << 16)
    }

    func writeLine(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        buffer.append(10)
        if buffer.count >= 1 << 16 || descriptor == 2 { flush() }
    }

    func flush() {
        guard !buffer.isEmpty else { return }
        buffer.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Foundation.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
