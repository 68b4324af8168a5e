public import XMPPCore

/// The client side of a XEP-0225 component stream negotiation, as an I/O-free state machine.
///
/// The stream opens like a client stream (RFC 6120): a `jabber:client` header to the
/// server's domain, STARTTLS, SASL with a domain identity, a stream restart, and then
/// features that must carry `<bind xmlns='urn:xmpp:component:0'/>`. Hostnames are
/// bound later, at any time, by the SDK (see the ComponentKit module).
///
/// Every event is a `mutating` method returning an ``Action`` that the driving channel
/// handler carries out; the machine itself performs no I/O, so every path is testable
/// without sockets. SASL itself is delegated: the machine says when to start
/// (``Action/authenticate(features:)``) and which elements belong to the exchange
/// (``Action/forwardToSASL(_:)``), and is told the outcome.
public struct ComponentNegotiationStateMachine: Sendable {
    /// How TLS is used on the stream.
    public enum TLSPolicy: Hashable, Sendable {
        /// STARTTLS is required: a server that does not offer it is refused before
        /// anything but the stream header is sent.
        case startTLS
        /// TLS is already up from the first byte (direct TLS); STARTTLS is not negotiated.
        case direct
        /// No TLS. Only for loopback and tests; a server that requires TLS is refused.
        case none
    }

    /// The negotiation settings.
    public struct Configuration: Hashable, Sendable {
        /// The server's domain: the stream header's `to`.
        public var serverDomain: String
        /// The component's default hostname: the stream header's `from`.
        public var defaultHostname: String
        /// How TLS is used.
        public var tls: TLSPolicy
        /// Whether signs of a XEP-0114 component port produce ``Action/fallBackToLegacy(reason:)``
        /// instead of an error (the `auto` protocol setting).
        ///
        /// Never with ``TLSPolicy/startTLS``: XEP-0114 has no STARTTLS, so its handshake would
        /// go in cleartext (and a man in the middle only needs to answer with a
        /// `jabber:component:accept` header to get it). Those signs are then an error naming
        /// the setting to change; a fallback is possible with ``TLSPolicy/direct`` (XEP-0114
        /// over TLS) or ``TLSPolicy/none``.
        public var allowsLegacyFallback: Bool

        /// Creates a configuration.
        /// - Parameters:
        ///   - serverDomain: The server's domain (stream `to`).
        ///   - defaultHostname: The component's default hostname (stream `from`).
        ///   - tls: How TLS is used; STARTTLS by default.
        ///   - allowsLegacyFallback: Whether to report signs of a XEP-0114 port as a fallback.
        public init(serverDomain: String, defaultHostname: String, tls: TLSPolicy = .startTLS, allowsLegacyFallback: Bool = false)
        {
            self.serverDomain = serverDomain
            self.defaultHostname = defaultHostname
            self.tls = tls
            self.allowsLegacyFallback = allowsLegacyFallback
        }
    }

    /// What the driving handler must do next.
    public enum Action: Hashable, Sendable {
        /// Nothing to do; wait for the next event.
        case none
        /// Send a stream header (``ComponentNegotiationStateMachine/outgoingHeader``).
        case sendHeader
        /// Send an element.
        case send(Element)
        /// Restart the XML parser (bytes pending after `<proceed/>` are an error: no
        /// cleartext may follow it), put TLS in front of the stream, and call
        /// ``tlsEstablished()`` when the handshake completes.
        case startTLS
        /// Begin SASL with these stream features (they carry `<mechanisms/>` and possibly
        /// XEP-0440 channel-binding types); send what the SASL client produces.
        case authenticate(features: Element)
        /// Hand this element to the SASL client; then call ``authenticationSucceeded()``,
        /// ``authenticationFailed(_:)`` or send its response.
        case forwardToSASL(Element)
        /// Restart the XML parser (bytes after `<success/>` belong to the new stream) and send
        /// a new stream header.
        case restartAndSendHeader
        /// The stream is ready: the final features carry XEP-0225 binding.
        case negotiated(features: Element)
        /// The server looks like a XEP-0114 component port; close this stream and use the
        /// legacy protocol. Only produced when ``Configuration/allowsLegacyFallback`` is set,
        /// the TLS policy is not ``TLSPolicy/startTLS`` and no STARTTLS was offered.
        case fallBackToLegacy(reason: String)
        /// Negotiation failed: close the stream (sending `</stream:stream>` if one was opened).
        case fail(NegotiationError)
    }

