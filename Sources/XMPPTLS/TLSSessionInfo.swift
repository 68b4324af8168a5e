/// What was negotiated by a completed TLS handshake, captured when it completed.
public struct TLSSessionInfo: Sendable, Hashable {
    /// The negotiated protocol version.
    public var version: TLSVersion
    /// The negotiated cipher suite by its IANA name, for example `"TLS_AES_256_GCM_SHA384"`.
    public var cipherSuite: String
    /// The peer's leaf certificate in DER, or `nil` if it sent none (a client not asked for one).
    public var peerCertificateDER: [UInt8]?
    /// RFC 9266 `tls-exporter` channel binding: `SSL_export_keying_material` with the label
    /// `"EXPORTER-Channel-Binding"`, an empty context and 32 bytes.
    ///
    /// It is computed on TLS 1.2 too, but RFC 9266 defines it as safe only on TLS 1.3 (or 1.2 with the
    /// extended master secret); prefer ``tlsUnique`` or ``tlsServerEndPoint`` on TLS 1.2.
    public var tlsExporter: [UInt8]?
    /// RFC 5929 `tls-server-end-point` channel binding: the hash of the server certificate with the
    /// digest of its signature algorithm (MD5 and SHA-1 upgraded to SHA-256).
    ///
    /// `nil` when the signature algorithm has no single digest (for example Ed25519).
    public var tlsServerEndPoint: [UInt8]?
    /// RFC 5929 `tls-unique` channel binding: the first Finished message of the handshake.
    ///
    /// `nil` on TLS 1.3, where it is undefined.
    public var tlsUnique: [UInt8]?

    /// Creates session information; normally only ``OpenSSLHandler`` does this.
    ///
    /// - Parameters:
    ///   - version: The negotiated version.
    ///   - cipherSuite: The IANA cipher-suite name.
    ///   - peerCertificateDER: The peer's leaf certificate, if any.
    ///   - tlsExporter: The `tls-exporter` channel binding.
    ///   - tlsServerEndPoint: The `tls-server-end-point` channel binding.
    ///   - tlsUnique: The `tls-unique` channel binding (TLS 1.2 only).
    public init(
        version: TLSVersion,
        cipherSuite: String,
        peerCertificateDER: [UInt8]?,
        tlsExporter: [UInt8]?,
        tlsServerEndPoint: [UInt8]?,
        tlsUnique: [UInt8]?
    ) {
        self.version = version
        self.cipherSuite = cipherSuite
        self.peerCertificateDER = peerCertificateDER
        self.tlsExporter = tlsExporter
        self.tlsServerEndPoint = tlsServerEndPoint
        self.tlsUnique = tlsUnique
    }

    /// The channel-binding data of the given type, or `nil` if it is not available on this connection.
    ///
    /// - Parameter type: The channel-binding type a SASL mechanism asked for.
    /// - Returns: The binding data, to be passed to SASL as is.
    public func channelBinding(_ type: ChannelBindingType) -> [UInt8]? {
        switch type {
        case .tlsExporter: self.tlsExporter
        case .tlsServerEndPoint: self.tlsServerEndPoint
        case .tlsUnique: self.tlsUnique
        }
    }
}
