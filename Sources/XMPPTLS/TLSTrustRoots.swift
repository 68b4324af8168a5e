/// Where the certificates that anchor peer verification come from.
public enum TLSTrustRoots: Sendable, Hashable {
    /// OpenSSL's default verify paths (on Debian, `/etc/ssl/certs`), honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`.
    case system
    /// A PEM file holding one or more trusted CA certificates.
    case caFile(String)
    /// A directory of trusted CA certificates in OpenSSL's hashed format (`openssl rehash`).
    case caDirectory(String)
}

/// Whether the peer's certificate is verified.
public enum TLSCertificateVerification: Sendable, Hashable {
    /// Verify the certificate chain against the trust roots and, on a client, the server name. The default.
    case fullVerification
    /// Accept any certificate, including one for the wrong host or from an unknown issuer.
    ///
    /// This removes all protection against active attackers. Use it only against development servers.
    case noVerificationInsecureDevelopmentOnly
}