    private enum Phase: Hashable, Sendable {
        case initial
        case secured
        case authenticated
    }

    private enum State: Hashable, Sendable {
        case idle
        case awaitingHeader(Phase)
        case awaitingFeatures(Phase)
        case awaitingProceed
        case awaitingTLSHandshake
        case authenticating
        case negotiated
        case failed
    }

    /// The configuration.
    public let configuration: Configuration
    private var state: State = .idle
    private var tlsActive: Bool
    private var serverOfferedStartTLS = false

    /// The `id` of the server's most recent stream header.
    public private(set) var streamID: String?

    /// Creates a machine in its initial state.
    /// - Parameter configuration: The negotiation settings.
    public init(configuration: Configuration) {
        self.configuration = configuration
        self.tlsActive = configuration.tls == .direct
    }

    /// The header the handler sends for ``Action/sendHeader`` and ``Action/restartAndSendHeader``.
    public var outgoingHeader: StreamHeader {
        StreamHeader(
            contentNamespace: Namespace.client,
            to: self.configuration.serverDomain,
            from: self.configuration.defaultHostname,
            version: "1.0"
        )
    }

    /// Whether negotiation finished successfully.
    public var isNegotiated: Bool { self.state == .negotiated }

    /// Whether TLS protects the stream.
    public var isSecured: Bool { self.tlsActive }

    // MARK: Events

    /// The connection is up: open the stream.
    public mutating func start() -> Action {
        guard case .idle = self.state else { return .none }
        self.state = .awaitingHeader(.initial)
        return .sendHeader
    }

    /// The server's stream header arrived.
    /// - Parameter header: The header.
    public mutating func streamOpened(_ header: StreamHeader) -> Action {
        guard case .awaitingHeader(let phase) = self.state else {
            return self.fail(NegotiationError(.invalidStreamHeader, "the server opened a second stream unexpectedly"))
        }
        if header.contentNamespace == Namespace.componentAccept {
            return self.legacyOrFail(
                phase: phase,
                reason: "the server answered with a jabber:component:accept stream (a XEP-0114 component port)",
                error: NegotiationError(
                    .invalidStreamHeader,
                    "the server answered with a jabber:component:accept stream: this is a XEP-0114 port; use protocol xep0114 or auto"
                ))
        }
        guard header.contentNamespace == Namespace.client else {
            return self.fail(
                NegotiationError(
                    .invalidStreamHeader,
                    "the server's stream header declares namespace '\(header.contentNamespace)', expected jabber:client"))
        }
        guard let version = header.version, Self.isVersionOneOrLater(version) else {
            return self.legacyOrFail(
                phase: phase,
                reason: "the server's stream header has no version='1.0' (a pre-RFC 6120 or XEP-0114 port)",
                error: NegotiationError(
                    .invalidStreamHeader,
                    "the server's stream header has no version='1.0', so it offers no STARTTLS, SASL or XEP-0225 binding"
                ))
        }
        self.streamID = header.id
        self.state = .awaitingFeatures(phase)
        return .none
    }

