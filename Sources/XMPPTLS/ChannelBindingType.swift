/// A TLS channel-binding type, as used by SCRAM-*-PLUS (RFC 5056, RFC 5929, RFC 9266).
public enum ChannelBindingType: String, Sendable, Hashable, CaseIterable {
    /// RFC 9266 `tls-exporter`: 32 bytes of keying material. Meant for TLS 1.3.
    case tlsExporter = "tls-exporter"
    /// RFC 5929 `tls-server-end-point`: a hash of the server certificate.
    case tlsServerEndPoint = "tls-server-end-point"
    /// RFC 5929 `tls-unique`: the first Finished message. TLS 1.2 only.
    case tlsUnique = "tls-unique"
}
