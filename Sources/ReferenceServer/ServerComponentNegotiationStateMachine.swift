public import XMPPCore
public import XMPPStream

/// The server side of a XEP-0225 component stream negotiation, as an I/O-free state machine.
///
/// The component opens a `jabber:client` stream to the server domain. Before TLS the
/// server offers `<starttls><required/></starttls>` (and SASL only when TLS is not
/// required); after TLS, SASL; after SASL success and the stream restart,
/// `<bind xmlns='urn:xmpp:component:0'><required/></bind>` and XEP-0198's
/// `<sm xmlns='urn:xmpp:sm:3'/>` (acknowledgements, no resumption). From then on every
/// element is handed back as ``Action/established(_:)`` for binding, acknowledgements and
/// routing.
///
/// The machine decides *what* is offered and *when* the stream ends; the driving handler
/// builds the SASL part of the features (it owns the `SASLServer`), runs the SASL steps
/// and reports their outcome with ``authenticationSucceeded(identity:)`` and
/// ``authenticationFailed()``.
///
/// Failures, as a real server (Prosody's module) reports them:
/// - header namespace other than `jabber:client`: `invalid-namespace`;
/// - header `to` other than the server domain: `host-unknown`;
/// - no `version='1.0'`: `unsupported-version`;
/// - anything but STARTTLS or SASL before authentication: `not-authorized`;
/// - SASL before STARTTLS when TLS is required: `policy-violation`;
/// - ``Configuration/maxAuthenticationFailures`` failed SASL attempts: `policy-violation`;
/// - no authentication in time (``authenticationTimedOut()``): `connection-timeout`.
public struct ServerComponentNegotiationStateMachine: Sendable {
    /// The negotiation settings.
    public struct Configuration: Hashable, Sendable {
        /// The server domain: the only acceptable header `to`.
        public var serverDomain: String
        /// Whether STARTTLS can be offered (a certificate is configured).
        public var tlsAvailable: Bool
        /// Whether STARTTLS is required before SASL.
        public var requireTLS: Bool
        /// Failed SASL attempts that end the stream.
        public var maxAuthenticationFailures: Int
        /// When set, every stream is sent to this server (`host[:port]`) with a
        /// `see-other-host` stream error once TLS is up (at the header after STARTTLS), as a
        /// server being drained does; `nil` (the default) serves streams.
        public var seeOtherHost: String?
        /// Sends ``seeOtherHost`` at the first header instead, before TLS (a client must not
        /// follow it: tests of the "no downgrade" rule).
        public var seeOtherHostBeforeTLS = false

        /// Creates a configuration.
        /// - Parameters:
        ///   - serverDomain: The server domain.
        ///   - tlsAvailable: Whether STARTTLS can be offered.
        ///   - requireTLS: Whether STARTTLS is required before SASL.
        ///   - maxAuthenticationFailures: Failed SASL attempts that end the stream.
        public init(serverDomain: String, tlsAvailable: Bool = true, requireTLS: Bool = true, maxAuthenticationFailures: Int = 3)
        {
            self.serverDomain = serverDomain
            self.tlsAvailable = tlsAvailable
            self.requireTLS = requireTLS
            self.maxAuthenticationFailures = maxAuthenticationFailures
        }
    }

    /// The stream features to advertise after a header.
    public struct Offer: Hashable, Sendable {
        /// `<starttls/>`.
        public var startTLS: Bool
        /// `<required/>` inside `<starttls/>`.
        public var startTLSRequired: Bool
        /// `<mechanisms/>` (and the XEP-0440 channel-binding element), built by the handler.
        public var sasl: Bool
        /// `<bind xmlns='urn:xmpp:component:0'><required/></bind>`.
        public var bind: Bool
        /// `<sm xmlns='urn:xmpp:sm:3'/>`: XEP-0198 acknowledgements (no resumption).
        public var streamManagement: Bool

        /// Creates an offer.
        public init(
            startTLS: Bool = false, startTLSRequired: Bool = false, sasl: Bool = false, bind: Bool = false,
            streamManagement: Bool = false
        ) {
            self.startTLS = startTLS
            self.startTLSRequired = startTLSRequired
            self.sasl = sasl
            self.bind = bind
            self.streamManagement = streamManagement
        }
    }

