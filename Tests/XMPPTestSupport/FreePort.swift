import Foundation

/// Free TCP ports on the loopback interface, for servers started by tests.
///
/// A port is found by binding `127.0.0.1:0`, reading the port the kernel chose and closing
/// the socket. Another process may take the port between that moment and the server's
/// bind, so fixtures allocate their ports immediately before starting the server.
public enum FreePort {
    /// Returns one free loopback port.
    /// - Throws: ``TestSupportError`` when no socket can be bound.
    public static func allocate() throws -> Int {
        try self.allocate(count: 1)[0]
    }

    /// Returns `count` distinct free loopback ports. All sockets are held open until the last
    /// port is found, so the ports differ from each other.
    /// - Parameter count: How many ports.
    /// - Throws: ``TestSupportError`` when no socket can be bound.
    public static func allocate(count: Int) throws -> [Int] {
        var descriptors: [Int32] = []
        defer { descriptors.forEach { _ = close($0) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw TestSupportError("socket() failed: \(String(cString: strerror(errno)))") }
            descriptors.append(fd)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = 0
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else { throw TestSupportError("bind(127.0.0.1:0) failed: \(String(cString: strerror(errno)))") }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let named = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            guard named == 0 else { throw TestSupportError("getsockname failed: \(String(cString: strerror(errno)))") }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
        }
        return ports
    }

    /// Whether something accepts TCP connections on `127.0.0.1:port` right now.
    /// - Parameter port: The port.
    public static func isAccepting(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { _ = close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return result == 0
    }
}

/// An error of the test-support layer: a fixture that cannot be set up, started or stopped.
/// The description says what failed and, where it helps, includes the server's log tail.
public struct TestSupportError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public var description: String

    /// Creates an error.
    /// - Parameter description: What went wrong.
    public init(_ description: String) {
        self.description = description
    }
}
