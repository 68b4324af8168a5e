public import Foundation

/// A system account that a server runs as (`prosody`, `ejabberd`), looked up in the
/// password database.
public struct SystemUser: Sendable, Hashable {
    /// The account name.
    public var name: String
    /// The user id.
    public var uid: uid_t
    /// The primary group id.
    public var gid: gid_t
    /// The home directory.
    public var home: String

    /// Looks an account up by name.
    /// - Parameter name: The account name.
    /// - Returns: The account, or `nil` if there is none.
    public static func named(_ name: String) -> SystemUser? {
        guard let entry = getpwnam(name) else { return nil }
        return SystemUser(
            name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid,
            home: String(cString: entry.pointee.pw_dir))
    }

    /// Whether this process runs as root (and can therefore run servers as their own users).
    public static var isRoot: Bool { geteuid() == 0 }

    /// Changes the owner of a file or of a directory tree to this account. Does nothing
    /// unless this process is root.
    /// - Parameter path: The file or directory.
    /// - Throws: ``TestSupportError`` when `chown` fails.
    public func own(_ path: String) throws {
        guard Self.isRoot else { return }
        var paths = [path]
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue,
            let enumerator = FileManager.default.enumerator(atPath: path)
        {
            for case let relative as String in enumerator {
                paths.append((path as NSString).appendingPathComponent(relative))
            }
        }
        for entry in paths where lchown(entry, self.uid, self.gid) != 0 {
            throw TestSupportError("chown \(self.name) \(entry) failed: \(String(cString: strerror(errno)))")
        }
    }

    /// The command prefix that runs a program as this account: `setpriv` when this process
    /// is root (it replaces itself with the program, so the process ID stays the server's),
    /// nothing otherwise.
    public var commandPrefix: [String] {
        guard Self.isRoot else { return [] }
        return ["/usr/bin/setpriv", "--reuid=\(self.uid)", "--regid=\(self.gid)", "--init-groups", "--"]
    }
}