    /// What the driving handler must do next.
    public enum Action: Hashable, Sendable {
        /// Nothing; wait for the next event.
        case none
        /// Send this header, then `<stream:features/>` with the offer.
        case openStream(StreamHeader, offer: Offer)
        /// Send `<proceed/>`, restart the parser rejecting pending input (no cleartext may
        /// follow `<starttls/>`), put TLS at the head of the pipeline, and call
        /// ``tlsEstablished()`` when the handshake completes.
        case proceedWithTLS
        /// Start a SASL exchange with this `<auth/>`; send what the SASL server answers.
        case startSASL(Element)
        /// Hand this `<response/>` or `<abort/>` to the running SASL exchange.
        case continueSASL(Element)
        /// `<success/>` was sent: restart the parser, keeping bytes already received (they
        /// open the new stream).
        case restartStream
        /// The stream is negotiated: bind, unbind or route this element.
        case established(Element)
        /// The peer closed its stream: answer `</stream:stream>` and close the connection.
        case closeStream
        /// Send the header if given (a stream error needs an open stream), then the stream
        /// error, `</stream:stream>`, and close the connection.
        case fail(StreamError, header: StreamHeader?)
    }

    private enum Phase: Hashable, Sendable {
        case initial
        case secured
        case authenticated
    }

    private enum State: Hashable, Sendable {
        case awaitingHeader(Phase)
        case negotiating(Phase, Offer)
        case awaitingTLSHandshake
        case authenticating(Phase, Offer)
        case established
        case closed
    }

    /// The configuration.
    public let configuration: Configuration
    private var state = State.awaitingHeader(.initial)
    private var failures = 0

    /// The id of the server's current stream header, once sent.
    public private(set) var streamID: String?
    /// The SASL identity, once authenticated.
    public private(set) var authenticatedIdentity: String?
    /// Whether TLS protects the stream.
    public private(set) var isSecured = false

    /// Creates a machine waiting for the component's first header.
    /// - Parameter configuration: The negotiation settings.
    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// Whether the stream is negotiated (authenticated, bind features sent).
    public var isEstablished: Bool { self.state == .established }

    // MARK: Events

    /// The component's stream header arrived.
    /// - Parameter header: The header.
    public mutating func streamOpened(_ header: StreamHeader) -> Action {
        guard case .awaitingHeader(let phase) = self.state else {
            return self.fail(StreamError(.invalidXML, text: "unexpected stream header"), header: nil)
        }
        let reply = self.replyHeader(to: header)
        guard header.contentNamespace == Namespace.client else {
            return self.fail(
                StreamError(.invalidNamespace, text: "XEP-0225 streams use jabber:client, not '\(header.contentNamespace)'"),
                header: reply)
        }
        guard let to = header.to, to.lowercased() == self.configuration.serverDomain.lowercased() else {
            return self.fail(
                StreamError(.hostUnknown, text: "this server serves \(self.configuration.serverDomain)"), header: reply)
        }
        guard let version = header.version, let major = version.split(separator: ".").first.flatMap({ Int($0) }), major >= 1
        else {
            return self.fail(StreamError(.unsupportedVersion, text: "version='1.0' is required"), header: reply)
        }
        self.streamID = reply.id
        if let target = self.configuration.seeOtherHost,
            phase == .secured
                || (phase == .initial && (self.configuration.seeOtherHostBeforeTLS || !self.configuration.tlsAvailable))
        {
            return self.fail(StreamError(.seeOtherHost, text: "this server is drained", seeOtherHost: target), header: reply)
        }
        let offer: Offer
        switch phase {
        case .initial where self.configuration.tlsAvailable:
            offer = Offer(
                startTLS: true, startTLSRequired: self.configuration.requireTLS, sasl: !self.configuration.requireTLS)
        case .initial, .secured:
            offer = Offer(sasl: true)
        case .authenticated:
            self.state = .established
            return .openStream(reply, offer: Offer(bind: true, streamManagement: true))
        }
        self.state = .negotiating(phase, offer)
        return .openStream(reply, offer: offer)
    }

