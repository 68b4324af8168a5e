import NIOCore
import XMPPCore

/// Which stream has bound which hostname, and where a stanza goes: the I/O-free core of
/// the reference server's routing (XEP-0225 §4–5, mirroring Prosody's module).
///
/// A domain may be bound by several **instances**: `domain/resource` hostnames (and the
/// bare domain), on one stream or on several (XEP-0225 §2, "load balancing"). An identity
/// allowed to bind a domain may bind any resource of it; the same hostname on another
/// stream is a `conflict`, and re-binding it on the same stream is idempotent. Stanzas
/// to the domain or any JID under it go to the instance(s) the domain's
/// ``RoutingAlgorithm`` chooses (``DomainInstances``); a stanza to `domain/resource` goes
/// to that instance; an IQ result or error goes to the instance that sent the request.
struct ComponentRoutingTable: Sendable {
    /// A stream's identity in the table.
    typealias SessionID = UInt64

    /// Where a stanza goes.
    enum Decision: Hashable, Sendable {
        /// Write it to that stream.
        case deliver(Element, to: SessionID)
        /// Write it to each of these streams (``RoutingAlgorithm/all``).
        case deliverAll(Element, to: [SessionID])
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
    /// Per domain (lowercased), its live instances.
    private(set) var domains: [String: DomainInstances] = [:]
    /// IQ requests sent by an instance, by (addressee, id, sender's domain): their answer
    /// goes back to that instance.
    private var requests: [RequestKey: DomainInstances.ID] = [:]
    private var requestOrder = CircularBuffer<RequestKey>()
    /// Most IQ requests tracked at once; the oldest are forgotten past it.
    static let maximumTrackedRequests = 65_536

    struct RequestKey: Hashable, Sendable {
        var peer: String
        var id: String
        var domain: String
    }

    init(configuration: ReferenceServerConfiguration) {
        self.configuration = configuration
    }

    /// The bound hostnames as answered to their streams, sorted.
    var boundHostnames: [String] { self.domains.values.flatMap { $0.instances.map(\.hostname) }.sorted() }

    /// Whether a domain has a live instance.
    func hasInstances(_ domain: String) -> Bool {
        self.domains[domain.lowercased()]?.isEmpty == false
    }

    /// The routing algorithm in force for a domain.
    func algorithm(for domain: String) -> RoutingAlgorithm {
        self.domains[domain.lowercased()]?.algorithm ?? self.configuration.routingAlgorithm(for: domain)
    }

    // MARK: Binding

    /// Handles a XEP-0225 `<bind/>` payload from an authenticated stream.
    /// - Returns: The hostname bound (echoed in the result), or the stanza error.
    mutating func bind(_ payload: Element, session: SessionID, identity: String) -> Result<String, StanzaError> {
        let jid: JID
        let hostnameElement: Element
        switch Self.hostname(in: payload) {
        case .success(let value): (jid, hostnameElement) = value
        case .failure(let error): return .failure(error)
        }
        let domain = jid.domainpart
        guard self.configuration.isAllowed(domain, for: identity) else {
            return .failure(StanzaError(.notAllowed, text: "\(identity) may not bind \(domain)"))
        }
        var weight = 1
        if let text = hostnameElement.attribute(QualifiedName(Namespace.componentBalancing, "weight")) {
            guard let value = Int(text), (1...1000).contains(value) else {
                return .failure(StanzaError(.badRequest, text: "weight must be an integer from 1 to 1000, not '\(text)'"))
            }
            weight = value
        }
        let hostname = jid.description
        var instances = self.domains[domain] ?? DomainInstances(algorithm: self.configuration.routingAlgorithm(for: domain))
        switch instances.add(.init(session: session, resource: jid.resourcepart), hostname: hostname, weight: weight) {
        case .added, .updated:
            self.domains[domain] = instances
            return .success(hostname)
        case .conflict:
            return .failure(StanzaError(.conflict, text: "\(hostname) is bound by another stream"))
        case .full:
            return .failure(
                StanzaError(.resourceConstraint, text: "\(domain) has \(DomainInstances.maximumInstances) instances already"))
        }
    }

