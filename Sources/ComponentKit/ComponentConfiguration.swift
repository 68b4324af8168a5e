import XMPPCore
public import XMPPStream
public import XMPPTLS

/// Everything a ``ComponentConnection`` needs to reach and authenticate to a server.
///
/// ```swift
/// var configuration = ComponentConfiguration(
///     host: "xmpp.example.com", port: 5270, serverDomain: "example.com",
///     identity: "component.example.com", password: Secret("s3cret"))
/// configuration.protocolMode = .auto
/// ```
public struct ComponentConfiguration: Sendable {
    /// Which component protocol to speak.
    public enum ProtocolMode: String, Hashable, Sendable, CaseIterable {
        /// XEP-0225 when the server offers it, else the XEP-0114 fallback (never after the
        /// server offered STARTTLS: that is a client-style port, and a downgrade is refused).
        case auto
        /// XEP-0225 only: one stream, STARTTLS, SASL, many hostnames.
        case xep0225
        /// XEP-0114 only: one stream per hostname, handshake with a shared secret.
        case xep0114
    }

    /// How TLS protects the connection.
    public enum TLSMode: String, Hashable, Sendable, CaseIterable {
        /// STARTTLS on the XEP-0225 stream (required: never falls back to cleartext).
        case startTLS = "starttls"
        /// TLS from the first byte (ejabberd `tls: true`, Openfire 5276, MongooseIM).
        case direct
        /// No TLS. For loopback; see ``ComponentConfiguration/allowPlaintextHandshake``.
        case none
    }

    /// The host name or address to connect to.
    public var host: String
    /// The TCP port.
    public var port: Int
    /// The server's XMPP domain: the XEP-0225 stream's `to`.
    public var serverDomain: String
    /// Which protocol to speak; ``ProtocolMode/auto`` by default.
    public var protocolMode: ProtocolMode = .auto
    /// How TLS is used; ``TLSMode/startTLS`` by default.
    public var tlsMode: TLSMode = .startTLS
    /// Where trusted CA certificates come from; the system store by default.
    public var trustRoots: TLSTrustRoots = .system
    /// Certificate verification; full verification by default.
    public var certificateVerification: TLSCertificateVerification = .fullVerification
    /// The certificate name to verify; defaults to ``serverDomain``. Never empty: an empty
    /// name would skip SNI and accept any trusted certificate (``validate()`` refuses it).
    public var tlsServerName: String?
    /// The lowest TLS version accepted.
    public var minimumTLSVersion: TLSVersion = .v1_2
    /// A client certificate chain (PEM) for SASL EXTERNAL.
    public var clientCertificateFile: String?
    /// The key of ``clientCertificateFile`` (PEM).
    public var clientKeyFile: String?

    /// The SASL authentication identity: a domain (XEP-0225 §2). Also the stream's `from`
    /// (the default hostname).
    public var identity: String
    /// The SASL password; the default XEP-0114 secret only with ``ProtocolMode/xep0114``
    /// (see ``secret(for:)``).
    public var password: Secret
    /// XEP-0114 secrets per hostname.
    public var secrets: [String: Secret] = [:]
    /// The XEP-0114 secret of hostnames without one in ``secrets``. When `nil`, only
    /// ``ProtocolMode/xep0114`` falls back to ``password``: with XEP-0225 enabled the SASL
    /// password is never sent as a XEP-0114 digest (a digest under a stream id the peer
    /// chose can be attacked offline).
    public var legacySecret: Secret?
    /// SASL mechanisms allowed, in no particular order (the SDK's preference applies);
    /// `nil` allows every mechanism the SDK supports.
    public var saslMechanisms: [String]?
    /// Allows the XEP-0114 handshake over a plaintext link to a non-loopback address.
    /// Off by default: the handshake digest can be attacked offline.
    public var allowPlaintextHandshake = false
    /// Allows XEP-0225 (SCRAM or EXTERNAL, and every stanza) without TLS to a non-loopback
    /// address. Off by default: with ``TLSMode/none`` the connection is refused unless the
    /// host is loopback or this is set.
    public var allowInsecurePlaintext = false
    /// Refuses a server that offers no `-PLUS` SASL mechanism with a channel binding this
    /// client supports (RFC 9266 `tls-exporter`, `tls-server-end-point`). Needs TLS.
    public var requireChannelBinding = false

