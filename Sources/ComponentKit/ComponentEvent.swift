/// What happens to a ``ComponentConnection`` over its life, in order.
///
/// Subscribe with ``ComponentConnection/events()``. An event is a ``kind`` and the facts
/// that kind carries (``host`` and ``port``, ``info``, ``hostname``, ``reason``). It is a
/// struct rather than an enum so that new kinds of event can be added without breaking
/// code that switches over them:
///
/// ```swift
/// for await event in connection.events() {
///     switch event.kind {
///     case .connected: print("up:", event.info?.tlsVersion ?? "no TLS")
///     case .bound: print("bound", event.hostname!)
///     case .disconnected: print("down:", event.reason!)
///     default: break
///     }
/// }
/// ```
public struct ComponentEvent: Hashable, Sendable, CustomStringConvertible {
    /// The kinds of events (compare with `==`; a `switch` needs a `default`).
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case connecting
            case connected
            case fellBackToLegacy
            case bound
            case bindFailed
            case unbound
            case disconnected
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// A TCP connection is being opened (``ComponentEvent/host``, ``ComponentEvent/port``).
        public static let connecting = Kind(.connecting)
        /// A stream is negotiated and ready (``ComponentEvent/info``).
        public static let connected = Kind(.connected)
        /// The server looked like a XEP-0114 port; the connection continues with the legacy
        /// protocol (``ComponentEvent/reason``).
        public static let fellBackToLegacy = Kind(.fellBackToLegacy)
        /// A hostname is bound and its stanzas flow to its handler (``ComponentEvent/hostname``).
        public static let bound = Kind(.bound)
        /// A hostname could not be bound (``ComponentEvent/hostname``, ``ComponentEvent/reason``).
        public static let bindFailed = Kind(.bindFailed)
        /// A hostname is no longer bound: unbind, or its stream closed (``ComponentEvent/hostname``).
        public static let unbound = Kind(.unbound)
        /// The stream closed (``ComponentEvent/reason`` says why).
        public static let disconnected = Kind(.disconnected)

        /// The kind's name.
        public var description: String { self.base.rawValue }
    }

    /// What happened.
    public let kind: Kind
    /// The host being connected to, for ``Kind/connecting``.
    public let host: String?
    /// The port being connected to, for ``Kind/connecting``.
    public let port: Int?
    /// The facts of the negotiated stream, for ``Kind/connected``.
    public let info: ConnectionInfo?
    /// The hostname, for ``Kind/bound``, ``Kind/bindFailed`` and ``Kind/unbound``.
    public let hostname: String?
    /// Why, for ``Kind/fellBackToLegacy``, ``Kind/bindFailed`` and ``Kind/disconnected``.
    public let reason: String?

    private init(
        _ kind: Kind, host: String? = nil, port: Int? = nil, info: ConnectionInfo? = nil, hostname: String? = nil,
        reason: String? = nil
    ) {
        self.kind = kind
        self.host = host
        self.port = port
        self.info = info
        self.hostname = hostname
        self.reason = reason
    }

    /// A TCP connection is being opened.
    /// - Parameters:
    ///   - host: The host.
    ///   - port: The port.
    public static func connecting(host: String, port: Int) -> ComponentEvent {
        ComponentEvent(.connecting, host: host, port: port)
    }

    /// A stream is negotiated and ready.
    /// - Parameter info: The facts of the stream.
    public static func connected(_ info: ConnectionInfo) -> ComponentEvent {
        ComponentEvent(.connected, info: info)
    }

    /// The connection continues with the legacy protocol.
    /// - Parameter reason: Why.
    public static func fellBackToLegacy(reason: String) -> ComponentEvent {
        ComponentEvent(.fellBackToLegacy, reason: reason)
    }

    /// A hostname is bound.
    /// - Parameter hostname: The hostname the server bound.
    public static func bound(hostname: String) -> ComponentEvent {
        ComponentEvent(.bound, hostname: hostname)
    }

    /// A hostname could not be bound.
    /// - Parameters:
    ///   - hostname: The hostname.
    ///   - reason: Why.
    public static func bindFailed(hostname: String, reason: String) -> ComponentEvent {
        ComponentEvent(.bindFailed, hostname: hostname, reason: reason)
    }

    /// A hostname is no longer bound.
    /// - Parameter hostname: The hostname.
    public static func unbound(hostname: String) -> ComponentEvent {
        ComponentEvent(.unbound, hostname: hostname)
    }

    /// The stream closed.
    /// - Parameter reason: Why.
    public static func disconnected(reason: String) -> ComponentEvent {
        ComponentEvent(.disconnected, reason: reason)
    }

    /// The kind and its facts, for logs.
    public var description: String {
        var facts: [String] = []
        if let host = self.host { facts.append("host: \(host)") }
        if let port = self.port { facts.append("port: \(port)") }
        if let info = self.info { facts.append("info: \(info)") }
        if let hostname = self.hostname { facts.append("hostname: \(hostname)") }
        if let reason = self.reason { facts.append("reason: \(reason)") }
        return facts.isEmpty ? self.kind.description : "\(self.kind)(\(facts.joined(separator: ", ")))"
    }
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
