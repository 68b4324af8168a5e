import XMPPCore

/// Which stream has bound which hostname, and where a stanza goes: the I/O-free core of
/// the reference server's routing (XEP-0225 §4–5, mirroring Prosody's module).
///
/// Bindings are keyed by the hostname's **domain**. `domain/resource` is accepted and
/// echoed, but a domain is bound by at most one stream at a time: a second stream binding
/// the same domain (with or without another resource) gets `conflict`; no round-robin.
/// Re-binding on the same stream is idempotent (the newest resource is kept).
struct ComponentRoutingTable: Sendable {
    /// A stream's identity in the table.
    typealias SessionID = UInt64

    /// One bound hostname.
    struct Binding: Hashable, Sendable {
        var session: SessionID
        /// What the stream asked for and was answered with (`domain` or `domain/resource`).
        var hostname: String
    }

    /// Where a stanza goes.
    enum Decision: Hashable, Sendable {
        /// Write it to that stream.
        case deliver(Element, to: SessionID)
        /// Hand it to the server's users (``ReferenceServer/userStanzas()``).
        case toUsers(Element)
        /// Send it back on the stream it came from.
        case reply(Element)
        /// End the sender's stream with this error.
        case streamError(StreamError)
        /// Drop it (e.g. an error about an error).
        case drop
    }

    let configuration: ReferenceServerConfiguration
    private(set) var bindings: [String: Binding] = [:]

    init(configuration: ReferenceServerConfiguration) {
        self.configuration = configuration
    }

    /// The bound hostnames as answered to their streams, sorted.
    var boundHostnames: [String] { self.bindings.values.map(\.hostname).sorted() }

    // MARK: Binding

    /// Handles a XEP-0225 `<bind/>` payload from an authenticated stream.
    /// - Returns: The hostname bound (echoed in the result), or the stanza error.
    mutating func bind(_ payload: Element, session: SessionID, identity: String) -> Result<String, StanzaError> {
        let jid: JID
        switch Self.hostname(in: payload) {
        case .success(let value): jid = value
        case .failure(let error): return .failure(error)
        }
        let domain = jid.domainpart
        guard self.configuration.isAllowed(domain, for: identity) else {
            return .failure(StanzaError(.notAllowed, text: "\(identity) may not bind \(domain)"))
        }
        if let existing = self.bindings[domain], existing.session != session {
            return .failure(StanzaError(.conflict, text: "\(domain) is bound by another stream"))
        }
        let hostname = jid.description
        self.bindings[domain] = Binding(session: session, hostname: hostname)
        return .success(hostname)
    }

    /// Handles a XEP-0225 `<unbind/>` payload.
    /// - Returns: The hostname released, or `bad-request`/`item-not-found`.
    mutating func unbind(_ payload: Element, session: SessionID) -> Result<String, StanzaError> {
        let jid: JID
        switch Self.hostname(in: payload) {
        case .success(let value): jid = value
        case .failure(let error): return .failure(error)
        }
        guard let existing = self.bindings[jid.domainpart], existing.session == session else {
            return .failure(StanzaError(.itemNotFound, text: "\(jid) is not bound on this stream"))
        }
        self.bindings[jid.domainpart] = nil
        return .success(existing.hostname)
    }

    /// Binds a XEP-0114 stream's hostname; `false` if another stream has it.
    mutating func bindLegacy(_ hostname: String, session: SessionID) -> Bool {
        let domain = hostname.lowercased()
        if let existing = self.bindings[domain], existing.session != session { return false }
        self.bindings[domain] = Binding(session: session, hostname: domain)
        return true
    }

    /// The stream that bound a domain, if any.
    func session(boundTo domain: String) -> SessionID? {
        self.bindings[domain.lowercased()]?.session
    }

    /// Releases every hostname of a closed stream.
    /// - Returns: The hostnames released.
    mutating func release(session: SessionID) -> [String] {
        let released = self.bindings.filter { $0.value.session == session }
        for domain in released.keys { self.bindings[domain] = nil }
        return released.values.map(\.hostname).sorted()
    }

    // MARK: Routing

