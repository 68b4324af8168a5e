public import XMPPStream
public import XMPPTLS

/// Everything a ``ReferenceServer`` needs: where to listen, its domain, TLS, SASL, which
/// identity may bind which hostnames (XEP-0225) and the XEP-0114 secrets.
///
/// ```swift
/// var configuration = ReferenceServerConfiguration(
///     domain: "example.test",
///     tls: .init(certificateChainFile: chain, privateKeyFile: key),
///     sasl: .init(sasldbPath: sasldb))
/// configuration.allowedHostnames = ["component.example.test": ["a.example.test", "*.b.example.test"]]
/// configuration.legacySecrets = ["legacy.example.test": "s3cret"]
/// configuration.legacyPort = 0
/// ```
public struct ReferenceServerConfiguration: Sendable {
    /// SASL settings.
    public struct SASL: Sendable {
        /// The sasldb file holding the component identities (see `SASLDatabase.setPassword`).
        public var sasldbPath: String
        /// The realm identities are stored under; `nil` for the server domain.
        public var realm: String?
        /// The mechanisms that may be offered (`-PLUS` variants need TLS channel binding;
        /// PLAIN is never offered without TLS).
        public var mechanisms: [String]
        /// SCRAM PBKDF2 iterations, or `nil` for Cyrus' default (4096). Lower only in tests.
        public var scramIterationCount: Int?
        /// Client certificates (DER) that authenticate with SASL EXTERNAL, and the identity
        /// each one authenticates as. Only a certificate the TLS layer verified is presented:
        /// set ``ReferenceServerConfiguration/tls``'s `clientCertificateRequest` too.
        public var externalIdentities: [[UInt8]: String] = [:]

        /// Creates SASL settings.
        /// - Parameters:
        ///   - sasldbPath: The sasldb file.
        ///   - realm: The realm, or `nil` for the server domain.
        ///   - mechanisms: The mechanisms that may be offered.
        ///   - scramIterationCount: SCRAM iterations, or `nil` for the default.
        public init(
            sasldbPath: String,
            realm: String? = nil,
            mechanisms: [String] = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"],
            scramIterationCount: Int? = nil
        ) {
            self.sasldbPath = sasldbPath
            self.realm = realm
            self.mechanisms = mechanisms
            self.scramIterationCount = scramIterationCount
        }
    }

    /// The address to listen on; loopback by default.
    public var host: String = "127.0.0.1"
    /// The XEP-0225 port; `0` picks a free port (read it from ``ReferenceServer/port``).
    public var port: Int = 0
    /// The XEP-0114 port; `0` picks a free port, `nil` (the default) turns XEP-0114 off.
    public var legacyPort: Int?
    /// The server's domain: the `to` of XEP-0225 stream headers.
    public var domain: String
    /// The TLS certificate for STARTTLS; `nil` offers no TLS (then ``requireTLS`` must be `false`).
    public var tls: TLSServerConfiguration?
    /// Whether STARTTLS is required before SASL (the default). PLAIN is never offered without TLS.
    public var requireTLS: Bool = true
    /// SASL settings.
    public var sasl: SASL
    /// XEP-0225: per SASL identity, the hostnames it may bind: exact names, or `*.domain`
    /// for any name below `domain` (at any depth, not `domain` itself). Case-insensitive.
    public var allowedHostnames: [String: [String]] = [:]
    /// Per domain (case-insensitive), how stanzas are spread over its instances when several
    /// `domain/resource` hostnames are bound (see ``RoutingAlgorithm``); a domain not listed
    /// uses ``defaultRoutingAlgorithm``. A component may change its own domain's algorithm
    /// at run time (XEP-0354 `<cmr/>`) until its last instance leaves.
    public var routingAlgorithms: [String: RoutingAlgorithm] = [:]
    /// The algorithm of domains not in ``routingAlgorithms``: ``RoutingAlgorithm/affinity``.
    public var defaultRoutingAlgorithm: RoutingAlgorithm = .affinity
    /// XEP-0114: the shared secret of each hostname that may connect on ``legacyPort``.
    public var legacySecrets: [String: String] = [:]
    /// When set, the server is drained: every XEP-0225 stream is sent to this server
    /// (`host[:port]`) with a `see-other-host` stream error once STARTTLS is done, before
    /// SASL. `nil` (the default) serves streams.
    public var seeOtherHost: String?
    /// Sends ``seeOtherHost`` at the first stream header, before TLS (for tests: a client
    /// must not follow a redirect it cannot trust).
    public var seeOtherHostBeforeTLS = false
    /// The client (c2s) port (RFC 6120, STARTTLS required, with the ``tls`` certificate);
    /// `0` picks a free port (read it from ``ReferenceServer/c2sPort``), `nil` (the default)
    /// turns it off. See ``users``.
    public var c2sPort: Int?
    /// The user accounts of the client port: bare JID (`alice@example.test`, at ``domain``)
    /// to password. They authenticate with the mechanisms of ``sasl`` (SCRAM-SHA-1/256, PLAIN;
    /// `-PLUS` only when a `-PLUS` name is listed there) through Cyrus, from a private sasldb
    /// the server writes at start and removes at stop; the passwords are never logged. Stanzas for these JIDs go to their sessions (or bounce
    /// while they are offline); other JIDs at ``domain`` stay the simulated users of
    /// ``ReferenceServer/userStanzas()``.
    public var users: [String: String] = [:]
    /// Limits on what components may send.
    public var streamLimits: XMLStreamLimits = .default
    /// How long a stream may stay unauthenticated before it is closed (`connection-timeout`).
    public var authenticationTimeout: Duration = .seconds(30)
    /// Failed SASL attempts after which a stream is closed with `policy-violation`.
    public var maxAuthenticationFailures: Int = 3