    /// A complete top-level element arrived.
    /// - Parameter element: The element.
    public mutating func received(_ element: Element) -> Action {
        if element.name == QualifiedName(Namespace.stream, "error") {
            let error = StreamError(element: element) ?? StreamError(.undefinedCondition)
            return self.received(streamError: error)
        }
        switch self.state {
        case .awaitingFeatures(let phase):
            guard element.name == QualifiedName(Namespace.stream, "features") else {
                return self.unexpected(element)
            }
            return self.features(element, phase: phase)
        case .awaitingProceed:
            if element.name == QualifiedName(Namespace.tls, "proceed") {
                self.state = .awaitingTLSHandshake
                return .startTLS
            }
            if element.name == QualifiedName(Namespace.tls, "failure") {
                return self.fail(NegotiationError(.tlsRefusedByServer, "the server refused STARTTLS (<failure/>)"))
            }
            return self.unexpected(element)
        case .authenticating:
            guard element.name.namespace == Namespace.sasl else { return self.unexpected(element) }
            return .forwardToSASL(element)
        case .idle, .awaitingHeader, .awaitingTLSHandshake, .negotiated, .failed:
            return self.unexpected(element)
        }
    }

    /// The TLS handshake that ``Action/startTLS`` began has completed.
    public mutating func tlsEstablished() -> Action {
        guard case .awaitingTLSHandshake = self.state else { return .none }
        self.tlsActive = true
        self.state = .awaitingHeader(.secured)
        return .sendHeader
    }

    /// The SASL client accepted the server's `<success/>` (including its additional data).
    public mutating func authenticationSucceeded() -> Action {
        guard case .authenticating = self.state else { return .none }
        self.state = .awaitingHeader(.authenticated)
        return .restartAndSendHeader
    }

    /// The SASL exchange failed.
    /// - Parameter error: The SASL client's error.
    public mutating func authenticationFailed(_ error: any Error & Sendable) -> Action {
        self.fail(
            NegotiationError(
                .authenticationFailed, "SASL authentication as \(self.configuration.defaultHostname) failed",
                underlying: error))
    }

    /// The server closed the stream or the connection ended.
    public mutating func connectionClosed() -> Action {
        switch self.state {
        case .negotiated, .failed:
            return .none
        case .awaitingHeader(.initial) where self.configuration.allowsLegacyFallback:
            // A XEP-0114 port may simply hang up on a jabber:client stream.
            return self.legacyOrFail(
                phase: .initial,
                reason: "the server closed the connection in answer to a jabber:client stream header",
                error: NegotiationError(
                    .closedDuringNegotiation,
                    "the server closed the connection in answer to the jabber:client stream header"))
        default:
            return self.fail(
                NegotiationError(
                    .closedDuringNegotiation,
                    "the server closed the connection during negotiation (\(self.stateDescription))"))
        }
    }

    // MARK: Internals

    private mutating func features(_ features: Element, phase: Phase) -> Action {
        let startTLS = features.firstChild("starttls", namespace: Namespace.tls)
        let mechanisms = features.firstChild("mechanisms", namespace: Namespace.sasl)
        let bind = features.firstChild("bind", namespace: Namespace.component)
        if startTLS != nil { self.serverOfferedStartTLS = true }

        if phase == .authenticated {
            guard bind != nil else {
                let offered = features.elements.map { "{\($0.name.namespace)}\($0.name.localName)" }
                return self.fail(
                    NegotiationError(
                        .noComponentBinding,
                        "authenticated, but the server offers no XEP-0225 component binding (urn:xmpp:component:0); "
                            + "offered features: \(offered.isEmpty ? "none" : offered.joined(separator: ", ")). "
                            + "This looks like a client port: point the component at the server's component port, "
                            + "or use protocol xep0114"))
            }
            self.state = .negotiated
            return .negotiated(features: features)
        }

        if !self.tlsActive {
            switch self.configuration.tls {
            case .startTLS, .direct:
                guard startTLS != nil else {
                    return self.fail(
                        NegotiationError(
                            .tlsNotOffered,
                            "TLS is required but the server offers no STARTTLS; nothing but the stream header was sent"))
                }
                self.state = .awaitingProceed
                return .send(Element("starttls", namespace: Namespace.tls))
            case .none:
                if startTLS?.firstChild("required", namespace: Namespace.tls) != nil {
                    return self.fail(
                        NegotiationError(
                            .serverRequiresTLS, "the server requires STARTTLS but TLS is disabled in the configuration"))
                }
            }
        }

        guard let mechanisms, !mechanisms.children("mechanism", namespace: Namespace.sasl).isEmpty else {
            return self.fail(NegotiationError(.noSASLMechanisms, "the server offers no SASL mechanisms"))
        }
        self.state = .authenticating
        return .authenticate(features: features)
    }

