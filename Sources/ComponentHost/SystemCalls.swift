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
