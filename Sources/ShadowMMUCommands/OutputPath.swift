import Foundation

/// A file or folder a command writes (`-o`, `--emit`, `--save-all`,
/// `--save-failures`), checked before the work starts and written with our
/// own messages: which path, what is wrong with it, what to do.
///
/// One rule for every option: a file's folder must already exist (nothing is
/// created on the way to it), and a folder option's folder is created when
/// missing, inside a parent that exists — the command then says so.
struct OutputPath {
    /// The path as given.
    let path: String
    /// How the command line named it: "-o", "--emit", "--save-all".
    let option: String

    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    private enum Kind { case missing, file, folder, other }

    private static func kind(of path: String) -> Kind {
        var status = stat()
        guard stat(path, &status) == 0 else { return .missing }
        switch status.st_mode & S_IFMT {
        case S_IFDIR: return .folder
        // A device or a pipe (/dev/null, /dev/stdout, a named pipe) is written
        // like a file; sockets and block devices are not.
        case S_IFREG, S_IFCHR, S_IFIFO: return .file
        default: return .other
        }
    }

    /// The folder holding `path` ("." for a bare name).
    private var parent: String {
        let folder = (path as NSString).deletingLastPathComponent
        return folder.isEmpty ? "." : folder
    }

    private func problem(_ what: String, _ reason: String) -> Problem {
        Problem(description: "\(path): cannot \(what) (\(option)): \(reason)")
    }

    /// Why the parent folder cannot hold a new entry, if it cannot.
    private func parentProblem(_ what: String) -> Problem? {
        switch Self.kind(of: parent) {
        case .folder: return nil
        case .missing: return problem(what, "the folder \(parent) does not exist; create it first (mkdir -p \(parent)) or choose another path")
        case .file, .other: return problem(what, "\(parent) is not a folder; choose a path inside a folder")
        }
    }

    /// Checks that `path` can be written as a file: its folder exists, and
    /// it is not itself a folder.
    func checkFile() throws(Problem) {
        let what = "write the file"
        switch Self.kind(of: path) {
        case .folder: throw problem(what, "it is a folder; name a file inside it, e.g. \(option) \(path.hasSuffix("/") ? path : path + "/")NAME")
        case .other: throw problem(what, "it is not a regular file; choose a file path")
        case .file: return
        case .missing: if let problem = parentProblem(what) { throw problem }
        }
    }

    /// Checks that `path` is a folder or can be created as one (in a parent
    /// that exists).
    func checkFolder() throws(Problem) {
        let what = "write files into the folder"
        switch Self.kind(of: path) {
        case .folder: return
        case .file, .other: throw problem(what, "it exists and is not a folder; choose a folder path")
        case .missing: if let problem = parentProblem(what) { throw problem }
        }
    }

    /// Makes `path` a folder (see `checkFolder`); true when it had to be created.
    @discardableResult
    func createFolder() throws(Problem) -> Bool {
        try checkFolder()
        guard Self.kind(of: path) == .missing else { return false }
        guard mkdir(path, 0o755) == 0 || Self.kind(of: path) == .folder else {
            throw problem("create the folder", Self.reason(errno))
        }
        return true
    }

    /// Writes `text` to the file `path`, replacing what it held.
    func write(_ text: String) throws(Problem) {
        try checkFile()
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw problem("write the file", Self.reason(errno)) }
        defer { close(descriptor) }
        var bytes = Array(text.utf8)
        let failure: Int32? = bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += written
            }
            return nil
        }
        if let failure { throw problem("write the file", Self.reason(failure)) }
    }

    /// What an `errno` means for a path the user chose, and what to do.
    private static func reason(_ code: Int32) -> String {
        switch code {
        case EACCES, EPERM: "permission denied; choose a path you can write"
        case EROFS: "the file system is read-only; choose a path on a writable one"
        case ENOSPC, EDQUOT: "no space left on the device; free some or choose another disk"
        case ENAMETOOLONG: "the path is too long"
        case EISDIR: "it is a folder; name a file inside it"
        case ENOENT, ENOTDIR: "the file cannot be created there; choose a path in an ordinary folder"
        default: String(cString: strerror(code))
        }
    }
}
