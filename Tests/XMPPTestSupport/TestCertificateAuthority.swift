import Foundation

/// A throw-away certificate authority made with the `openssl` command-line tool, and leaf
/// certificates it signs for servers started by tests. Everything lives in a
/// ``TemporaryDirectory``; nothing is committed or installed system-wide.
///
/// ```swift
/// let ca = try await TestCertificateAuthority()
/// let leaf = try await ca.issue(commonName: "localhost", dnsNames: ["localhost", "*.localhost"], owner: .named("prosody"))
/// // clients trust ca.certificatePath; the server uses leaf.certificatePath + leaf.keyPath
/// ```
public final class TestCertificateAuthority: Sendable {
    /// A leaf certificate and its key, as PEM files.
    public struct Leaf: Sendable, Hashable {
        /// The certificate (PEM).
        public var certificatePath: String
        /// The private key (PEM, unencrypted, mode 0600).
        public var keyPath: String
        /// The certificate followed by the key in one PEM file (as ejabberd's `certfile` wants it).
        public var combinedPath: String
    }

    /// The directory that holds the CA and every issued certificate.
    public let directory: TemporaryDirectory
    /// The CA certificate (PEM): the trust root for clients.
    public let certificatePath: String
    private let keyPath: String

    /// The `openssl` executable.
    public static let openssl = "/usr/bin/openssl"

    /// Creates a CA (EC P-256, valid two days) in a fresh temporary directory.
    /// - Parameter commonName: The CA's subject common name.
    /// - Throws: ``TestSupportError`` when `openssl` fails.
    public init(commonName: String = "XMPPTestSupport CA") async throws {
        self.directory = try TemporaryDirectory(prefix: "xmpp-test-ca")
        self.certificatePath = self.directory.path("ca.pem")
        self.keyPath = self.directory.path("ca.key")
        try await Self.openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", self.keyPath])
        try await Self.openssl([
            "req", "-x509", "-new", "-key", self.keyPath, "-subj", "/CN=\(commonName)", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", self.certificatePath,
        ])
        // Servers running as other users must be able to read the CA certificate.
        _ = chmod(self.certificatePath, 0o644)
    }

    /// Issues a leaf certificate (EC P-256, valid two days) with a subjectAltName for every
    /// DNS name, for TLS servers.
    /// - Parameters:
    ///   - commonName: The subject common name (also the file name stem).
    ///   - dnsNames: The DNS names of the subjectAltName; the common name when empty.
    ///   - owner: The account that must read the key (the server's user), or `nil`.
    /// - Returns: The files.
    /// - Throws: ``TestSupportError`` when `openssl` fails.
    public func issue(commonName: String, dnsNames: [String] = [], owner: SystemUser? = nil) async throws -> Leaf {
        let stem = self.directory.path(commonName.replacingOccurrences(of: "*", with: "_wildcard"))
        let names = dnsNames.isEmpty ? [commonName] : dnsNames
        let leaf = Leaf(certificatePath: stem + ".pem", keyPath: stem + ".key", combinedPath: stem + ".combined.pem")
        try await Self.openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", leaf.keyPath])
        try await Self.openssl([
            "req", "-new", "-key", leaf.keyPath, "-subj", "/CN=\(commonName)",
            "-addext", "subjectAltName=" + names.map { "DNS:\($0)" }.joined(separator: ","),
            "-out", stem + ".csr",
        ])
        try await Self.openssl([
            "x509", "-req", "-in", stem + ".csr", "-CA", self.certificatePath, "-CAkey", self.keyPath,
            "-CAcreateserial", "-days", "2", "-sha256", "-copy_extensions", "copy",
            "-extfile", try self.leafExtensionsFile(), "-out", leaf.certificatePath,
        ])
        let certificate = try String(contentsOfFile: leaf.certificatePath, encoding: .utf8)
        let key = try String(contentsOfFile: leaf.keyPath, encoding: .utf8)
        try (certificate + key).write(toFile: leaf.combinedPath, atomically: true, encoding: .utf8)
        for path in [leaf.certificatePath, leaf.keyPath, leaf.combinedPath] {
            _ = chmod(path, path == leaf.certificatePath ? 0o644 : 0o600)
            try owner?.own(path)
        }
        return leaf
    }

    private func leafExtensionsFile() throws -> String {
        let path = self.directory.path("leaf.ext")
        if !FileManager.default.fileExists(atPath: path) {
            try """
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,digitalSignature,keyAgreement
            extendedKeyUsage = serverAuth,clientAuth

            """.write(toFile: path, atomically: true, encoding: .utf8)
        }
        return path
    }

    private static func openssl(_ arguments: [String]) async throws {
        let result = try await runCommand(Self.openssl, arguments, timeout: .seconds(30))
        guard result.status == 0 else {
            throw TestSupportError("openssl \(arguments.joined(separator: " ")) exited \(result.status): \(result.output)")
        }
    }
}