    /// Handles a XEP-0225 `<unbind/>` payload: the instance of that hostname on this stream
    /// (for a bare domain, the stream's only instance of it).
    /// - Returns: The hostname released, or `bad-request`/`item-not-found`.
    mutating func unbind(_ payload: Element, session: SessionID) -> Result<String, StanzaError> {
        let jid: JID
        switch Self.hostname(in: payload) {
        case .success(let value): jid = value.0
        case .failure(let error): return .failure(error)
        }
        let domain = jid.domainpart
        guard var instances = self.domains[domain] else {
            return .failure(StanzaError(.itemNotFound, text: "\(jid) is not bound on this stream"))
        }
        var id = DomainInstances.ID(session: session, resource: jid.resourcepart)
        if instances.instance(id) == nil, jid.resourcepart == nil, case let own = instances.instances(of: session),
            own.count == 1
        {
            id = own[0].id
        }
        guard let removed = instances.remove(id) else {
            return .failure(StanzaError(.itemNotFound, text: "\(jid) is not bound on this stream"))
        }
        self.domains[domain] = instances.isEmpty ? nil : instances
        return .success(removed.hostname)
    }

    /// Binds a XEP-0114 stream's hostname; `false` if another stream has it.
    mutating func bindLegacy(_ hostname: String, session: SessionID) -> Bool {
        let domain = hostname.lowercased()
        var instances = self.domains[domain] ?? DomainInstances(algorithm: self.configuration.routingAlgorithm(for: domain))
        if instances.instances.contains(where: { $0.id.session != session }) { return false }
        _ = instances.add(.init(session: session, resource: nil), hostname: domain, weight: 1)
        self.domains[domain] = instances
        return true
    }

    /// The stream that bound a hostname (`domain/resource`: that instance; a domain: its
    /// first instance), if any.
    func session(boundTo hostname: String) -> SessionID? {
        guard let jid = try? JID(hostname), let instances = self.domains[jid.domainpart] else { return nil }
        if let resource = jid.resourcepart { return instances.instance(resource: resource)?.id.session }
        return instances.instances.first?.id.session
    }

    /// Every instance of every domain: hostname, stream, weight.
    var instances: [(hostname: String, session: SessionID, weight: Int)] {
        self.domains.values.flatMap { $0.instances.map { ($0.hostname, $0.id.session, $0.weight) } }
            .sorted { $0.hostname < $1.hostname }
    }

    /// Releases every hostname of a closed stream; its share of each domain moves to the
    /// domain's other instances at once.
    /// - Returns: The hostnames released.
    mutating func release(session: SessionID) -> [String] {
        var released: [String] = []
        for (domain, var instances) in self.domains {
            let own = instances.instances(of: session)
            guard !own.isEmpty else { continue }
            for instance in own {
                instances.remove(instance.id)
                released.append(instance.hostname)
            }
            self.domains[domain] = instances.isEmpty ? nil : instances
        }
        return released.sorted()
    }

    // MARK: XEP-0354

    /// Sets a domain's routing algorithm (a component's `<cmr/>`); `false` when the domain
    /// has no instance.
    mutating func setAlgorithm(_ algorithm: RoutingAlgorithm, for domain: String) -> Bool {
        guard var instances = self.domains[domain.lowercased()] else { return false }
        instances.algorithm = algorithm
        self.domains[domain.lowercased()] = instances
        return true
    }

    /// Answers XEP-0354 `<query/>` (get) and `<cmr/>` (set) from a component about its own
    /// domain; `nil` when the IQ is not one.
    private mutating func customizableMessageRouting(_ iq: IQ, from: JID, to: JID?) -> Decision? {
        guard let payload = iq.payload, payload.name.namespace == Namespace.customizableMessageRouting else { return nil }
        let serverDomain = self.configuration.domain.lowercased()
        guard to == nil || to?.description == serverDomain || to?.description == from.domainpart else { return nil }
        var answer: IQ
        switch (iq.type, payload.name.localName) {
        case (.get, "query"):
            let active = self.algorithm(for: from.domainpart)
            var children = [
                Element("active", namespace: Namespace.customizableMessageRouting, attributes: ["algorithm": active.rawValue])
            ]
            for algorithm in RoutingAlgorithm.allCases {
                children.append(
                    Element(
                        "available", namespace: Namespace.customizableMessageRouting,
                        attributes: ["algorithm": algorithm.rawValue]))
            }
            answer = iq.result(Element("query", namespace: Namespace.customizableMessageRouting, children: children))
        case (.set, "cmr"):
            guard let name = payload["algorithm"], let algorithm = RoutingAlgorithm(rawValue: name) else {
                answer = iq.errorResult(
                    StanzaError(
                        .badRequest,
                        text: "unknown algorithm '\(payload["algorithm"] ?? "")'; see <query xmlns='urn:xmpp:cmr:0'/>"))
                break
            }
            answer =
                self.setAlgorithm(algorithm, for: from.domainpart)
                ? iq.result() : iq.errorResult(StanzaError(.notAllowed, text: "\(from.domainpart) has no instance"))
        default:
            answer = iq.errorResult(StanzaError(.badRequest, text: "expected <query/> (get) or <cmr/> (set)"))
        }
        answer.element["from"] = to?.description
        return .reply(answer.element)
    }

