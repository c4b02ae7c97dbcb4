import ArgumentParser
import Dispatch
import Foundation

/// `--quiet` and `--verbose`, the same on every long-running command.
struct OutputOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Print only results and errors: no progress line, no per-step lines.")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Also describe each step on standard error (each guest, mode or kernel event).")
    var verbose = false

    func validate() throws {
        if quiet && verbose { throw ValidationError("--quiet and --verbose exclude each other: pass at most one of them") }
    }

    /// The progress line these options allow: on a terminal, unless quiet.
    func progressLine() -> ProgressLine { ProgressLine(enabled: !quiet && isatty(2) != 0) }
}

/// One line on standard error that a long command keeps rewriting with how
/// far it has got: `fuzz  pae  120/200 (60%)`. It appears only when standard
/// error is a terminal (never in a pipe, a file or a test), is redrawn at
/// most ten times a second, and is erased before anything else is printed.
final class ProgressLine {
    let enabled: Bool
    private var lastDraw: UInt64 = 0
    private var visible = false
    private static let interval: UInt64 = 100_000_000  // ns

    init(enabled: Bool) { self.enabled = enabled }

    /// Shows `label` with `done` of `total` steps (throttled; the last step always shows).
    func update(_ label: String, done: Int, total: Int) {
        guard enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        guard done >= total || now - lastDraw >= Self.interval else { return }
        lastDraw = now
        let percent = total > 0 ? done * 100 / total : 0
        var text = "\(label)  \(done)/\(total) (\(percent)%)"
        if text.count > 78 { text = String(text.suffix(78)) }
        write("\r\u{1B}[K" + text)
        visible = true
    }

    /// Erases the line (before other output, and at the end).
    func clear() {
        guard enabled, visible else { return }
        write("\r\u{1B}[K")
        visible = false
    }

    /// A message on standard error that the progress line must not garble.
    func message(_ text: String) {
        clear()
        OutputStream.standardError.writeLine(text)
    }

    private func write(_ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
    }
}
