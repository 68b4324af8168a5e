public import XMPPCore

/// The client side of a XEP-0114 (Jabber Component Protocol) handshake, as an I/O-free
/// state machine.
///
/// One stream per hostname: a `jabber:component:accept` header whose `to` is the
/// component's hostname, the server's header with a stream `id`, then
/// `<handshake>hex(SHA-1(id + secret))</handshake>`, answered by an empty `<handshake/>`
/// or a stream error. There are no stream features, no STARTTLS and no SASL; TLS, when
/// used, is direct TLS from the first byte (handled below this machine).
public struct LegacyComponentNegotiationStateMachine: Sendable {
    /// What the driving handler must do next.
    public enum Action: Hashable, Sendable {
        /// Nothing to do.
        case none
        /// Send ``LegacyComponentNegotiationStateMachine/outgoingHeader``.
        case sendHeader
        /// Send an element (the `<handshake/>`).
        case send(Element)
        /// The server accepted the handshake: the stream carries the hostname's stanzas.
        case negotiated
        /// The handshake failed: close the stream.
        case fail(NegotiationError)
    }

    private enum State: Hashable, Sendable {
        case idle
        case awaitingHeader
        /// The header had no id: a stream error usually follows (Prosody sends `id=''`
        /// before `host-unknown`), and it says more than "no id".
        case awaitingErrorAfterHeaderWithoutID
        case awaitingHandshakeReply
        case negotiated
        case failed
    }

    /// The component hostname this stream serves.
    public let hostname: String
    private let secret: String
    private var state: State = .idle

    /// The `id` of the server's stream header.
    public private(set) var streamID: String?

    /// Creates a machine.
    /// - Parameters:
    ///   - hostname: The component's hostname (stream `to`).
    ///   - secret: The shared secret for that hostname. It is used only to compute the
    ///     digest and never appears in an action, error or description.
    public init(hostname: String, secret: String) {
        self.hostname = hostname
        self.secret = secret
    }

    /// The header the handler sends for ``Action/sendHeader``.
    public var outgoingHeader: StreamHeader {
        StreamHeader(contentNamespace: Namespace.componentAccept, to: self.hostname, version: nil)
    }

    /// Whether the handshake succeeded.
    public var isNegotiated: Bool { self.state == .negotiated }

    /// The connection is up: open the stream.
    public mutating func start() -> Action {
        guard case .idle = self.state else { return .none }
        self.state = .awaitingHeader
        return .sendHeader
    }

    /// The server's stream header arrived.
    /// - Parameter header: The header.
    public mutating func streamOpened(_ header: StreamHeader) -> Action {
        guard case .awaitingHeader = self.state else {
            return self.fail(NegotiationError(.invalidStreamHeader, "the server opened a second stream unexpectedly"))
        }
        guard header.contentNamespace == Namespace.componentAccept else {
            return self.fail(
                NegotiationError(
                    .invalidStreamHeader,
                    "the server answered with namespace '\(header.contentNamespace)', not jabber:component:accept: "
                        + "this is not a XEP-0114 component port"))
        }
        guard let id = header.id, !id.isEmpty else {
            self.state = .awaitingErrorAfterHeaderWithoutID
            return .none
        }
        self.streamID = id
        self.state = .awaitingHandshakeReply
        let digest = ComponentHandshake.digest(streamID: id, secret: self.secret)
        return .send(Element("handshake", namespace: Namespace.componentAccept, text: digest))
    }

    /// A complete top-level element arrived.
    /// - Parameter element: The element.
    public mutating func received(_ element: Element) -> Action {
        if element.name == QualifiedName(Namespace.stream, "error") {
            let error = StreamError(element: element) ?? StreamError(.undefinedCondition)
            return self.fail(NegotiationError.from(error, hostname: self.hostname, legacy: true))
        }
        if case .awaitingErrorAfterHeaderWithoutID = self.state {
            return self.fail(Self.headerWithoutID)
        }
        guard case .awaitingHandshakeReply = self.state else {
            return self.unexpected(element)
        }
        // The decoder maps jabber:component:accept to the canonical jabber:client.
        guard element.name.localName == "handshake",
            element.name.namespace == Namespace.client || element.name.namespace == Namespace.componentAccept
        else {
            return self.unexpected(element)
        }
        self.state = .negotiated
        return .negotiated
    }

    /// The server closed the stream or the connection ended.
    public mutating func connectionClosed() -> Action {
        switch self.state {
        case .negotiated, .failed:
            return .none
        case .awaitingHandshakeReply:
            return self.fail(
                NegotiationError(
                    .closedDuringNegotiation,
                    "the server closed the connection after the handshake for \(self.hostname) without answering "
                        + "(often a wrong secret or an unknown hostname)"))
        case .awaitingErrorAfterHeaderWithoutID:
            return self.fail(Self.headerWithoutID)
        case .idle, .awaitingHeader:
            return self.fail(
                NegotiationError(
                    .closedDuringNegotiation, "the server closed the connection before opening a stream for \(self.hostname)"))
        }
    }

    private static let headerWithoutID = NegotiationError(
        .invalidStreamHeader, "the server's stream header carries no id, so no handshake can be computed")

    private mutating func unexpected(_ element: Element) -> Action {
        self.fail(
            NegotiationError(
                .unexpectedElement(element.name),
                "unexpected <\(element.name.localName) xmlns='\(element.name.namespace)'> during the XEP-0114 handshake for \(self.hostname)"
            ))
    }

    private mutating func fail(_ error: NegotiationError) -> Action {
        self.state = .failed
        return .fail(error)
    }
}
