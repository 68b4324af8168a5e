import Foundation

@testable import ComponentHost

/// A fresh temporary directory, removed by `cleanup()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        // Short paths: a Unix socket path must stay under 108 bytes.
        let path = "/tmp/cht-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        self.path = path
    }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = "\(self.path)/\(name)"
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        return file
    }

    func read(_ name: String) throws -> String {
        try String(contentsOfFile: "\(self.path)/\(name)", encoding: .utf8)
    }

    func cleanup() {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

enum Fixtures {
    static let password = "correct horse battery staple"

    /// A valid configuration: a loopback server nobody listens on, two hostnames.
    static func configuration(socket: String = "/tmp/unused.sock", extra: String = "") -> String {
        """
        [server]
        host = "127.0.0.1"
        port = 1
        domain = "example.com"
        protocol = "xep0225"
        tls = "starttls"

        [auth]
        identity = "component.example.com"
        password_file = "password"

        [admin]
        socket = "\(socket)"

        [[component]]
        hostname = "echo.example.com"
        plugin = "echo"
        [component.options]
        prefix = "> "

        [[component]]
        hostname = "kv.example.com"
        plugin = "kv"
        \(extra)
        """
    }

    /// Writes the password file and the configuration; returns the configuration's path.
    static func write(in directory: TemporaryDirectory, _ text: String) throws -> String {
        let secret = try directory.write("password", password + "\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: secret)
        return try directory.write("host.toml", text)
    }
}
