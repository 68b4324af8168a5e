import COpenSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// **FOR DEVELOPMENT AND TESTS ONLY.** An in-memory certificate authority that issues TLS
/// certificates for loopback servers (the project's reference server, test fixtures, demos).
///
/// > Warning: Never use this type to protect anything real. The CA's private key lives in
/// > process memory (and only there), certificates are valid for a short time, there is no
/// > revocation, no policy, and no protection of the issued keys beyond file permissions.
/// > Anyone who trusts the CA file trusts every certificate the process issues.
///
/// It uses the OpenSSL 3 C API only (no `openssl` command line):
///
/// ```swift
/// let ca = try DevelopmentCertificateAuthority()
/// let certificate = try ca.issue(dnsNames: ["example.test"], ipAddresses: ["127.0.0.1", "::1"])
/// let files = try certificate.write(toDirectory: "/tmp/state", name: "server")
/// // files.caCertificateFile      -> trust this in clients (TLSTrustRoots.caFile)
/// // files.certificateChainFile   -> TLSServerConfiguration.certificateChainFile
/// // files.privateKeyFile (0600)  -> TLSServerConfiguration.privateKeyFile
/// ```
public final class DevelopmentCertificateAuthority: @unchecked Sendable {
    // @unchecked: `key` and `certificate` are created in init and never mutated; OpenSSL
    // allows concurrent read-only use (signing, PEM encoding) of these objects.

    /// The kind of key pair to generate.
    public enum KeyType: Hashable, Sendable {
        /// RSA, 2048 bits.
        case rsa2048
        /// ECDSA on NIST P-256 (prime256v1). The default: fast to generate.
        case p256
    }

    private let key: OpaquePointer
    private let certificate: OpaquePointer

    /// The CA certificate in PEM: what clients must trust.
    public let certificatePEM: String

    /// Creates a self-signed CA with a fresh key.
    /// - Parameters:
    ///   - commonName: The CA's subject common name.
    ///   - keyType: The CA's key type; P-256 by default.
    ///   - validityDays: How long the CA certificate is valid, from one hour ago.
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` if OpenSSL fails.
    public init(
        commonName: String = "XMPP Development CA (NOT FOR PRODUCTION)",
        keyType: KeyType = .p256,
        validityDays: Int = 30
    ) throws(TLSError) {
        OpenSSLErrorQueue.clear()
        let key = try Self.generateKey(keyType)
        let certificate: OpaquePointer
        do {
            certificate = try Self.makeCertificate(
                subjectKey: key, commonName: commonName, validityDays: validityDays, issuer: nil, issuerKey: key,
                extensions: [
                    (NID_basic_constraints, "critical,CA:TRUE,pathlen:0"),
                    (NID_key_usage, "critical,keyCertSign,cRLSign"),
                    (NID_subject_key_identifier, "hash"),
                ])
        } catch {
            EVP_PKEY_free(key)
            throw error
        }
        self.key = key
        self.certificate = certificate
        do {
            self.certificatePEM = try Self.pem { PEM_write_bio_X509($0, certificate) }
        } catch {
            EVP_PKEY_free(key)
            X509_free(certificate)
            throw error
        }
    }

    deinit {
        X509_free(self.certificate)
        EVP_PKEY_free(self.key)
    }

    /// Issues a leaf certificate (server and client authentication) signed by this CA.
    /// - Parameters:
    ///   - dnsNames: DNS names for the subjectAltName; the first is also the common name.
    ///     At least one name or address is required.
    ///   - ipAddresses: IP addresses for the subjectAltName, e.g. `"127.0.0.1"` and `"::1"`.
    ///   - keyType: The leaf key type; P-256 by default.
    ///   - validityDays: How long the certificate is valid, from one hour ago.
    /// - Returns: The certificate, its key and the CA certificate, in PEM.
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` if OpenSSL fails or no name is given.
    public func issue(
        dnsNames: [String],
        ipAddresses: [String] = [],
        keyType: KeyType = .p256,
        validityDays: Int = 7
    ) throws(TLSError) -> DevelopmentCertificate {
        guard !dnsNames.isEmpty || !ipAddresses.isEmpty else {
            throw .configuration("a development certificate needs at least one DNS name or IP address")
        }
        for name in dnsNames + ipAddresses where name.contains(",") || name.contains("\n") || name.isEmpty {
            throw .configuration("invalid subjectAltName entry '\(name)'")
        }
        OpenSSLErrorQueue.clear()
        let leafKey = try Self.generateKey(keyType)
        defer { EVP_PKEY_free(leafKey) }
        let altNames = (dnsNames.map { "DNS:\($0)" } + ipAddresses.map { "IP:\($0)" }).joined(separator: ",")
        let leaf = try Self.makeCertificate(
            subjectKey: leafKey, commonName: dnsNames.first ?? ipAddresses[0], validityDays: validityDays,
            issuer: self.certificate, issuerKey: self.key,
            extensions: [
                (NID_basic_constraints, "critical,CA:FALSE"),
                (NID_key_usage, "critical,digitalSignature,keyEncipherment"),
                (NID_ext_key_usage, "serverAuth,clientAuth"),
                (NID_subject_key_identifier, "hash"),
                (NID_authority_key_identifier, "keyid:always"),
                (NID_subject_alt_name, altNames),
            ])
        defer { X509_free(leaf) }
        let certificatePEM = try Self.pem { PEM_write_bio_X509($0, leaf) }
        let keyPEM = try Self.pem { PEM_write_bio_PrivateKey($0, leafKey, nil, nil, 0, nil, nil) }
        return DevelopmentCertificate(
            certificatePEM: certificatePEM, privateKeyPEM: keyPEM, caCertificatePEM: self.certificatePEM)
    }

