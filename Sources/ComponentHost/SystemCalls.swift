#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The few POSIX calls the host needs (file modes, sockets on disk), with errno turned
/// into messages.
enum SystemCalls {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static var userID: UInt32 { UInt32(getuid()) }

    static var isRoot: Bool { getuid() == 0 }

    static func errorText(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }

    enum FileKind {
        case missing
        case socket
        case directory
        case other
    }

    static func kind(of path: String) -> FileKind {
        var info = stat()
        guard lstat(path, &info) == 0 else { return .missing }
        switch info.st_mode & S_IFMT {
        case S_IFSOCK: return .socket
        case S_IFDIR: return .directory
        default: return .other
        }
    }

    static func mode(of path: String) -> UInt32? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return UInt32(info.st_mode & 0o7777)
    }

    /// The owner and permission bits of a path itself (a symbolic link is not followed).
    static func ownerAndMode(of path: String) -> (owner: UInt32, group: UInt32, mode: UInt32, isSymlink: Bool)? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return (UInt32(info.st_uid), UInt32(info.st_gid), UInt32(info.st_mode & 0o7777), (info.st_mode & S_IFMT) == S_IFLNK)
    }

    /// Renames a file atomically (same directory), replacing the target.
    static func renameFile(_ source: String, to target: String) throws {
        guard rename(source, target) == 0 else {
            throw Failure(description: "cannot rename \(source) to \(target): \(errorText())")
        }
    }

    /// Replaces `path` atomically with `bytes`: a temporary file next to it, created with
    /// `O_CREAT | O_EXCL | O_NOFOLLOW` under a random name (never an existing file or link),
    /// given `path`'s mode and owner, synced, then renamed over it.
    static func replaceFile(_ path: String, with bytes: [UInt8]) throws {
        let existing = ownerAndMode(of: path)
        if existing?.isSymlink == true {
            throw Failure(description: "\(path) is a symbolic link; refusing to replace it")
        }
        let mode = existing?.mode ?? 0o600
        let directory = parentDirectory(of: path)
        let name = path[path.index(after: path.lastIndex(of: "/") ?? path.startIndex)...]
        var descriptor: Int32 = -1
        var temporary = ""
        for _ in 0..<16 {
            temporary = "\(directory)/.\(name).tmp-\(UInt64.random(in: 0...UInt64.max))"
            descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(0o600))
            if descriptor >= 0 || errno != EEXIST { break }
        }
        guard descriptor >= 0 else {
            throw Failure(description: "cannot create a temporary file in \(directory): \(errorText())")
        }
        var renamed = false
        defer {
            if descriptor >= 0 { close(descriptor) }
            if !renamed { unlink(temporary) }
        }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard written > 0 else {
                throw Failure(description: "cannot write \(temporary): \(errorText())")
            }
            offset += written
        }
        if let existing, existing.owner != userID || existing.group != UInt32(getgid()) {
            guard fchown(descriptor, uid_t(existing.owner), gid_t(existing.group)) == 0 else {
                throw Failure(
                    description: "cannot give the new \(path) its owner \(existing.owner):\(existing.group): \(errorText())")
            }
        }
        guard fchmod(descriptor, mode_t(mode)) == 0, fsync(descriptor) == 0 else {
            throw Failure(description: "cannot finish \(temporary): \(errorText())")
        }
        close(descriptor)
        descriptor = -1
        guard rename(temporary, path) == 0 else {
            throw Failure(description: "cannot replace \(path): \(errorText())")
        }
        renamed = true
    }

    static func changeMode(_ path: String, _ mode: UInt32) throws {
        guard chmod(path, mode_t(mode)) == 0 else {
            throw Failure(description: "cannot chmod \(path): \(errorText())")
        }
    }

    static func removeFile(_ path: String) throws {
        guard unlink(path) == 0 || errno == ENOENT else {
            throw Failure(description: "cannot remove \(path): \(errorText())")
        }
    }

    /// Creates a directory and its missing parents; the last component gets `mode`.
    static func makeDirectory(_ path: String, mode: UInt32) throws {
        if kind(of: path) == .directory { return }
        let parent = parentDirectory(of: path)
        if parent != path, !parent.isEmpty, kind(of: parent) == .missing {
            try makeDirectory(parent, mode: 0o755)
        }
        guard mkdir(path, mode_t(mode)) == 0 || errno == EEXIST else {
            throw Failure(description: "cannot create directory \(path): \(errorText())")
        }
        // mkdir applies the umask; make the mode exact.
        try changeMode(path, mode)
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// Whether something accepts connections on a Unix socket path.
    static func socketAcceptsConnections(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
            buffer[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0
    }
}