    /// Routes a stanza a component sent on stream `session`.
    func routeFromComponent(_ element: Element, session: SessionID) -> Decision {
        guard let stanza = Stanza(element) else {
            return .streamError(
                StreamError(.unsupportedStanzaType, text: "<\(element.name.localName)/> is not a stanza"))
        }
        guard let fromText = element["from"] else {
            return .streamError(StreamError(.improperAddressing, text: "a component stanza needs a 'from'"))
        }
        guard let from = try? JID(fromText), let binding = self.bindings[from.domainpart], binding.session == session
        else {
            return .streamError(StreamError(.invalidFrom, text: "'\(fromText)' is not under a hostname bound on this stream"))
        }
        guard let toText = element["to"] else {
            return self.bounce(stanza, StanzaError(.badRequest, text: "a component stanza needs a 'to'"))
                .map { .reply($0) } ?? .drop
        }
        guard let to = try? JID(toText) else {
            return self.bounce(stanza, StanzaError(.jidMalformed)).map { .reply($0) } ?? .drop
        }
        // XEP-0199: the server answers pings addressed to itself (components' keepalive).
        if case .iq(let iq) = stanza, iq.type == .get, to.description == self.configuration.domain.lowercased(),
            iq.payload?.name == QualifiedName(Namespace.ping, "ping")
        {
            return .reply(iq.result().element)
        }
        return self.route(stanza, to: to, bounce: { .reply($0) })
    }

    /// Routes a stanza a user of the server sent (``ReferenceServer/inject(_:)``).
    /// - Throws: ``ReferenceServerError`` when `from` is not a user at the server domain or `to` is missing.
    func routeFromUser(_ element: Element) throws(ReferenceServerError) -> Decision {
        guard let stanza = Stanza(element) else {
            throw ReferenceServerError(.invalidInjection, "not a stanza: \(element)")
        }
        guard let from = stanza.from, from.domainpart == self.configuration.domain.lowercased(), from.localpart != nil
        else {
            throw ReferenceServerError(
                .invalidInjection, "'from' must be a user JID at \(self.configuration.domain): \(element["from"] ?? "none")")
        }
        guard let to = stanza.to else {
            throw ReferenceServerError(.invalidInjection, "'to' is missing or invalid")
        }
        return self.route(stanza, to: to, bounce: { .toUsers($0) })
    }

    private func route(_ stanza: Stanza, to: JID, bounce: (Element) -> Decision) -> Decision {
        if let binding = self.bindings[to.domainpart] {
            return .deliver(stanza.element, to: binding.session)
        }
        if self.configuration.isComponentHostname(to.domainpart) {
            return self.bounce(stanza, StanzaError(.serviceUnavailable, text: "\(to.domainpart) is not connected"))
                .map(bounce) ?? .drop
        }
        return .toUsers(stanza.element)
    }

    /// The error reply to a stanza, or `nil` for IQ results and errors of any kind (never bounced).
    private func bounce(_ stanza: Stanza, _ error: StanzaError) -> Element? {
        switch stanza {
        case .iq(let iq):
            guard iq.type.isRequest else { return nil }
            return iq.errorResult(error).element
        case .message(let message):
            guard !stanza.isError else { return nil }
            return message.errorReply(error).element
        case .presence(let presence):
            guard !stanza.isError else { return nil }
            return presence.errorReply(error).element
        }
    }

    /// The `<hostname/>` of a bind or unbind payload as a JID without localpart.
    private static func hostname(in payload: Element) -> Result<JID, StanzaError> {
        guard let text = payload.firstChild("hostname", namespace: Namespace.component)?.text.trimmingXMLWhitespace(),
            !text.isEmpty
        else {
            return .failure(StanzaError(.badRequest, text: "missing <hostname/>"))
        }
        guard let jid = try? JID(text) else {
            return .failure(StanzaError(.badRequest, text: "invalid hostname '\(text)'"))
        }
        guard jid.localpart == nil else {
            return .failure(StanzaError(.badRequest, text: "a hostname has no localpart: '\(text)'"))
        }
        return .success(jid)
    }
}