    private mutating func received(streamError error: StreamError) -> Action {
        let legacySigns: Set<StreamError.Condition> = [.invalidNamespace, .badNamespacePrefix, .improperAddressing, .hostUnknown]
        if legacySigns.contains(error.condition),
            case .awaitingHeader(.initial) = self.state
        {
            return self.legacyOrFail(
                phase: .initial,
                reason: "the server answered the jabber:client stream with \(error)",
                error: NegotiationError.from(error, hostname: self.configuration.defaultHostname, legacy: false))
        }
        if legacySigns.contains(error.condition), case .awaitingFeatures(.initial) = self.state {
            return self.legacyOrFail(
                phase: .initial,
                reason: "the server answered the jabber:client stream with \(error)",
                error: NegotiationError.from(error, hostname: self.configuration.defaultHostname, legacy: false))
        }
        var failure = NegotiationError.from(error, hostname: self.configuration.defaultHostname, legacy: false)
        failure.streamErrorOverTLS = self.tlsActive
        return self.fail(failure)
    }

    private mutating func legacyOrFail(phase: Phase, reason: String, error: NegotiationError) -> Action {
        // Never downgrade once the server offered STARTTLS: that is a client-style port, and a
        // claim to be a component port after that is an attack or a misconfiguration. (Whether
        // the legacy handshake may then go in cleartext is the connection's policy: loopback,
        // direct TLS, or an explicit allowPlaintextHandshake.)
        if self.configuration.allowsLegacyFallback, phase == .initial, !self.serverOfferedStartTLS {
            guard self.configuration.tls != .startTLS else {
                // XEP-0114 has no STARTTLS: falling back would send the handshake (a digest of
                // the secret under a stream id the peer chose) in cleartext.
                return self.fail(
                    NegotiationError(
                        .tlsNotOffered,
                        "refusing to fall back to XEP-0114: \(reason), but tls = \"starttls\" and XEP-0114 has no "
                            + "STARTTLS, so its handshake would travel in cleartext. If this really is a XEP-0114 port, "
                            + "use tls = \"direct\" (XEP-0114 over TLS) or, on loopback only, tls = \"none\"; if it "
                            + "should be a XEP-0225 port, set protocol = \"xep0225\" and check the port",
                        streamError: error.streamError))
            }
            self.state = .failed
            return .fallBackToLegacy(reason: reason)
        }
        return self.fail(error)
    }

    private mutating func unexpected(_ element: Element) -> Action {
        self.fail(
            NegotiationError(
                .unexpectedElement(element.name),
                "unexpected <\(element.name.localName) xmlns='\(element.name.namespace)'> from the server while \(self.stateDescription)"
            ))
    }

    private mutating func fail(_ error: NegotiationError) -> Action {
        self.state = .failed
        return .fail(error)
    }

    private var stateDescription: String {
        switch self.state {
        case .idle: return "not started"
        case .awaitingHeader(let phase): return "waiting for the server's stream header (\(phase))"
        case .awaitingFeatures(let phase): return "waiting for stream features (\(phase))"
        case .awaitingProceed: return "waiting for the answer to STARTTLS"
        case .awaitingTLSHandshake: return "in the TLS handshake"
        case .authenticating: return "authenticating"
        case .negotiated: return "negotiated"
        case .failed: return "failed"
        }
    }

    static func isVersionOneOrLater(_ version: String) -> Bool {
        let parts = version.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let major = Int(parts[0]), Int(parts[1]) != nil else { return false }
        return major >= 1
    }
}