    /// Limits on what the server may send.
    public var streamLimits = XMLStreamLimits()
    /// How long a bind, unbind or IQ request waits for its answer by default.
    public var requestTimeout: Duration = .seconds(30)
    /// How long negotiation (TCP, TLS, SASL, handshake) may take.
    public var connectTimeout: Duration = .seconds(20)
    /// How much may wait for one hostname's handler; past it, that hostname's excess is
    /// answered with `resource-constraint` while the others keep flowing.
    public var hostnameBudget = HostnameBudget()
    /// How much may wait for all handlers together; past it, reading from the server
    /// pauses until the handlers have taken half of it.
    public var connectionBudget = ConnectionBudgetPolicy()
    /// What the built-in XEP-0092 answers with.
    public var softwareVersion: SoftwareVersion = .sdk
    /// When and how fast to reconnect.
    public var reconnectPolicy = ReconnectPolicy()
    /// How many stanzas, and for how long, a hostname's sends wait while it has no stream.
    public var outboundQueue = OutboundQueuePolicy()
    /// When to check that an idle stream is still alive.
    public var keepalive = KeepalivePolicy()
    /// Acknowledges handled stanzas with XEP-0198 (`urn:xmpp:sm:3`, no resumption) when
    /// the server offers it on the XEP-0225 stream; on by default.
    ///
    /// A stanza counts as handled once its handler returned (or the connection answered or
    /// dropped it without one). A server that keeps unacknowledged stanzas (this project's
    /// Prosody module and reference server do) routes them again, to another instance of
    /// the domain or back to the sender as an error, when this stream dies: a killed
    /// process loses nothing silently, at the price of a stanza that was handled but not
    /// yet acknowledged arriving twice. XEP-0114 streams have acknowledgements only with
    /// ``legacyAcknowledgements``.
    public var acknowledgements = true

    /// Acknowledges handled stanzas on XEP-0114 streams too (this project's extension of
    /// XEP-0114; off by default).
    ///
    /// XEP-0114 has no stream features, so nothing says whether a server takes
    /// acknowledgements: turn this on only for a server whose XEP-0114 listener does, i.e.
    /// ejabberd with this project's `ejabberd_service_acks` listener and
    /// `mod_component_balancing` (`ServerModules/ejabberd`). After the handshake the
    /// component sends `<enable xmlns='urn:xmpp:sm:3'/>`; the server answers `<enabled/>`,
    /// both count every stanza the server wrote after its `<handshake/>`, and the component
    /// sends `<a h='…'/>` as on a XEP-0225 stream. The server keeps what is not
    /// acknowledged and routes it again (to another connection of the domain, or back as an
    /// error) when the stream or its node dies. A plain ejabberd ignores the `<enable/>`
    /// (no `<a/>` is then sent); other servers (Prosody, Openfire) may end the stream over
    /// it, which is logged with this setting's name.
    public var legacyAcknowledgements = false

    /// Creates a configuration with the defaults above.
    /// - Parameters:
    ///   - host: The host to connect to.
    ///   - port: The TCP port.
    ///   - serverDomain: The server's XMPP domain.
    ///   - identity: The SASL identity and default hostname (a domain).
    ///   - password: The SASL password and default XEP-0114 secret.
    public init(host: String, port: Int, serverDomain: String, identity: String, password: Secret) {
        self.host = host
        self.port = port
        self.serverDomain = serverDomain
        self.identity = identity
        self.password = password
    }

    /// The XEP-0114 secret for a hostname: its own (``secrets``), else ``legacySecret``, else
    /// the password, but the password only with ``ProtocolMode/xep0114``.
    /// - Parameter hostname: The hostname.
    /// - Throws: ``ComponentError/Kind/invalidConfiguration`` when XEP-0225 is enabled and
    ///   no XEP-0114 secret is configured for the hostname.
    public func secret(for hostname: String) throws(ComponentError) -> Secret {
        if let own = self.secrets[hostname] ?? self.legacySecret {
            return own
        }
        guard self.protocolMode == .xep0114 else {
            throw ComponentError(
                .invalidConfiguration,
                "no XEP-0114 secret for \(hostname): with protocol \(self.protocolMode.rawValue) the SASL password is "
                    + "not used as a XEP-0114 secret; set secrets[\"\(hostname)\"] or legacySecret (component-host: "
                    + "secret_file in its [[component]])")
        }
        return self.password
    }

