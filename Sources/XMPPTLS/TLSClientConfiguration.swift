/// The settings of a TLS client, turned into an ``OpenSSLContext`` with ``OpenSSLContext/init(client:)``.
public struct TLSClientConfiguration: Sendable, Hashable {
    /// The host name sent as SNI and checked against the server certificate (`SSL_set1_host`).
    ///
    /// ``OpenSSLHandler/init(context:serverName:shutdownTimeout:)`` can override it per connection.
    public var serverName: String
    /// The certificates that anchor verification of the server certificate.
    public var trustRoots: TLSTrustRoots
    /// Whether the server certificate is verified; ``TLSCertificateVerification/fullVerification`` by default.
    public var certificateVerification: TLSCertificateVerification
    /// The oldest version offered; TLS 1.2 by default.
    public var minimumVersion: TLSVersion
    /// The newest version offered, or `nil` for the newest OpenSSL supports.
    public var maximumVersion: TLSVersion?
    /// A PEM file with the client certificate followed by its intermediates, for SASL EXTERNAL.
    public var certificateChainFile: String?
    /// The PEM file with the private key of ``certificateChainFile``.
    public var privateKeyFile: String?

    /// Creates a client configuration.
    ///
    /// - Parameters:
    ///   - serverName: The host name for SNI and certificate verification.
    ///   - trustRoots: The trust anchors; the system store by default.
    ///   - certificateVerification: Whether to verify the server; full verification by default.
    ///   - minimumVersion: The oldest version offered.
    ///   - maximumVersion: The newest version offered, or `nil` for no limit.
    ///   - certificateChainFile: An optional client certificate chain (PEM).
    ///   - privateKeyFile: The private key (PEM) for `certificateChainFile`.
    public init(
        serverName: String,
        trustRoots: TLSTrustRoots = .system,
        certificateVerification: TLSCertificateVerification = .fullVerification,
        minimumVersion: TLSVersion = .v1_2,
        maximumVersion: TLSVersion? = nil,
        certificateChainFile: String? = nil,
        privateKeyFile: String? = nil
    ) {
        self.serverName = serverName
        self.trustRoots = trustRoots
        self.certificateVerification = certificateVerification
        self.minimumVersion = minimumVersion
        self.maximumVersion = maximumVersion
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
    }
}