    /// Creates a configuration.
    /// - Parameters:
    ///   - domain: The server domain.
    ///   - tls: The STARTTLS certificate, or `nil` for none.
    ///   - sasl: SASL settings.
    public init(domain: String, tls: TLSServerConfiguration?, sasl: SASL) {
        self.domain = domain
        self.tls = tls
        self.sasl = sasl
    }

    /// Whether `identity` may bind `hostname` (a bare domain) according to ``allowedHostnames``.
    /// - Parameters:
    ///   - hostname: The domain to bind.
    ///   - identity: The authenticated SASL identity.
    public func isAllowed(_ hostname: String, for identity: String) -> Bool {
        let patterns = self.allowedHostnames.first { $0.key.lowercased() == identity.lowercased() }?.value ?? []
        return patterns.contains { Self.matches(pattern: $0, hostname: hostname) }
    }

    /// Whether `hostname` belongs to a component (some identity may bind it, or it has a
    /// XEP-0114 secret): stanzas for it are bounced while it is not bound.
    /// - Parameter hostname: A bare domain.
    public func isComponentHostname(_ hostname: String) -> Bool {
        if self.legacySecrets.keys.contains(where: { $0.lowercased() == hostname.lowercased() }) { return true }
        return self.allowedHostnames.values.contains { patterns in
            patterns.contains { Self.matches(pattern: $0, hostname: hostname) }
        }
    }

    /// The routing algorithm configured for a domain.
    /// - Parameter domain: A bare domain.
    public func routingAlgorithm(for domain: String) -> RoutingAlgorithm {
        self.routingAlgorithms.first { $0.key.lowercased() == domain.lowercased() }?.value ?? self.defaultRoutingAlgorithm
    }

    /// The XEP-0114 secret of a hostname, or `nil`.
    /// - Parameter hostname: The hostname from the stream header.
    public func legacySecret(for hostname: String) -> String? {
        self.legacySecrets.first { $0.key.lowercased() == hostname.lowercased() }?.value
    }

    /// Matches `a.example` exactly, or `*.example` against any name ending in `.example`.
    static func matches(pattern: String, hostname: String) -> Bool {
        let pattern = pattern.lowercased()
        let hostname = hostname.lowercased()
        if pattern.hasPrefix("*.") {
            let suffix = String(pattern.dropFirst(1))
            return hostname.hasSuffix(suffix) && hostname.count > suffix.count
        }
        return pattern == hostname
    }
}