    /// Checks what the connection cannot work safely without; ``ComponentConnection`` calls it
    /// before connecting.
    ///
    /// - Throws: ``ComponentError/Kind/invalidConfiguration`` naming the setting: an empty
    ///   ``tlsServerName`` (it would skip SNI and accept any trusted certificate), a
    ///   ``serverDomain`` that is not a domain (the transfer and redirect checks compare
    ///   addresses with it), ``requireChannelBinding`` without TLS.
    public func validate() throws(ComponentError) {
        guard let domain = try? JID(self.serverDomain), domain.localpart == nil, domain.resourcepart == nil,
            !self.serverDomain.isEmpty
        else {
            throw ComponentError(
                .invalidConfiguration,
                "serverDomain \"\(self.serverDomain)\" is not a domain name (e.g. \"example.com\"); set serverDomain "
                    + "(component-host: [server] domain) to the server's XMPP domain")
        }
        if let name = self.tlsServerName, name.allSatisfy(\.isWhitespace) {
            throw ComponentError(
                .invalidConfiguration,
                "tlsServerName is empty: it would skip SNI and accept any trusted certificate; leave tlsServerName nil "
                    + "(the certificate must then name serverDomain) or set the name the certificate carries "
                    + "(component-host: [server] server_name)")
        }
        if self.requireChannelBinding, self.tlsMode == .none {
            throw ComponentError(
                .invalidConfiguration,
                "requireChannelBinding needs TLS: channel binding ties SASL to a TLS session; set tlsMode to starttls or "
                    + "direct, or turn requireChannelBinding off (component-host: [auth] require_channel_binding)")
        }
    }

    /// The TLS client settings derived from this configuration.
    public var tlsClientConfiguration: TLSClientConfiguration {
        var tls = TLSClientConfiguration(serverName: self.tlsServerName ?? self.serverDomain)
        tls.trustRoots = self.trustRoots
        tls.certificateVerification = self.certificateVerification
        tls.minimumVersion = self.minimumTLSVersion
        tls.certificateChainFile = self.clientCertificateFile
        tls.privateKeyFile = self.clientKeyFile
        return tls
    }
}

/// When and how fast a ``ComponentConnection`` reconnects.
///
/// Delays grow exponentially from ``initialDelay`` by ``multiplier`` up to
/// ``maximumDelay``, each with random jitter (50–100 % of the delay) so that many
/// components restarting together do not reconnect in lockstep. A connection that stayed
/// up for ``stableAfter`` starts again from ``initialDelay``.
public struct ReconnectPolicy: Hashable, Sendable {
    /// The first delay.
    public var initialDelay: Duration
    /// The factor applied after each failure.
    public var multiplier: Double
    /// The longest delay.
    public var maximumDelay: Duration
    /// How long a connection must last to reset the delay.
    public var stableAfter: Duration
    /// Consecutive failed attempts after which ``ComponentConnection/run()`` throws;
    /// `nil` retries forever.
    public var maxAttempts: Int?

    /// Creates a policy.
    public init(
        initialDelay: Duration = .milliseconds(500), multiplier: Double = 2, maximumDelay: Duration = .seconds(60),
        stableAfter: Duration = .seconds(30), maxAttempts: Int? = nil
    ) {
        self.initialDelay = initialDelay
        self.multiplier = multiplier
        self.maximumDelay = maximumDelay
        self.stableAfter = stableAfter
        self.maxAttempts = maxAttempts
    }
}

extension ComponentConfiguration {
    /// The reconnect policy; see ``ReconnectPolicy``.
    public var reconnect: ReconnectPolicy {
        get { self.reconnectPolicy }
        set { self.reconnectPolicy = newValue }
    }
}