    // MARK: OpenSSL

    private static func generateKey(_ type: KeyType) throws(TLSError) -> OpaquePointer {
        let key: OpaquePointer?
        switch type {
        case .rsa2048: key = cxmpp_EVP_RSA_gen(2048)
        case .p256: key = cxmpp_EVP_EC_gen("P-256")
        }
        guard let key else {
            throw .configuration("cannot generate a key: \(OpenSSLErrorQueue.drain(fallback: "unknown error"))")
        }
        return key
    }

    /// Builds and signs an X.509 v3 certificate; `issuer == nil` means self-signed.
    private static func makeCertificate(
        subjectKey: OpaquePointer,
        commonName: String,
        validityDays: Int,
        issuer: OpaquePointer?,
        issuerKey: OpaquePointer,
        extensions: [(Int32, String)]
    ) throws(TLSError) -> OpaquePointer {
        guard let certificate = X509_new() else {
            throw .configuration("X509_new failed: \(OpenSSLErrorQueue.drain(fallback: "out of memory"))")
        }
        func fail(_ what: String) -> TLSError {
            X509_free(certificate)
            return .configuration("\(what): \(OpenSSLErrorQueue.drain(fallback: "unknown error"))")
        }
        guard X509_set_version(certificate, 2) == 1 else { throw fail("X509_set_version failed") }
        // A random positive 63-bit serial: browsers and OpenSSL reject duplicates per issuer.
        let serial = Int64.random(in: 1...Int64.max)
        guard ASN1_INTEGER_set_int64(X509_get_serialNumber(certificate), serial) == 1 else {
            throw fail("cannot set the serial number")
        }
        guard X509_gmtime_adj(X509_getm_notBefore(certificate), -3600) != nil,
            X509_gmtime_adj(X509_getm_notAfter(certificate), max(1, validityDays) * 86_400) != nil
        else { throw fail("cannot set the validity period") }
        guard X509_set_pubkey(certificate, subjectKey) == 1 else { throw fail("X509_set_pubkey failed") }
        guard let name = X509_get_subject_name(certificate),
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, commonName, -1, -1, 0) == 1
        else { throw fail("cannot set the common name") }
        let issuerName = issuer.map { X509_get_subject_name($0) } ?? name
        guard X509_set_issuer_name(certificate, issuerName) == 1 else { throw fail("cannot set the issuer") }

        var context = X509V3_CTX()
        X509V3_set_ctx(&context, issuer ?? certificate, certificate, nil, nil, 0)
        for (nid, value) in extensions {
            guard let extensionValue = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                throw fail("cannot build extension \(String(cString: OBJ_nid2sn(nid))) = \(value)")
            }
            let added = X509_add_ext(certificate, extensionValue, -1)
            X509_EXTENSION_free(extensionValue)
            guard added == 1 else { throw fail("X509_add_ext failed") }
        }
        guard X509_sign(certificate, issuerKey, EVP_sha256()) > 0 else { throw fail("X509_sign failed") }
        return certificate
    }

    /// Runs a `PEM_write_bio_*` call on a memory BIO and returns what it wrote.
    private static func pem(_ write: (OpaquePointer) -> Int32) throws(TLSError) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else {
            throw .configuration("BIO_new failed: \(OpenSSLErrorQueue.drain(fallback: "out of memory"))")
        }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else {
            throw .configuration("PEM encoding failed: \(OpenSSLErrorQueue.drain(fallback: "unknown error"))")
        }
        let count = Int(BIO_ctrl_pending(bio))
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(count)) }
        guard read == Int32(count) else { throw .configuration("cannot read the PEM encoding back") }
        let text = String(decoding: bytes, as: UTF8.self)
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { memset(base, 0, buffer.count) }
        }
        return text
    }
}
