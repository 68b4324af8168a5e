public import XMPPCore

/// A plugin component: receives the stanzas addressed to the hostnames it is bound to.
///
/// A handler is bound to one or more hostnames (``ComponentConnection/bind(_:handler:)``)
/// and receives every stanza addressed to them: to the bare hostname and to any
/// `user@hostname/resource`. Per hostname, stanzas arrive one at a time, in the order the
/// server sent them; a slow handler slows reading from the server instead of growing memory.
///
/// A handler's loop runs on the connection's event loop by default: keep it non-blocking,
/// or declare ``execution`` as ``HandlerExecution/globalExecutor``.
///
/// IQ requests (`get`/`set`) get exactly one answer. Send it with the context before
/// returning (``ComponentContext/reply(to:with:)``), or throw a ``/XMPPCore/StanzaError`` to
/// answer with that error. If the handler returns without answering, the installed
/// features answer the queries they know (the handler's ``features``, then the built-ins:
/// service discovery, ping, software version) and everything else gets
/// `service-unavailable`. Any other error thrown is logged and an
/// IQ request is answered with `internal-server-error`; the connection carries on.
///
/// ```swift
/// struct Echo: ComponentHandler {
///     func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
///         guard case .message(let message) = stanza, message.type != .error else { return }
///         try await context.send(message.reply(body: message.body ?? ""))
///     }
/// }
/// ```
public protocol ComponentHandler: Sendable {
    /// Handles one stanza addressed to a bound hostname.
    /// - Parameters:
    ///   - stanza: The stanza, in the canonical `jabber:client` namespace.
    ///   - context: What the handler can do in answer: send, request, bind, log.
    func handle(_ stanza: Stanza, in context: ComponentContext) async throws

    /// The service-discovery identity and features this handler offers on its hostnames
    /// (XEP-0030). The installed features add their own (`disco#info`, ping, version, and
    /// those of ``features``).
    var discoInfo: DiscoInfo { get }

    /// Extra protocol features installed on this handler's hostnames, asked (in order,
    /// before the built-ins) to answer the IQ requests the handler leaves unanswered, and
    /// advertised in disco#info. None by default.
    var features: [any ComponentFeature] { get }

    /// Called when a hostname becomes bound to this handler (again, after a reconnect).
    /// - Parameters:
    ///   - hostname: The hostname the server bound.
    ///   - context: A context for that hostname.
    func hostnameBound(_ hostname: String, in context: ComponentContext) async

    /// Called when a hostname stops being bound to this handler (unbind, disconnect).
    /// - Parameter hostname: The hostname.
    func hostnameUnbound(_ hostname: String) async

    /// Where this handler's loop runs; ``HandlerExecution/eventLoop`` by default.
    var execution: HandlerExecution { get }
}

/// Where a handler's loop runs (see ``ComponentHandler/execution``).
public enum HandlerExecution: Hashable, Sendable {
    /// On the connection's event loop, the thread that reads the stream (the default): a
    /// stanza is read, handled and answered without waking another thread. The handler must
    /// not block the thread (synchronous I/O, `sleep`, long computations): that would stall
    /// the connection and every hostname on it. `await` is fine.
    case eventLoop
    /// On Swift's global concurrent executor: for a handler that calls blocking APIs or
    /// computes for long. It costs a thread hop per batch of stanzas, and keeps other
    /// hostnames flowing while it blocks.
    case globalExecutor
}

extension ComponentHandler {
    /// A generic component identity and no extra features.
    public var discoInfo: DiscoInfo { DiscoInfo() }

    /// No extra features.
    public var features: [any ComponentFeature] { [] }

    /// Does nothing.
    public func hostnameBound(_ hostname: String, in context: ComponentContext) async {}

    /// Does nothing.
    public func hostnameUnbound(_ hostname: String) async {}

    /// ``HandlerExecution/eventLoop``.
    public var execution: HandlerExecution { .eventLoop }
}

/// A ``ComponentHandler`` made from a closure, for small components and tests.
///
/// ```swift
/// let logger = ClosureHandler { stanza, context in
///     context.logger.info("stanza", metadata: ["stanza.id": "\(stanza.id ?? "-")"])
/// }
/// ```
public struct ClosureHandler: ComponentHandler {
    private let body: @Sendable (Stanza, ComponentContext) async throws -> Void

    /// The service-discovery information this handler offers.
    public let discoInfo: DiscoInfo

    /// Creates a handler.
    /// - Parameters:
    ///   - discoInfo: The identity and features to advertise.
    ///   - handle: Called for each stanza, as ``ComponentHandler/handle(_:in:)``.
    public init(
        discoInfo: DiscoInfo = DiscoInfo(),
        _ handle: @escaping @Sendable (Stanza, ComponentContext) async throws -> Void
    ) {
        self.discoInfo = discoInfo
        self.body = handle
    }

    /// Calls the closure.
    public func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        try await self.body(stanza, context)
    }
}
