import XMPPCore
import XMPPStream

/// The server side of a client (c2s) stream negotiation (RFC 6120 §4–§7), as an I/O-free
/// state machine: the reference server's small client port.
///
/// The client opens a `jabber:client` stream to the server domain. Before TLS the server
/// offers `<starttls><required/></starttls>` only (TLS is mandatory on the client port);
/// after TLS, SASL; after SASL success and the stream restart, resource binding
/// (RFC 6120 §7) and the optional legacy session (RFC 3921 `<session><optional/></session>`).
/// Once a resource is bound every element is handed back as ``Action/established(_:)``.
///
/// The driving handler owns the SASL exchange and the session registry: it reports the
/// SASL outcome with ``authenticationSucceeded(identity:)`` / ``authenticationFailed()``
/// and the bound JID with ``bound(_:)``.
///
/// Failures:
/// - header namespace other than `jabber:client`: `invalid-namespace`;
/// - header `to` other than the server domain: `host-unknown`;
/// - no `version='1.0'`: `unsupported-version`;
/// - SASL before STARTTLS: `policy-violation`;
/// - any other element before authentication, or a stanza other than the bind request
///   before a resource is bound: `not-authorized`;
/// - ``Configuration/maxAuthenticationFailures`` failed SASL attempts: `policy-violation`;
/// - no authentication in time: `connection-timeout`.
struct C2SNegotiationStateMachine: Sendable {
    struct Configuration: Hashable, Sendable {
        /// The server domain: the only acceptable header `to`, and the users' domain.
        var serverDomain: String
        /// Failed SASL attempts that end the stream.
        var maxAuthenticationFailures: Int = 3
    }

    /// The features to advertise after a header.
    enum Offer: Hashable, Sendable {
        /// `<starttls><required/></starttls>`.
        case startTLS
        /// `<mechanisms/>`, built by the handler.
        case sasl
        /// `<bind/>` and `<session><optional/></session>`.
        case bind
    }

    enum Action: Hashable, Sendable {
        /// Nothing; wait for the next event.
        case none
        /// Send this header, then `<stream:features/>` with the offer.
        case openStream(StreamHeader, offer: Offer)
        /// Send `<proceed/>`, restart the parser rejecting pending input, add TLS, then call
        /// ``C2SNegotiationStateMachine/tlsEstablished()``.
        case proceedWithTLS
        /// Start a SASL exchange with this `<auth/>`.
        case startSASL(Element)
        /// Hand this `<response/>` or `<abort/>` to the running exchange.
        case continueSASL(Element)
        /// `<success/>` was sent: restart the parser, keeping bytes already received.
        case restartStream
        /// Bind a resource for this request (`resource`: the one asked for, `nil` for a
        /// server-generated one), then call ``C2SNegotiationStateMachine/bound(_:)``.
        case bind(IQ, resource: String?)
        /// Send this element (an error answer to a bad bind request).
        case send(Element)
        /// The session is established: handle this element (a stanza from the client).
        case established(Element)
        /// The peer closed its stream: answer `</stream:stream>` and close the connection.
        case closeStream
        /// Send the header if given, then the stream error, `</stream:stream>`, and close.
        case fail(StreamError, header: StreamHeader?)
    }

    private enum Phase: Hashable, Sendable {
        case initial
        case secured
        case authenticated
    }

    private enum State: Hashable, Sendable {
        case awaitingHeader(Phase)
        case negotiating(Phase)
        case awaitingTLSHandshake
        case authenticating
        case binding
        case bindPending
        case established
        case closed
    }

    let configuration: Configuration
    private var state = State.awaitingHeader(.initial)
    private var failures = 0

    /// The authenticated localpart, once SASL succeeded.
    private(set) var authenticatedIdentity: String?
    /// The bound full JID.
    private(set) var jid: JID?

    init(configuration: Configuration) {
        self.configuration = configuration
    }

    var isEstablished: Bool { self.state == .established }

    // MARK: Events

