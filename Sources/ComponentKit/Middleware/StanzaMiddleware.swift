public import XMPPCore

/// Behaviour around a handler: sees every stanza before the handler, decides whether and
/// how to call it, and sees the outcome.
///
/// A middleware calls `next` to go on to the next middleware (and finally the handler), or
/// does not (to refuse or answer a stanza itself). It may change the stanza or the context
/// it passes on, time or log the call, and catch what it throws. Wrap a handler with
/// ``ComponentHandler/using(_:)-(StanzaMiddleware...)``:
///
/// ```swift
/// struct RefuseStrangers: StanzaMiddleware {
///     let domain: String
///     func handle(
///         _ stanza: Stanza, context: ComponentContext,
///         next: (Stanza, ComponentContext) async throws -> Void
///     ) async throws {
///         guard stanza.from?.domainpart == self.domain else {
///             throw StanzaError(.forbidden)   // an IQ request is answered with it
///         }
///         try await next(stanza, context)
///     }
/// }
///
/// let handler = router.using(LoggingMiddleware(), RefuseStrangers(domain: "example.com"))
/// ```
///
/// The first middleware listed is the outermost. The exactly-one-answer rule applies to
/// the whole chain: an IQ request no one answers is offered to the installed features,
/// then gets `service-unavailable`.
public protocol StanzaMiddleware: Sendable {
    /// Handles one stanza, calling `next` to pass it on.
    /// - Parameters:
    ///   - stanza: The stanza.
    ///   - context: The handler's context.
    ///   - next: The rest of the chain: the next middleware, or the handler.
    func handle(
        _ stanza: Stanza, context: ComponentContext, next: (Stanza, ComponentContext) async throws -> Void
    ) async throws
}

/// A handler wrapped in middleware (see ``ComponentHandler/using(_:)-(StanzaMiddleware...)``): every stanza goes
/// through ``middleware`` in order, then to ``handler``. Discovery information, features,
/// binding events and the execution choice are the handler's.
public struct MiddlewareHandler: ComponentHandler {
    /// The middleware, outermost first.
    public let middleware: [any StanzaMiddleware]
    /// The wrapped handler.
    public let handler: any ComponentHandler

    /// Wraps a handler.
    /// - Parameters:
    ///   - middleware: The middleware, outermost first.
    ///   - handler: The handler called at the end of the chain.
    public init(_ middleware: [any StanzaMiddleware], handler: any ComponentHandler) {
        self.middleware = middleware
        self.handler = handler
    }

    /// Runs the chain.
    public func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        try await self.run(0, stanza, context)
    }

    private func run(_ index: Int, _ stanza: Stanza, _ context: ComponentContext) async throws {
        guard index < self.middleware.count else {
            try await self.handler.handle(stanza, in: context)
            return
        }
        try await self.middleware[index].handle(stanza, context: context) { stanza, context in
            try await self.run(index + 1, stanza, context)
        }
    }

    /// The handler's.
    public var discoInfo: DiscoInfo { self.handler.discoInfo }

    /// The handler's.
    public var features: [any ComponentFeature] { self.handler.features }

    /// The handler's.
    public var execution: HandlerExecution { self.handler.execution }

    /// Forwards to the handler.
    public func hostnameBound(_ hostname: String, in context: ComponentContext) async {
        await self.handler.hostnameBound(hostname, in: context)
    }

    /// Forwards to the handler.
    public func hostnameUnbound(_ hostname: String) async {
        await self.handler.hostnameUnbound(hostname)
    }
}

extension ComponentHandler {
    /// This handler behind middleware, the first listed outermost.
    /// - Parameter middleware: The middleware.
    /// - Returns: A handler running the chain, then this handler.
    public func using(_ middleware: any StanzaMiddleware...) -> MiddlewareHandler {
        self.using(middleware)
    }

    /// This handler behind middleware, the first listed outermost.
    /// - Parameter middleware: The middleware.
    /// - Returns: A handler running the chain, then this handler.
    public func using(_ middleware: [any StanzaMiddleware]) -> MiddlewareHandler {
        MiddlewareHandler(middleware, handler: self)
    }
}

/// A ``StanzaMiddleware`` made from a closure.
///
/// ```swift
/// let count = ClosureMiddleware { stanza, context, next in
///     counter.increment()
///     try await next(stanza, context)
/// }
/// ```
public struct ClosureMiddleware: StanzaMiddleware {
    private let body: @Sendable (Stanza, ComponentContext, (Stanza, ComponentContext) async throws -> Void) async throws -> Void

    /// Creates a middleware.
    /// - Parameter body: Called for each stanza as ``StanzaMiddleware/handle(_:context:next:)``.
    public init(
        _ body:
            @escaping @Sendable (Stanza, ComponentContext, (Stanza, ComponentContext) async throws -> Void) async throws
            -> Void
    ) {
        self.body = body
    }

    /// Calls the closure.
    public func handle(
        _ stanza: Stanza, context: ComponentContext, next: (Stanza, ComponentContext) async throws -> Void
    ) async throws {
        try await self.body(stanza, context, next)
    }
}
