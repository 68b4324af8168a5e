import Foundation

/// A fresh directory under the system temporary directory, removed by ``remove()`` or
/// when the object is deinitialised.
///
/// ```swift
/// let directory = try TemporaryDirectory(prefix: "prosody")
/// try "x".write(toFile: directory.path("file"), atomically: true, encoding: .utf8)
/// ```
public final class TemporaryDirectory: Sendable {
    /// The absolute path of the directory.
    public let path: String

    /// Creates the directory (mode 0755).
    /// - Parameter prefix: The start of the directory's name.
    /// - Throws: ``TestSupportError`` when it cannot be created.
    public init(prefix: String = "xmpp-test") throws {
        let template = (NSTemporaryDirectory() as NSString).appendingPathComponent("\(prefix).XXXXXX")
        var bytes = Array(template.utf8CString)
        guard let result = bytes.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestSupportError("mkdtemp(\(template)) failed: \(String(cString: strerror(errno)))")
        }
        self.path = String(cString: result)
        _ = chmod(self.path, 0o755)
    }

    /// The path of an entry inside the directory.
    /// - Parameter name: A relative path.
    public func path(_ name: String) -> String {
        (self.path as NSString).appendingPathComponent(name)
    }

    /// Removes the directory and everything in it. Safe to call more than once.
    public func remove() {
        try? FileManager.default.removeItem(atPath: self.path)
    }

    deinit {
        self.remove()
    }
}