    mutating func streamOpened(_ header: StreamHeader) -> Action {
        guard case .awaitingHeader(let phase) = self.state else {
            return self.fail(StreamError(.invalidXML, text: "unexpected stream header"), header: nil)
        }
        let reply = StreamHeader(
            contentNamespace: Namespace.client, to: header.from.flatMap { try? JID($0) }?.bare.description,
            from: self.configuration.serverDomain, id: StreamID.make(), version: "1.0")
        guard header.contentNamespace == Namespace.client else {
            return self.fail(
                StreamError(.invalidNamespace, text: "the client port speaks jabber:client, not '\(header.contentNamespace)'"),
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
        switch phase {
        case .initial:
            self.state = .negotiating(.initial)
            return .openStream(reply, offer: .startTLS)
        case .secured:
            self.state = .negotiating(.secured)
            return .openStream(reply, offer: .sasl)
        case .authenticated:
            self.state = .binding
            return .openStream(reply, offer: .bind)
        }
    }

    mutating func received(_ element: Element) -> Action {
        if element.name == QualifiedName(Namespace.stream, "error") {
            self.state = .closed
            return .closeStream
        }
        switch self.state {
        case .negotiating(let phase):
            if element.name == QualifiedName(Namespace.tls, "starttls") {
                guard phase == .initial else {
                    return self.fail(StreamError(.policyViolation, text: "TLS is already established"), header: nil)
                }
                self.state = .awaitingTLSHandshake
                return .proceedWithTLS
            }
            if element.name == QualifiedName(Namespace.sasl, "auth") {
                guard phase == .secured else {
                    return self.fail(StreamError(.policyViolation, text: "STARTTLS is required before SASL"), header: nil)
                }
                self.state = .authenticating
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
        case .binding:
            guard element.name.namespace == Namespace.client, element.name.localName == "iq", let iq = IQ(element),
                let payload = iq.payload, payload.name == QualifiedName(Namespace.bind, "bind")
            else {
                return self.fail(
                    StreamError(.notAuthorized, text: "<\(element.name.localName)/> before a resource is bound"), header: nil)
            }
            guard iq.type == .set else {
                return .send(iq.errorResult(StanzaError(.badRequest, text: "resource binding is an IQ set")).element)
            }
            var resource: String?
            if let requested = payload.firstChild("resource", namespace: Namespace.bind) {
                let text = requested.text.trimmingXMLWhitespace()
                if !text.isEmpty {
                    guard (try? JID(localpart: nil, domainpart: self.configuration.serverDomain, resourcepart: text)) != nil
                    else {
                        return .send(iq.errorResult(StanzaError(.badRequest, text: "the resource is not valid")).element)
                    }
                    resource = text
                }
            }
            self.state = .bindPending
            return .bind(iq, resource: resource)
        case .bindPending:
            return self.fail(StreamError(.notAuthorized, text: "a stanza before the bind result"), header: nil)
        case .established:
            return .established(element)
        case .awaitingHeader, .awaitingTLSHandshake:
            return self.fail(
                StreamError(.notAuthorized, text: "<\(element.name.localName)/> before authentication"), header: nil)
        case .closed:
            return .none
        }
    }

    mutating func tlsEstablished() -> Action {
        guard case .awaitingTLSHandshake = self.state else { return .none }
        self.state = .awaitingHeader(.secured)
        return .none
    }

    /// SASL succeeded and `<success/>` was sent.
    /// - Parameter identity: The authenticated user's localpart.
    mutating func authenticationSucceeded(identity: String) -> Action {
        guard case .authenticating = self.state else { return .none }
        self.authenticatedIdentity = identity
        self.state = .awaitingHeader(.authenticated)
        return .restartStream
    }

    mutating func authenticationFailed() -> Action {
        guard case .authenticating = self.state else { return .none }
        self.failures += 1
        if self.failures >= self.configuration.maxAuthenticationFailures {
            return self.fail(StreamError(.policyViolation, text: "too many failed authentication attempts"), header: nil)
        }
        self.state = .negotiating(.secured)
        return .none
    }

    /// The handler bound `jid` for the pending ``Action/bind(_:resource:)``.
    mutating func bound(_ jid: JID) {
        guard self.state == .bindPending else { return }
        self.jid = jid
        self.state = .established
    }

    mutating func authenticationTimedOut() -> Action {
        switch self.state {
        case .established, .closed, .binding, .bindPending, .awaitingHeader(.authenticated):
            return .none
        case .awaitingHeader:
            return self.fail(
                StreamError(.connectionTimeout, text: "authentication took too long"),
                header: StreamHeader(contentNamespace: Namespace.client, from: self.configuration.serverDomain))
        default:
            return self.fail(StreamError(.connectionTimeout, text: "authentication took too long"), header: nil)
        }
    }

    mutating func streamClosed() -> Action {
        guard self.state != .closed else { return .none }
        self.state = .closed
        return .closeStream
    }

    mutating func connectionClosed() {
        self.state = .closed
    }

    private mutating func fail(_ error: StreamError, header: StreamHeader?) -> Action {
        self.state = .closed
        return .fail(error, header: header)
    }
}
