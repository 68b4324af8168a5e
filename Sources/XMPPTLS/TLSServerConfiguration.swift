/// The settings of a TLS server, turned into an ``OpenSSLContext`` with ``OpenSSLContext/init(server:)``.
public struct TLSServerConfiguration: Sendable, Hashable {
    /// Whether and how a server asks the client for a certificate (for SASL EXTERNAL).
    public enum ClientCertificateRequest: Sendable, Hashable {
        /// No client certificate is requested. The default.
        case none
        /// A certificate is requested; a client without one is still accepted, one with an unverifiable one is not.
        case optional(trustRoots: TLSTrustRoots)
        /// A verifiable client certificate is required to complete the handshake.
        case required(trustRoots: TLSTrustRoots)
    }

    /// A PEM file with the server certificate followed by its intermediates.
    public var certificateChainFile: String
    /// The PEM file with the private key of ``certificateChainFile``.
    public var privateKeyFile: String
    /// The oldest version accepted; TLS 1.2 by default.
    public var minimumVersion: TLSVersion
    /// The newest version accepted, or `nil` for the newest OpenSSL supports.
    public var maximumVersion: TLSVersion?
    /// Whether the client is asked for a certificate.
    public var clientCertificateRequest: ClientCertificateRequest

    /// Creates a server configuration.
    ///
    /// - Parameters:
    ///   - certificateChainFile: The server certificate chain (PEM).
    ///   - privateKeyFile: The private key (PEM) for `certificateChainFile`.
    ///   - minimumVersion: The oldest version accepted.
    ///   - maximumVersion: The newest version accepted, or `nil` for no limit.
    ///   - clientCertificateRequest: Whether to ask the client for a certificate.
    public init(
        certificateChainFile: String,
        privateKeyFile: String,
        minimumVersion: TLSVersion = .v1_2,
        maximumVersion: TLSVersion? = nil,
        clientCertificateRequest: ClientCertificateRequest = .none
    ) {
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
        self.minimumVersion = minimumVersion
        self.maximumVersion = maximumVersion
        self.clientCertificateRequest = clientCertificateRequest
    }
}