    /// XEP-0030 for the server's own domain: the server advertises `urn:xmpp:cmr:0`.
    private func serverDiscoInfo(_ iq: IQ, to: JID) -> Element? {
        guard iq.type == .get, to.description == self.configuration.domain.lowercased(),
            let payload = iq.payload, payload.name == QualifiedName(Namespace.discoInfo, "query"), payload["node"] == nil
        else { return nil }
        let features = [Namespace.discoInfo, Namespace.ping, Namespace.customizableMessageRouting].map {
            Element("feature", namespace: Namespace.discoInfo, attributes: ["var": $0])
        }
        let identity = Element("identity", namespace: Namespace.discoInfo, attributes: ["category": "server", "type": "im"])
        var answer = iq.result(Element("query", namespace: Namespace.discoInfo, children: [identity] + features))
        answer.element["from"] = to.description
        return answer.element
    }

    // MARK: Routing

    /// Routes a stanza a component sent on stream `session`.
    mutating func routeFromComponent(_ element: Element, session: SessionID) -> Decision {
        guard let stanza = Stanza(element) else {
            return .streamError(
                StreamError(.unsupportedStanzaType, text: "<\(element.name.localName)/> is not a stanza"))
        }
        guard let fromText = element["from"] else {
            return .streamError(StreamError(.improperAddressing, text: "a component stanza needs a 'from'"))
        }
        // The hot path (every stanza a component sends): no copy of the domain's state, and
        // bookkeeping only where several instances make it matter.
        guard let from = try? JID(fromText),
            let sender = self.domains[from.domainpart]?.sender(session: session, from: from)
        else {
            return .streamError(StreamError(.invalidFrom, text: "'\(fromText)' is not under a hostname bound on this stream"))
        }
        let shared = (self.domains[from.domainpart]?.instances.count ?? 0) > 1
        if shared, self.domains[from.domainpart]?.algorithm == .mostActive {
            self.domains[from.domainpart]!.noteActivity(sender)
        }
        guard let toText = element["to"] else {
            if case .iq(let iq) = stanza, let decision = self.customizableMessageRouting(iq, from: from, to: nil) {
                return decision
            }
            return self.bounce(stanza, StanzaError(.badRequest, text: "a component stanza needs a 'to'"))
                .map { .reply($0) } ?? .drop
        }
        guard let to = try? JID(toText) else {
            return self.bounce(stanza, StanzaError(.jidMalformed)).map { .reply($0) } ?? .drop
        }
        if case .iq(let iq) = stanza {
            // XEP-0199: the server answers pings addressed to itself (components' keepalive).
            if iq.type == .get, to.description == self.configuration.domain.lowercased(),
                iq.payload?.name == QualifiedName(Namespace.ping, "ping")
            {
                return .reply(iq.result().element)
            }
            if let decision = self.customizableMessageRouting(iq, from: from, to: to) {
                return decision
            }
            if let answer = self.serverDiscoInfo(iq, to: to) {
                return .reply(answer)
            }
            if iq.type.isRequest, shared {
                self.track(RequestKey(peer: to.description, id: iq.requestID, domain: from.domainpart), sender)
            }
        }
        return self.route(stanza, to: to, bounce: { .reply($0) })
    }

    /// Routes a stanza a user of the server sent (``ReferenceServer/inject(_:)``).
    /// - Throws: ``ReferenceServerError`` when `from` is not a user at the server domain or `to` is missing.
    mutating func routeFromUser(_ element: Element) throws(ReferenceServerError) -> Decision {
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
        if case .iq(let iq) = stanza, let answer = self.serverDiscoInfo(iq, to: to) {
            return .toUsers(answer)
        }
        return self.route(stanza, to: to, bounce: { .toUsers($0) })
    }

