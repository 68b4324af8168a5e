#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// **FOR DEVELOPMENT AND TESTS ONLY.** A leaf certificate issued by a
/// ``DevelopmentCertificateAuthority``, with its private key, in PEM.
///
/// ``description`` never shows the private key.
public struct DevelopmentCertificate: Sendable, CustomStringConvertible {
    /// The paths written by ``write(toDirectory:name:)``.
    public struct Files: Hashable, Sendable {
        /// The CA certificate (`<name>-ca.pem`): the trust root for clients.
        public var caCertificateFile: String
        /// The leaf certificate followed by the CA certificate (`<name>-chain.pem`).
        public var certificateChainFile: String
        /// The leaf's private key (`<name>-key.pem`), permissions `0600`.
        public var privateKeyFile: String

        /// The matching server TLS settings.
        public var serverConfiguration: TLSServerConfiguration {
            TLSServerConfiguration(certificateChainFile: self.certificateChainFile, privateKeyFile: self.privateKeyFile)
        }
    }

    /// The leaf certificate.
    public let certificatePEM: String
    /// The leaf's private key (PKCS #8, unencrypted).
    public let privateKeyPEM: String
    /// The issuing CA's certificate.
    public let caCertificatePEM: String

    /// The leaf followed by the CA certificate: what a server presents.
    public var chainPEM: String { self.certificatePEM + self.caCertificatePEM }

    /// Writes the CA certificate, the chain and the key (mode `0600`) into a directory,
    /// replacing files of the same names.
    /// - Parameters:
    ///   - directory: An existing directory.
    ///   - name: The file name prefix, e.g. `"server"`.
    /// - Returns: The paths written.
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` if a file cannot be written.
    public func write(toDirectory directory: String, name: String) throws(TLSError) -> Files {
        let base = directory.hasSuffix("/") ? directory + name : directory + "/" + name
        let files = Files(
            caCertificateFile: base + "-ca.pem",
            certificateChainFile: base + "-chain.pem",
            privateKeyFile: base + "-key.pem"
        )
        try Self.writeFile(files.caCertificateFile, self.caCertificatePEM, mode: 0o644)
        try Self.writeFile(files.certificateChainFile, self.chainPEM, mode: 0o644)
        try Self.writeFile(files.privateKeyFile, self.privateKeyPEM, mode: 0o600)
        return files
    }

    /// The subject certificate only; the key is never shown.
    public var description: String {
        "DevelopmentCertificate(\(self.certificatePEM.utf8.count) bytes of PEM, key hidden)"
    }

    private static func writeFile(_ path: String, _ text: String, mode: mode_t) throws(TLSError) {
        // Remove first so that an existing file's wider permissions are not kept.
        unlink(path)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            throw .configuration("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        _ = fchmod(descriptor, mode)
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw .configuration("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            offset += written
        }
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { memset(base, 0, buffer.count) }
        }
    }
}
