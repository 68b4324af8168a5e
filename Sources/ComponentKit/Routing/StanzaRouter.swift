public import XMPPCore

/// A handler that routes stanzas to closures by kind, type and payload: IQ requests by
/// type and payload name, messages by type and/or payload namespace, presences by type,
/// and a fallback for the rest.
///
/// ```swift
/// var router = StanzaRouter(identity: .init(category: "component", type: "generic", name: "Key-value store"))
/// router.iq(.get, "urn:example:kv", "query") { iq, context in
///     guard let key = iq.payload?.firstChild("item", namespace: "urn:example:kv")?["key"],
///         let value = store[key]
///     else {
///         throw StanzaError(.itemNotFound)
///     }
///     return Element("query", namespace: "urn:example:kv", text: value)
/// }
/// router.message(.chat) { message, context in
///     try await context.send(message.reply(body: "hello"))
/// }
/// try connection.register("kv.example.com", handler: router)
/// ```
///
/// ## IQ requests
///
/// An IQ route returns the result's payload (or `nil` for an empty result) and the router
/// sends the `result`; it throws a ``/XMPPCore/StanzaError`` to answer with that error. A
/// route that answers by itself through the context (say, with an IQ redirect) returns
/// `nil`; returning a payload as well would be a second answer, which is refused.
/// The exactly-one-answer rule holds: a request with a payload the router has a route for,
/// but not of this type (a `set` where only `get` is routed), is answered
/// `feature-not-implemented`; a request no route matches goes to the ``fallback(_:)``, and
/// when that leaves it unanswered (or there is none), to the installed features
/// (disco, ping, version, ``features``), then gets `service-unavailable`.
///
/// ## Service discovery
///
/// Each IQ route's payload namespace is advertised in disco#info automatically (pass
/// `advertise: false` for a namespace that is not a feature, such as one shared with
/// another protocol); ``advertisedFeatures`` adds namespaces with no route (a message
/// protocol, say). ``identities`` are the router's disco#info identities.
///
/// ## Order
///
/// Message and presence routes are tried in the order they were added, the first match
/// wins; an IQ route is found by its exact type and payload name (adding the same one
/// again replaces it). Everything goes through ``middleware`` (outermost first) before
/// reaching a route.
public struct StanzaRouter: ComponentHandler {
    /// An IQ route: answers a request with the result's payload, or throws a ``/XMPPCore/StanzaError``.
    public typealias IQRoute = @Sendable (IQ, ComponentContext) async throws -> Element?
    /// A message route.
    public typealias MessageRoute = @Sendable (Message, ComponentContext) async throws -> Void
    /// A presence route.
    public typealias PresenceRoute = @Sendable (Presence, ComponentContext) async throws -> Void
    /// The fallback: any stanza no route took.
    public typealias FallbackRoute = @Sendable (Stanza, ComponentContext) async throws -> Void
    /// A binding event.
    public typealias BindingEvent = @Sendable (String, ComponentContext) async -> Void

    /// The IQ types a route answers: requests.
    public enum RequestType: String, Hashable, Sendable, CaseIterable {
        /// `get`.
        case get
        /// `set`.
        case set
    }

    private struct IQKey: Hashable, Sendable {
        var type: RequestType
        var name: QualifiedName
    }

    private struct MessageEntry: Sendable {
        var type: Message.MessageType?
        var namespace: String?
        var route: MessageRoute
    }

    private struct PresenceEntry: Sendable {
        var type: Presence.PresenceType?
        var matchesAll: Bool
        var route: PresenceRoute
    }

    private var iqRoutes: [IQKey: IQRoute] = [:]
    /// Payload names with at least one IQ route, for `feature-not-implemented`.
    private var iqPayloads: Set<QualifiedName> = []
    /// Route namespaces to advertise, in the order added.
    private var routeNamespaces: [String] = []
    private var messageRoutes: [MessageEntry] = []
    private var presenceRoutes: [PresenceEntry] = []
    private var fallbackRoute: FallbackRoute?
    private var boundEvent: BindingEvent?
    private var unboundEvent: (@Sendable (String) async -> Void)?

    /// The disco#info identities; a generic component by default.
    public var identities: [DiscoInfo.Identity]
    /// Namespaces advertised in disco#info beside those of the IQ routes.
    public var advertisedFeatures: [String] = []
    /// Extra ``ComponentFeature``s installed on the router's hostnames.
    public var features: [any ComponentFeature] = []
    /// Middleware every stanza goes through before its route, outermost first.
    public var middleware: [any StanzaMiddleware] = []
    /// Where the router's loop runs (see ``ComponentHandler/execution``).
    public var execution: HandlerExecution = .eventLoop

    /// Creates an empty router.
    /// - Parameter identities: The disco#info identities; a generic component by default.
    public init(identities: [DiscoInfo.Identity] = DiscoInfo().identities) {
        self.identities = identities
    }

    /// Creates an empty router with one disco#info identity.
    /// - Parameter identity: The identity.
    public init(identity: DiscoInfo.Identity) {
        self.identities = [identity]
    }

    // MARK: Adding routes

    /// Routes IQ requests of a type whose payload is `<localName xmlns='namespace'>`.
    /// - Parameters:
    ///   - type: `get` or `set` (results and errors are not requests: they go to the fallback).
    ///   - namespace: The payload's namespace.
    ///   - localName: The payload's element name; `query` by default.
    ///   - advertise: Whether to list `namespace` in disco#info; `true` by default.
    ///   - route: Returns the result's payload (`nil`: an empty result) or throws a
    ///     ``/XMPPCore/StanzaError``.
    public mutating func iq(
        _ type: RequestType, _ namespace: String, _ localName: String = "query", advertise: Bool = true,
        _ route: @escaping IQRoute
    ) {
        let name = QualifiedName(namespace, localName)
        self.iqRoutes[IQKey(type: type, name: name)] = route
        self.iqPayloads.insert(name)
        if advertise, !self.routeNamespaces.contains(namespace) {
            self.routeNamespaces.append(namespace)
        }
    }

