public import Logging
public import XMPPCore

/// What a handler can do while it handles a stanza or a binding event: send stanzas,
/// answer and make IQ requests, bind and unbind hostnames, and log.
///
/// A stanza sent without `from` gets the context's ``hostname``. An outgoing stanza's
/// `from` must be under a hostname bound on the connection, or sending fails with
/// ``ComponentError/Kind/unboundSender`` before anything reaches the server.
///
/// A connection makes the contexts its handlers receive. For tests, make one over your own
/// ``ComponentTransport`` with ``init(hostname:logger:transport:handler:features:)``, or use
/// `TestContext` from the `ComponentKitTesting` product.
public struct ComponentContext: Sendable {
    /// The bound hostname the current stanza was addressed to: a domain, or an instance of
    /// it (`search.example.com/eu-1`).
    public let hostname: String
    /// Which instance of its domain this handler serves: the resource of a `domain/resource`
    /// hostname (`eu-1`), or `nil` for a bare domain.
    public var instance: String? { HostnameKey(self.hostname)?.resource }
    /// A logger carrying `component.hostname` metadata.
    public let logger: Logger

    /// What the context sends, requests and binds through (the connection, in production).
    let transport: any ComponentTransport
    let replyTracker: IQReplyTracker?
    let installed: InstalledFeatures?

    init(
        hostname: String, logger: Logger, transport: any ComponentTransport, replyTracker: IQReplyTracker?,
        installed: InstalledFeatures?
    ) {
        self.hostname = hostname
        self.logger = logger
        self.transport = transport
        self.replyTracker = replyTracker
        self.installed = installed
    }

    /// Creates a context over a transport, for tests and for code that drives handlers
    /// itself (a ``StanzaDispatcher`` makes the per-stanza contexts of a delivery).
    /// - Parameters:
    ///   - hostname: The bound hostname the stanzas are addressed to.
    ///   - logger: The handler's logger.
    ///   - transport: What the context sends, requests and binds through.
    ///   - handler: The handler whose ``ComponentHandler/discoInfo`` and
    ///     ``ComponentHandler/features`` ``discoInfo`` lists, if any.
    ///   - features: The built-in features to list in ``discoInfo``.
    public init(
        hostname: String, logger: Logger, transport: any ComponentTransport, handler: (any ComponentHandler)? = nil,
        features: [any ComponentFeature] = []
    ) {
        self.init(
            hostname: hostname, logger: logger, transport: transport, replyTracker: nil,
            installed: handler.map { InstalledFeatures(handler: $0, builtIns: features) })
    }

    /// The hostname's service-discovery information as installed: the handler's identities
    /// and features, plus every installed ``ComponentFeature``'s (built-ins included).
    /// What ``ServiceDiscoveryFeature`` answers disco#info with.
    public var discoInfo: DiscoInfo {
        self.installed?.discoInfo ?? DiscoInfo()
    }

    /// Whether the IQ request being handled has been answered already (always `false`
    /// outside the handling of a request). Middleware reads it after `next`.
    public var hasAnsweredRequest: Bool {
        self.replyTracker?.isAnswered ?? false
    }

    /// Sends a stanza.
    /// - Parameter stanza: The stanza; `from` defaults to ``hostname``.
    /// - Throws: ``ComponentError`` when the stanza is invalid, its sender unbound, or the
    ///   connection cannot carry it; ``ComponentError/Kind/invalidStanza`` when it is a
    ///   second answer to the IQ request being handled.
    public func send(_ stanza: Stanza) async throws {
        var stanza = stanza
        let element = stanza.element
        if element["from"] == nil {
            stanza.setFrom(self.hostname)
        }
        if let tracker = self.replyTracker, element.name.localName == "iq",
            element["id"] == tracker.requestID,
            element["type"] == "result" || element["type"] == "error"
        {
            guard tracker.markAnswered() else {
                throw ComponentError(
                    .invalidStanza, "IQ '\(tracker.requestID)' was already answered; an IQ gets exactly one answer")
            }
        }
        try await self.transport.send(stanza)
    }