/// Limits of the queue in which a hostname's outgoing stanzas wait while it is not
/// connected (see ``ComponentConnection/send(_:)``).
public struct OutboundQueuePolicy: Hashable, Sendable {
    /// The most stanzas that may wait per hostname; one more fails with ``ComponentError/Kind/queueFull``.
    public var maxStanzas: Int
    /// The longest a stanza may wait; older ones fail with ``ComponentError/Kind/expired``.
    public var maxAge: Duration

    /// Creates a policy.
    /// - Parameters:
    ///   - maxStanzas: The most stanzas that may wait per hostname.
    ///   - maxAge: The longest a stanza may wait.
    public init(maxStanzas: Int = 10_000, maxAge: Duration = .seconds(120)) {
        self.maxStanzas = maxStanzas
        self.maxAge = maxAge
    }
}

/// Liveness checks on an idle stream: a whitespace keepalive, then an XEP-0199 ping to
/// the server whose missing answer declares the link dead (half-open TCP is detected in
/// bounded time: at most ``idleInterval`` + ``pingTimeout`` after the last byte).
public struct KeepalivePolicy: Hashable, Sendable {
    /// How long the stream may be idle (nothing read) before a check.
    public var idleInterval: Duration
    /// How long the server has to answer the ping.
    public var pingTimeout: Duration
    /// Whether to check at all.
    public var isEnabled: Bool

    /// Creates a policy.
    /// - Parameters:
    ///   - idleInterval: Idle time before a check.
    ///   - pingTimeout: Time the server has to answer.
    ///   - isEnabled: Whether to check.
    public init(idleInterval: Duration = .seconds(60), pingTimeout: Duration = .seconds(20), isEnabled: Bool = true) {
        self.idleInterval = idleInterval
        self.pingTimeout = pingTimeout
        self.isEnabled = isEnabled
    }
}

extension ComponentConfiguration {
    /// How many stanzas may wait for one hostname's handler (``HostnameBudget/maxStanzas``).
    public var handlerQueueDepth: Int {
        get { self.hostnameBudget.maxStanzas }
        set { self.hostnameBudget.maxStanzas = newValue }
    }
}

/// How much may wait for one hostname's handler.
///
/// Hostnames sharing a stream are isolated by it: when a handler falls behind, the
/// stanzas past its budget are answered by the SDK (IQ requests and messages get a
/// `wait`-type `<resource-constraint/>` error; presences, results and errors are dropped
/// and counted in `xmpp_component_over_budget_total`) while every other hostname keeps
/// flowing. One stanza is always accepted into an empty mailbox, whatever its size.
public struct HostnameBudget: Hashable, Sendable {
    /// The most stanzas waiting or being handled (4 096 by default).
    ///
    /// The handler runs on the event loop that reads the stream, after each read (at most
    /// 64 KiB), so a budget must hold at least one read's worth of that hostname's stanzas,
    /// or a fast handler would see its stanzas refused under load.
    public var maxStanzas: Int
    /// The most bytes waiting or being handled, counted as the stanzas' size on the wire
    /// (4 MiB by default; at least 64 KiB is sensible, see ``maxStanzas``).
    public var maxBytes: Int

    /// Creates a budget.
    /// - Parameters:
    ///   - maxStanzas: The most stanzas waiting.
    ///   - maxBytes: The most bytes waiting.
    public init(maxStanzas: Int = 4_096, maxBytes: Int = 4 << 20) {
        self.maxStanzas = max(1, maxStanzas)
        self.maxBytes = max(1, maxBytes)
    }
}

/// How much may wait for all of a connection's handlers together.
///
/// Past ``maxBytes``, the stream stops reading (TCP pushes back on the server) until the
/// handlers have taken half of it. While reading is paused on purpose, the keepalive
/// does not declare the link dead.
public struct ConnectionBudgetPolicy: Hashable, Sendable {
    /// The most bytes waiting in all mailboxes (64 MiB by default).
    public var maxBytes: Int

    /// Creates a policy.
    /// - Parameter maxBytes: The most bytes waiting in all mailboxes.
    public init(maxBytes: Int = 64 << 20) {
        self.maxBytes = max(1, maxBytes)
    }
}
