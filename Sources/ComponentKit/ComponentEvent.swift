/// What happens to a ``ComponentConnection`` over its life, in order.
///
/// Subscribe with ``ComponentConnection/events()``.
public enum ComponentEvent: Hashable, Sendable {
    /// A TCP connection is being opened.
    case connecting(host: String, port: Int)
    /// A stream is negotiated and ready.
    case connected(ConnectionInfo)
    /// The server looked like a XEP-0114 port; the connection continues with the legacy protocol.
    case fellBackToLegacy(reason: String)
    /// A hostname is bound and its stanzas flow to its handler.
    case bound(hostname: String)
    /// A hostname could not be bound.
    case bindFailed(hostname: String, reason: String)
    /// A hostname is no longer bound (unbind, or its stream closed).
    case unbound(hostname: String)
    /// The stream closed; the reason says why.
    case disconnected(reason: String)
}

/// The facts of a negotiated connection, for status displays and logs.
public struct ConnectionInfo: Hashable, Sendable {
    /// The protocol spoken.
    public var protocolMode: ComponentConfiguration.ProtocolMode
    /// The negotiated TLS version (`TLSv1.3`), or `nil` without TLS.
    public var tlsVersion: String?
    /// The TLS cipher suite, or `nil` without TLS.
    public var tlsCipherSuite: String?
    /// The SASL mechanism used (XEP-0225), or `nil`.
    public var saslMechanism: String?
    /// The server's stream id.
    public var streamID: String?

    /// Creates connection facts.
    public init(
        protocolMode: ComponentConfiguration.ProtocolMode, tlsVersion: String? = nil, tlsCipherSuite: String? = nil,
        saslMechanism: String? = nil, streamID: String? = nil
    ) {
        self.protocolMode = protocolMode
        self.tlsVersion = tlsVersion
        self.tlsCipherSuite = tlsCipherSuite
        self.saslMechanism = saslMechanism
        self.streamID = streamID
    }
}