    /// Sends a message.
    /// - Parameter message: The message; `from` defaults to ``hostname``.
    public func send(_ message: Message) async throws {
        try await self.send(.message(message))
    }

    /// Sends a presence.
    /// - Parameter presence: The presence; `from` defaults to ``hostname``.
    public func send(_ presence: Presence) async throws {
        try await self.send(.presence(presence))
    }

    /// Sends an IQ (typically an answer; use ``request(_:timeout:redirects:)`` to ask and wait).
    /// - Parameter iq: The IQ; `from` defaults to ``hostname``.
    public func send(_ iq: IQ) async throws {
        try await self.send(.iq(iq))
    }

    /// Answers an IQ request with a result.
    /// - Parameters:
    ///   - iq: The request being answered.
    ///   - payload: The result's content, if any.
    public func reply(to iq: IQ, with payload: Element? = nil) async throws {
        try await self.send(.iq(iq.result(payload)))
    }

    /// Answers an IQ request with an error.
    /// - Parameters:
    ///   - iq: The request being answered.
    ///   - error: The error.
    public func reply(to iq: IQ, error: StanzaError) async throws {
        try await self.send(.iq(iq.errorResult(error)))
    }

    /// Declares that the IQ request being handled will be answered later, outside this
    /// call (for example by a process the handler forwards it to): when the handler
    /// returns, neither the built-in features nor `service-unavailable` answer it. The
    /// handler then owns its one answer (sent with `send`). Does nothing for
    /// other stanzas.
    public func deferReply() {
        _ = self.replyTracker?.markAnswered()
    }

    /// Answers an IQ `get` with a redirect (302) to another address, e.g. the instance of
    /// this domain that holds the requester's state: the requester asks again there with
    /// the same query and id. This is the request's one answer.
    /// - Parameters:
    ///   - iq: The request being answered; must be a `get`.
    ///   - address: Where to ask instead.
    /// - Throws: ``ComponentError`` (``ComponentError/Kind/invalidRedirect`` for a `set`, or
    ///   when the request was already answered).
    public func redirect(_ iq: IQ, to address: JID) async throws {
        try await self.send(.iq(IQRedirect.answer(redirecting: iq, to: address)))
    }

    /// Sends an IQ request and waits for its answer.
    ///
    /// The answer is accepted only from the address the request went to. An answer of
    /// type `error` is returned, not thrown: read ``/XMPPCore/StanzaView/error``.
    /// - Parameters:
    ///   - iq: A `get` or `set`; an `id` is assigned when missing, `from` defaults to ``hostname``.
    ///   - timeout: How long to wait; the configuration's default when `nil`.
    ///   - redirects: Which IQ redirects (302) to follow; by default only to the same
    ///     domain with the same query (see ``IQRedirectPolicy``).
    /// - Returns: The `result` or `error` answer.
    /// - Throws: ``ComponentError`` (timeout, connection closed…) or `CancellationError`.
    public func request(_ iq: IQ, timeout: Duration? = nil, redirects: IQRedirectPolicy = .sameDomain) async throws -> IQ {
        var iq = iq
        if iq.element["from"] == nil {
            iq.element["from"] = self.hostname
        }
        return try await self.transport.request(iq, timeout: timeout, redirects: redirects)
    }

    /// Binds another hostname on the same connection.
    /// - Parameters:
    ///   - hostname: The hostname (a domain, or `domain/resource`).
    ///   - handler: The handler for its stanzas.
    /// - Returns: The hostname the server bound.
    public func bind(_ hostname: String, handler: some ComponentHandler) async throws -> String {
        try await self.transport.bind(hostname, handler: handler)
    }

    /// Unbinds a hostname.
    /// - Parameter hostname: The hostname.
    public func unbind(_ hostname: String) async throws {
        try await self.transport.unbind(hostname)
    }
}

extension Stanza {
    /// Sets `from` on the underlying element.
    mutating func setFrom(_ from: String) {
        switch self {
        case .message(var message):
            message.element["from"] = from
            self = .message(message)
        case .presence(var presence):
            presence.element["from"] = from
            self = .presence(presence)
        case .iq(var iq):
            iq.element["from"] = from
            self = .iq(iq)
        }
    }
}