    /// Routes messages of a type and/or carrying a payload in a namespace.
    /// - Parameters:
    ///   - type: The message type, or `nil` for any type but `error` (errors reach only a
    ///     route asking for `.error`, or the fallback: never answer an error).
    ///   - namespace: A namespace one of the message's children must be in (e.g.
    ///     `http://jabber.org/protocol/chatstates`), or `nil` for any message.
    ///   - route: Called for a matching message.
    public mutating func message(
        _ type: Message.MessageType? = nil, namespace: String? = nil, _ route: @escaping MessageRoute
    ) {
        self.messageRoutes.append(MessageEntry(type: type, namespace: namespace, route: route))
    }

    /// Routes every presence (available ones included).
    /// - Parameter route: Called for each presence.
    public mutating func presence(_ route: @escaping PresenceRoute) {
        self.presenceRoutes.append(PresenceEntry(type: nil, matchesAll: true, route: route))
    }

    /// Routes presences of a type (`subscribe`, `probe`, `unavailable`…).
    /// - Parameters:
    ///   - type: The presence type.
    ///   - route: Called for each presence of that type.
    public mutating func presence(_ type: Presence.PresenceType, _ route: @escaping PresenceRoute) {
        self.presenceRoutes.append(PresenceEntry(type: type, matchesAll: false, route: route))
    }

    /// Routes available presences (those without a `type`).
    /// - Parameter route: Called for each available presence.
    public mutating func availablePresence(_ route: @escaping PresenceRoute) {
        self.presenceRoutes.append(PresenceEntry(type: nil, matchesAll: false, route: route))
    }

    /// Routes every stanza no other route took (IQ results and errors among them). A
    /// request the fallback leaves unanswered goes on to the installed features.
    /// - Parameter route: Called for each unrouted stanza.
    public mutating func fallback(_ route: @escaping FallbackRoute) {
        self.fallbackRoute = route
    }

    /// Called when a hostname becomes bound to the router (see ``ComponentHandler/hostnameBound(_:in:)``).
    /// - Parameter event: Receives the hostname and a context for it.
    public mutating func onHostnameBound(_ event: @escaping BindingEvent) {
        self.boundEvent = event
    }

    /// Called when a hostname stops being bound to the router.
    /// - Parameter event: Receives the hostname.
    public mutating func onHostnameUnbound(_ event: @escaping @Sendable (String) async -> Void) {
        self.unboundEvent = event
    }

    /// Adds middleware, run after any added before.
    /// - Parameter middleware: The middleware.
    public mutating func use(_ middleware: any StanzaMiddleware) {
        self.middleware.append(middleware)
    }

    // MARK: ComponentHandler

    /// ``identities``, the IQ routes' namespaces (unless `advertise: false`) and ``advertisedFeatures``.
    public var discoInfo: DiscoInfo {
        var seen = Set<String>()
        let namespaces = (self.routeNamespaces + self.advertisedFeatures).filter { seen.insert($0).inserted }
        return DiscoInfo(identities: self.identities, features: namespaces)
    }

    /// Runs the middleware, then the matching route.
    public func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        if self.middleware.isEmpty {
            try await self.route(stanza, context)
        } else {
            try await self.run(0, stanza, context)
        }
    }

    /// Calls ``onHostnameBound(_:)``'s closure.
    public func hostnameBound(_ hostname: String, in context: ComponentContext) async {
        await self.boundEvent?(hostname, context)
    }

    /// Calls ``onHostnameUnbound(_:)``'s closure.
    public func hostnameUnbound(_ hostname: String) async {
        await self.unboundEvent?(hostname)
    }

    private func run(_ index: Int, _ stanza: Stanza, _ context: ComponentContext) async throws {
        guard index < self.middleware.count else {
            try await self.route(stanza, context)
            return
        }
        try await self.middleware[index].handle(stanza, context: context) { stanza, context in
            try await self.run(index + 1, stanza, context)
        }
    }

    private func route(_ stanza: Stanza, _ context: ComponentContext) async throws {
        switch stanza {
        case .iq(let iq):
            if let type = RequestType(rawValue: iq.type.rawValue), let payload = iq.payload {
                if let route = self.iqRoutes[IQKey(type: type, name: payload.name)] {
                    let result = try await route(iq, context)
                    // A route that answered itself (a reply, an error, a redirect) returns nil.
                    if result == nil, context.hasAnsweredRequest { return }
                    try await context.reply(to: iq, with: result)
                    return
                }
                if self.iqPayloads.contains(payload.name) {
                    throw StanzaError(
                        .featureNotImplemented,
                        text: "\(payload.name.localName) in \(payload.name.namespace) does not support \(iq.type.rawValue)")
                }
            }
        case .message(let message):
            let type = message.type
            for entry in self.messageRoutes {
                if let wanted = entry.type {
                    guard wanted == type else { continue }
                } else if type == .error {
                    continue
                }
                if let namespace = entry.namespace,
                    !message.element.children.contains(where: { child in
                        if case .element(let element) = child { return element.name.namespace == namespace }
                        return false
                    })
                {
                    continue
                }
                try await entry.route(message, context)
                return
            }
        case .presence(let presence):
            let type = presence.type
            for entry in self.presenceRoutes where entry.matchesAll || entry.type == type {
                try await entry.route(presence, context)
                return
            }
        }
        try await self.fallbackRoute?(stanza, context)
    }
}