    /// A complete top-level element arrived.
    /// - Parameter element: The element.
    public mutating func received(_ element: Element) -> Action {
        if element.name == QualifiedName(Namespace.stream, "error") {
            self.state = .closed
            return .closeStream
        }
        switch self.state {
        case .negotiating(let phase, let offer):
            if element.name == QualifiedName(Namespace.tls, "starttls") {
                guard offer.startTLS else {
                    return self.fail(StreamError(.policyViolation, text: "STARTTLS is not offered now"), header: nil)
                }
                self.state = .awaitingTLSHandshake
                return .proceedWithTLS
            }
            if element.name == QualifiedName(Namespace.sasl, "auth") {
                guard offer.sasl else {
                    return self.fail(StreamError(.policyViolation, text: "STARTTLS is required before SASL"), header: nil)
                }
                self.state = .authenticating(phase, offer)
                return .startSASL(element)
            }
            return self.fail(
                StreamError(.notAuthorized, text: "<\(element.name.localName)/> before authentication"), header: nil)
        case .authenticating:
            guard element.name.namespace == Namespace.sasl else {
                return self.fail(
                    StreamError(.notAuthorized, text: "<\(element.name.localName)/> during authentication"), header: nil)
            }
            return .continueSASL(element)
        case .established:
            return .established(element)
        case .awaitingHeader, .awaitingTLSHandshake:
            return self.fail(
                StreamError(.notAuthorized, text: "<\(element.name.localName)/> before authentication"), header: nil)
        case .closed:
            return .none
        }
    }

    /// The TLS handshake begun by ``Action/proceedWithTLS`` completed.
    public mutating func tlsEstablished() -> Action {
        guard case .awaitingTLSHandshake = self.state else { return .none }
        self.isSecured = true
        self.state = .awaitingHeader(.secured)
        return .none
    }

    /// The SASL exchange succeeded and `<success/>` was sent.
    /// - Parameter identity: The authenticated identity.
    public mutating func authenticationSucceeded(identity: String) -> Action {
        guard case .authenticating = self.state else { return .none }
        self.authenticatedIdentity = identity
        self.state = .awaitingHeader(.authenticated)
        return .restartStream
    }

    /// The SASL exchange failed and `<failure/>` was sent; the component may try again
    /// until ``Configuration/maxAuthenticationFailures`` is reached.
    public mutating func authenticationFailed() -> Action {
        guard case .authenticating(let phase, let offer) = self.state else { return .none }
        self.failures += 1
        if self.failures >= self.configuration.maxAuthenticationFailures {
            return self.fail(
                StreamError(.policyViolation, text: "too many failed authentication attempts"), header: nil)
        }
        self.state = .negotiating(phase, offer)
        return .none
    }

    /// The authentication timer fired.
    public mutating func authenticationTimedOut() -> Action {
        switch self.state {
        case .established, .closed, .awaitingHeader(.authenticated):
            return .none
        case .awaitingHeader:
            // No header of ours is out on this stream generation yet.
            return self.fail(
                StreamError(.connectionTimeout, text: "authentication took too long"),
                header: StreamHeader(contentNamespace: Namespace.client, from: self.configuration.serverDomain))
        default:
            return self.fail(StreamError(.connectionTimeout, text: "authentication took too long"), header: nil)
        }
    }

    /// The component sent `</stream:stream>`.
    public mutating func streamClosed() -> Action {
        guard self.state != .closed else { return .none }
        self.state = .closed
        return .closeStream
    }

    /// The connection ended.
    public mutating func connectionClosed() {
        self.state = .closed
    }

    // MARK: Internals

    private func replyHeader(to header: StreamHeader) -> StreamHeader {
        StreamHeader(
            contentNamespace: Namespace.client,
            to: header.from,
            from: self.configuration.serverDomain,
            id: StreamID.make(),
            version: "1.0"
        )
    }

    private mutating func fail(_ error: StreamError, header: StreamHeader?) -> Action {
        self.state = .closed
        return .fail(error, header: header)
    }
}
