/// A TLS channel-binding type (RFC 5056), as named in SCRAM's gs2 header (`p=<type>`) and in
/// XEP-0440 `<channel-binding type='…'/>`.
public enum SASLChannelBindingType: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// RFC 9266: keying material exported with label `EXPORTER-Channel-Binding`, 32 bytes.
    /// The XMPP default on TLS 1.3.
    case tlsExporter = "tls-exporter"
    /// RFC 5929 §4: hash of the server's certificate.
    case tlsServerEndPoint = "tls-server-end-point"
    /// RFC 5929 §3: the first Finished message; defined for TLS 1.2 and below only.
    case tlsUnique = "tls-unique"

    /// The type's registered name, e.g. `tls-exporter`.
    public var description: String { self.rawValue }
}

/// What SASL needs to know about the TLS layer underneath: whether TLS is active, whether it
/// is TLS 1.3, and the channel-binding data available for each type.
///
/// XMPPSASL does not depend on the TLS module: the SDK fills this value from the TLS session
/// after the handshake. The binding data is a secret-derived value of the session; it is
/// never printed (``description`` shows only the types and lengths).
public struct SASLTransportSecurity: Sendable, Hashable, CustomStringConvertible {
    /// Whether the stream is protected by TLS. PLAIN is never used (client) nor offered
    /// (server) without it, and channel binding needs it.
    public var isTLSActive: Bool
    /// Whether the negotiated TLS version is 1.3. `tls-exporter` is used only on TLS 1.3
    /// (RFC 9266 needs the extended master secret on 1.2, which this layer cannot check),
    /// and `tls-unique` only below 1.3.
    public var isTLS13: Bool
    /// The channel-binding data of the session, per type.
    public var channelBindings: [SASLChannelBindingType: [UInt8]]

    /// Creates a description of the TLS layer.
    /// - Parameters:
    ///   - isTLSActive: Whether TLS protects the stream.
    ///   - isTLS13: Whether TLS 1.3 was negotiated.
    ///   - channelBindings: Binding data per type; ignored when TLS is not active.
    public init(isTLSActive: Bool, isTLS13: Bool, channelBindings: [SASLChannelBindingType: [UInt8]] = [:]) {
        self.isTLSActive = isTLSActive
        self.isTLS13 = isTLS13
        self.channelBindings = channelBindings
    }

    /// A plaintext stream: no TLS, no channel binding.
    public static let plaintext = SASLTransportSecurity(isTLSActive: false, isTLS13: false)

    /// The binding types that may be used on this session, in preference order:
    /// `tls-exporter` (TLS 1.3 only), `tls-server-end-point`, `tls-unique` (below TLS 1.3 only),
    /// each only when its data is present and non-empty.
    var usableBindingTypes: [SASLChannelBindingType] {
        guard self.isTLSActive else { return [] }
        return SASLChannelBindingType.allCases.filter { type in
            guard let data = self.channelBindings[type], !data.isEmpty else { return false }
            switch type {
            case .tlsExporter: return self.isTLS13
            case .tlsUnique: return !self.isTLS13
            case .tlsServerEndPoint: return true
            }
        }
    }

    /// TLS state and the binding types with their data lengths (never the data).
    public var description: String {
        let bindings = self.channelBindings.sorted { $0.key.rawValue < $1.key.rawValue }
            .map { "\($0.key)(\($0.value.count) bytes)" }
        let version = self.isTLS13 ? "TLS 1.3" : "TLS < 1.3"
        return self.isTLSActive
            ? "SASLTransportSecurity(\(version), bindings: [\(bindings.joined(separator: ", "))])"
            : "SASLTransportSecurity(plaintext)"
    }
}