    /// Routes a stanza again after its stream failed to take it (the stream is gone).
    mutating func reroute(_ element: Element, fromUser: Bool) -> Decision {
        guard let stanza = Stanza(element), let to = stanza.to else { return .drop }
        return self.route(stanza, to: to, bounce: { fromUser ? .toUsers($0) : .reply($0) })
    }

    /// Routes again a stanza that a stream which is gone had not acknowledged (XEP-0198),
    /// whoever sent it: to another live instance of its domain, or, when none is left, its
    /// bounce goes to its sender by address (the server's users, or a component's live
    /// instance; nowhere when that is gone too: an error about an error is never sent).
    mutating func redeliver(_ element: Element) -> Decision {
        guard let stanza = Stanza(element), let to = stanza.to else { return .drop }
        let decision = self.route(stanza, to: to, bounce: { .reply($0) })
        guard case .reply(let bounce) = decision else { return decision }
        guard let error = Stanza(bounce), let sender = error.to else { return .drop }
        if sender.domainpart == self.configuration.domain.lowercased() { return .toUsers(bounce) }
        return self.route(error, to: sender, bounce: { _ in .drop })
    }

    private mutating func route(_ stanza: Stanza, to: JID, bounce: (Element) -> Decision) -> Decision {
        let domain = to.domainpart
        // The domain's state is read and changed in place (`self.domains[domain]!.…`), never
        // copied out: a copy would duplicate its affinity table on every change.
        guard let count = self.domains[domain]?.instances.count, count > 0 else {
            if self.configuration.isComponentHostname(domain) {
                return self.bounce(stanza, StanzaError(.serviceUnavailable, text: "\(domain) is not connected"))
                    .map(bounce) ?? .drop
            }
            return .toUsers(stanza.element)
        }
        if count == 1 {
            return .deliver(stanza.element, to: self.domains[domain]!.instances[0].id.session)
        }
        // Addressed to one instance (`domain/resource`).
        if to.localpart == nil, let resource = to.resourcepart,
            let instance = self.domains[domain]!.instance(resource: resource)
        {
            return .deliver(stanza.element, to: instance.id.session)
        }
        if case .iq(let iq) = stanza, !iq.type.isRequest, !self.requests.isEmpty {
            // An answer goes to the instance that asked, while it lives.
            let key = RequestKey(peer: stanza.from?.description ?? "", id: iq.requestID, domain: domain)
            if let id = self.requests.removeValue(forKey: key), let instance = self.domains[domain]!.instance(id) {
                return .deliver(stanza.element, to: instance.id.session)
            }
        }
        let isRequest = if case .iq(let iq) = stanza { iq.type.isRequest } else { false }
        let chosen = self.domains[domain]!.select(from: stanza.from?.description, isIQRequest: isRequest)
        var sessions: [SessionID] = []
        for instance in chosen where !sessions.contains(instance.id.session) {
            sessions.append(instance.id.session)
        }
        return sessions.count == 1 ? .deliver(stanza.element, to: sessions[0]) : .deliverAll(stanza.element, to: sessions)
    }

    private mutating func track(_ key: RequestKey, _ id: DomainInstances.ID) {
        if self.requests.updateValue(id, forKey: key) == nil {
            self.requestOrder.append(key)
        }
        while self.requestOrder.count > Self.maximumTrackedRequests {
            let oldest = self.requestOrder.removeFirst()
            self.requests.removeValue(forKey: oldest)
        }
        // Answered requests leave stale keys in the order buffer; compact when it doubles.
        if self.requestOrder.count > 2 * max(self.requests.count, 1024) {
            self.requestOrder = CircularBuffer(self.requestOrder.filter { self.requests[$0] != nil })
        }
    }

    /// The error reply to a stanza, or `nil` for IQ results and errors of any kind (never bounced).
    func bounce(_ stanza: Stanza, _ error: StanzaError) -> Element? {
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
    private static func hostname(in payload: Element) -> Result<(JID, Element), StanzaError> {
        guard let element = payload.firstChild("hostname", namespace: Namespace.component),
            case let text = element.text.trimmingXMLWhitespace(), !text.isEmpty
        else {
            return .failure(StanzaError(.badRequest, text: "missing <hostname/>"))
        }
        guard let jid = try? JID(text) else {
            return .failure(StanzaError(.badRequest, text: "invalid hostname '\(text)'"))
        }
        guard jid.localpart == nil else {
            return .failure(StanzaError(.badRequest, text: "a hostname has no localpart: '\(text)'"))
        }
        return .success((jid, element))
    }
}
