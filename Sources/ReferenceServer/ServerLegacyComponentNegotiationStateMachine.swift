public import XMPPCore
public import XMPPStream

/// The server side of a XEP-0114 component handshake, as an I/O-free state machine.
///
/// The component opens a `jabber:component:accept` stream whose `to` is its hostname; the
/// server answers with a header carrying a random `id`; the component sends
/// `<handshake>` with the lowercase hex SHA-1 of id + secret. A matching digest is
/// ``Action/authenticate(hostname:)``: the handler binds the hostname (it may be taken:
/// ``bindingConflicted()``) and then calls ``bindingSucceeded()``, which answers with an
/// empty `<handshake/>`.
///
/// Failures: wrong namespace `invalid-namespace`; unknown `to` `host-unknown`; wrong
/// digest or anything but `<handshake/>` first `not-authorized`; hostname bound already
/// `conflict`. Each ends the stream.
public struct ServerLegacyComponentNegotiationStateMachine: Sendable {
    /// What the driving handler must do next.
    public enum Action: Hashable, Sendable {
        /// Nothing; wait for the next event.
        case none
        /// Send this header.
        case sendHeader(StreamHeader)
        /// The handshake is correct: bind the hostname, then call ``bindingSucceeded()``
        /// or ``bindingConflicted()``.
        case authenticate(hostname: String)
        /// Send this element.
        case send(Element)
        /// The stream is established: route this element.
        case established(Element)
        /// The peer closed its stream: answer `</stream:stream>` and close.
        case closeStream
        /// Send the header if given, then the stream error, `</stream:stream>`, and close.
        case fail(StreamError, header: StreamHeader?)
    }

    private enum State: Hashable, Sendable {
        case awaitingHeader
        case awaitingHandshake(hostname: String, secret: String, streamID: String)
        case binding(hostname: String)
        case established(hostname: String)
        case closed
    }

    private let secrets: @Sendable (String) -> String?
    private var state = State.awaitingHeader

    /// Creates a machine.
    /// - Parameter secrets: The shared secret of a hostname, or `nil` if it is unknown.
    public init(secrets: @escaping @Sendable (String) -> String?) {
        self.secrets = secrets
    }

    /// The hostname, once the handshake succeeded.
    public var hostname: String? {
        if case .established(let hostname) = self.state { return hostname }
        return nil
    }

    /// The component's stream header arrived.
    /// - Parameter header: The header.
    public mutating func streamOpened(_ header: StreamHeader) -> Action {
        guard case .awaitingHeader = self.state else {
            return self.fail(StreamError(.invalidXML, text: "unexpected stream header"), header: nil)
        }
        var reply = StreamHeader(contentNamespace: Namespace.componentAccept, id: StreamID.make(), version: nil)
        guard header.contentNamespace == Namespace.componentAccept else {
            return self.fail(
                StreamError(.invalidNamespace, text: "this port speaks jabber:component:accept (XEP-0114)"), header: reply)
        }
        guard let hostname = header.to?.lowercased(), let secret = self.secrets(hostname) else {
            return self.fail(StreamError(.hostUnknown, text: "no component is configured for this hostname"), header: reply)
        }
        reply.from = hostname
        self.state = .awaitingHandshake(hostname: hostname, secret: secret, streamID: reply.id ?? "")
        return .sendHeader(reply)
    }

    /// A complete top-level element arrived.
    /// - Parameter element: The element (stanzas arrive in the canonical `jabber:client`).
    public mutating func received(_ element: Element) -> Action {
        if element.name == QualifiedName(Namespace.stream, "error") {
            self.state = .closed
            return .closeStream
        }
        switch self.state {
        case .awaitingHandshake(let hostname, let secret, let streamID):
            guard element.name.localName == "handshake",
                element.name.namespace == Namespace.client || element.name.namespace == Namespace.componentAccept
            else {
                return self.fail(StreamError(.notAuthorized, text: "<handshake/> expected"), header: nil)
            }
            let expected = ComponentHandshake.digest(streamID: streamID, secret: secret)
            guard ComponentHandshake.matches(element.text.trimmingXMLWhitespace(), expected: expected) else {
                return self.fail(StreamError(.notAuthorized, text: "handshake mismatch"), header: nil)
            }
            self.state = .binding(hostname: hostname)
            return .authenticate(hostname: hostname)
        case .established:
            return .established(element)
        case .awaitingHeader, .binding:
            return self.fail(StreamError(.notAuthorized, text: "not authenticated"), header: nil)
        case .closed:
            return .none
        }
    }

    /// The hostname was bound to this stream: answer the handshake.
    public mutating func bindingSucceeded() -> Action {
        guard case .binding(let hostname) = self.state else { return .none }
        self.state = .established(hostname: hostname)
        return .send(Element("handshake", namespace: Namespace.client))
    }

    /// Another stream has the hostname.
    public mutating func bindingConflicted() -> Action {
        guard case .binding(let hostname) = self.state else { return .none }
        return self.fail(StreamError(.conflict, text: "\(hostname) is already bound"), header: nil)
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

    private mutating func fail(_ error: StreamError, header: StreamHeader?) -> Action {
        self.state = .closed
        return .fail(error, header: header)
    }
}

extension String {
    /// The string without leading and trailing XML whitespace.
    func trimmingXMLWhitespace() -> String {
        let scalars = self.unicodeScalars
        let isSpace: (Unicode.Scalar) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = scalars.firstIndex(where: { !isSpace($0) }),
            let end = scalars.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(scalars[start...end])
    }
}
