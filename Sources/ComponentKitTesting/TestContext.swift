public import ComponentKit
public import Logging
import Synchronization
public import XMPPCore

/// A context for testing a ``/ComponentKit/ComponentHandler`` with no server and no
/// socket: it records what the handler sends, requests, binds and unbinds, and lets the
/// test answer the handler's IQ requests.
///
/// ```swift
/// import ComponentKitTesting
/// import Testing
///
/// @Test func echoes() async throws {
///     let test = TestContext(hostname: "echo.example.com")
///     let message = Message(type: .chat, from: try JID("juliet@example.com/balcony"),
///                           to: try JID("echo.example.com"), body: "hi")
///     await test.deliver(.message(message), to: EchoComponent())
///     #expect(test.sentMessages.map(\.body) == ["hi"])
/// }
/// ```
///
/// ``deliver(_:to:)`` runs a stanza through the handler exactly as a connection does
/// (``/ComponentKit/StanzaDispatcher``): an IQ request gets exactly one answer, from the
/// handler, a thrown ``/XMPPCore/StanzaError``, the installed features (disco, ping,
/// version and the handler's own), or `service-unavailable`, and that answer is recorded
/// in ``sent`` like anything else the handler sends.
///
/// The handler's IQ requests (``/ComponentKit/ComponentContext/request(_:timeout:redirects:)``)
/// wait for an answer: set a ``respond(with:)`` closure before delivering, or take them
/// one at a time with ``nextRequest()`` and answer each with ``PendingRequest/answer(_:)``.
/// A request nobody answers fails with a ``/ComponentKit/ComponentError`` of kind
/// ``/ComponentKit/ComponentError/Kind/timeout`` after ``requestTimeout``.
public final class TestContext: Sendable {
    /// The hostname the handler is bound to.
    public let hostname: String
    /// The logger handed to the handler.
    public let logger: Logger
    /// How long a request waits for an answer when the handler gives no timeout.
    public let requestTimeout: Duration
    /// The built-in features installed beside the handler's own.
    public let builtInFeatures: [any ComponentFeature]

    let transport: RecordingTransport

    /// Creates a test context.
    /// - Parameters:
    ///   - hostname: The hostname the handler is bound to.
    ///   - logger: The logger handed to the handler; one that discards everything by default.
    ///   - requestTimeout: How long a request waits for an answer; 5 seconds by default.
    ///   - builtInFeatures: The built-in features; those of a connection by default.
    public init(
        hostname: String = "component.example.com",
        logger: Logger = Logger(label: "ComponentKitTesting", factory: { _ in SwiftLogNoOpLogHandler() }),
        requestTimeout: Duration = .seconds(5),
        builtInFeatures: [any ComponentFeature] = StanzaDispatcher.builtInFeatures()
    ) {
        self.hostname = hostname
        self.logger = logger
        self.requestTimeout = requestTimeout
        self.builtInFeatures = builtInFeatures
        self.transport = RecordingTransport(hostname: hostname, requestTimeout: requestTimeout)
    }

    // MARK: Driving a handler

    /// Delivers a stanza to a handler as a connection does, and waits until it is handled.
    /// - Parameters:
    ///   - stanza: The stanza; give it a `to` under ``hostname`` (its `from` is the sender).
    ///   - handler: The handler.
    /// - Returns: What happened: the answer the dispatcher sent (a feature's, a thrown
    ///   error's, or `service-unavailable`) and any unexpected error the handler threw.
    @discardableResult
    public func deliver(_ stanza: Stanza, to handler: some ComponentHandler) async -> StanzaDispatcher.Outcome {
        let dispatcher = StanzaDispatcher(handler: handler, builtInFeatures: self.builtInFeatures)
        return await dispatcher.dispatch(stanza, hostname: self.hostname, logger: self.logger, transport: self.transport)
    }

    /// Delivers an IQ request and returns its one answer (the handler's or the dispatcher's).
    /// - Parameters:
    ///   - iq: A `get` or `set`.
    ///   - handler: The handler.
    /// - Returns: The answer sent for `iq`, or `nil` if none was (which breaks the rule).
    public func answer(to iq: IQ, from handler: some ComponentHandler) async -> IQ? {
        let before = self.sent.count
        await self.deliver(.iq(iq), to: handler)
        return self.sent.dropFirst(before).lazy.compactMap { stanza -> IQ? in
            guard case .iq(let answer) = stanza, answer.requestID == iq.requestID,
                answer.type == .result || answer.type == .error
            else { return nil }
            return answer
        }.first
    }

    /// Tells a handler that ``hostname`` is bound, as a connection does before the first stanza.
    /// - Parameter handler: The handler.
    public func bindHostname(to handler: some ComponentHandler) async {
        let dispatcher = StanzaDispatcher(handler: handler, builtInFeatures: self.builtInFeatures)
        await handler.hostnameBound(
            self.hostname, in: dispatcher.context(hostname: self.hostname, logger: self.logger, transport: self.transport))
    }

    /// A context for calling a handler (or code using a context) directly. It does not
    /// enforce the exactly-one-answer rule: use ``deliver(_:to:)`` for that.
    /// - Parameter handler: The handler whose disco information ``/ComponentKit/ComponentContext/discoInfo`` lists.
    public func context(for handler: (any ComponentHandler)? = nil) -> ComponentContext {
        ComponentContext(
            hostname: self.hostname, logger: self.logger, transport: self.transport, handler: handler,
            features: self.builtInFeatures)
    }

    // MARK: What the handler did

    /// Every stanza sent, in order (answers included), with `from` filled in.
    public var sent: [Stanza] { self.transport.state.withLock { $0.sent } }

    /// The messages among ``sent``.
    public var sentMessages: [Message] {
        self.sent.compactMap { if case .message(let message) = $0 { message } else { nil } }
    }

    /// The presences among ``sent``.
    public var sentPresences: [Presence] {
        self.sent.compactMap { if case .presence(let presence) = $0 { presence } else { nil } }
    }

    /// The IQs among ``sent`` (answers, mostly).
    public var sentIQs: [IQ] {
        self.sent.compactMap { if case .iq(let iq) = $0 { iq } else { nil } }
    }

    /// Every IQ request the handler made, in order, answered or not.
    public var requests: [IQ] { self.transport.state.withLock { $0.requests } }

    /// The hostnames the handler bound, in order.
    public var bound: [String] { self.transport.state.withLock { $0.bound.map(\.hostname) } }

    /// The handlers the handler bound, with their hostnames.
    public var boundHandlers: [(hostname: String, handler: any ComponentHandler)] {
        self.transport.state.withLock { $0.bound }
    }

    /// The hostnames the handler unbound, in order.
    public var unbound: [String] { self.transport.state.withLock { $0.unbound } }

    /// Forgets everything recorded so far (not the responders or pending requests).
    public func clear() {
        self.transport.state.withLock { state in
            state.sent.removeAll()
            state.requests.removeAll()
            state.bound.removeAll()
            state.unbound.removeAll()
        }
    }

    // MARK: Answering the handler's requests

    /// Answers every request the handler makes from now on with the closure's IQ; a `nil`
    /// leaves the request pending (for ``nextRequest()``).
    /// - Parameter responder: Makes the answer, e.g. `{ $0.result(payload) }`.
    public func respond(with responder: @escaping @Sendable (IQ) -> IQ?) {
        self.transport.state.withLock { $0.responder = responder }
    }

    /// Makes binds fail (or succeed again, with `nil`).
    /// - Parameter error: The error ``/ComponentKit/ComponentContext/bind(_:handler:)`` throws.
    public func failBinds(with error: (any Error & Sendable)?) {
        self.transport.state.withLock { $0.bindError = error }
    }

    /// Makes sends fail (or succeed again, with `nil`), e.g. to test what a handler does
    /// when the connection is down.
    /// - Parameter error: The error ``/ComponentKit/ComponentContext/send(_:)-(Stanza)`` throws.
    public func failSends(with error: (any Error & Sendable)?) {
        self.transport.state.withLock { $0.sendError = error }
    }

    /// Waits for the handler's next unanswered request (one already waiting first).
    ///
    /// Deliver the stanza in a child task (`async let`) so that the handler can wait for
    /// the answer while the test takes the request.
    /// - Returns: The request, to answer.
    public func nextRequest() async -> PendingRequest {
        await withCheckedContinuation { (continuation: CheckedContinuation<PendingRequest, Never>) in
            let ready: PendingRequest? = self.transport.state.withLock { state in
                if !state.unclaimed.isEmpty {
                    return state.unclaimed.removeFirst()
                }
                state.requestWaiters.append(continuation)
                return nil
            }
            if let ready {
                continuation.resume(returning: ready)
            }
        }
    }
}

/// An IQ request a handler made and waits on, taken with ``TestContext/nextRequest()``.
public struct PendingRequest: Sendable {
    /// The request as the handler sent it (with `from` and `id`).
    public let iq: IQ
    let slot: AnswerSlot

    /// Answers the request; later answers are ignored.
    /// - Parameter answer: The `result` or `error` IQ, e.g. `request.iq.result(payload)`.
    public func answer(_ answer: IQ) {
        self.slot.resolve(.success(answer))
    }

    /// Answers with a `result`.
    /// - Parameter payload: The result's payload, if any.
    public func result(_ payload: Element? = nil) {
        self.answer(self.iq.result(payload))
    }

    /// Answers with an `error`.
    /// - Parameter error: The stanza error.
    public func error(_ error: StanzaError) {
        self.answer(self.iq.errorResult(error))
    }

    /// Makes the handler's `request` throw instead (a timeout, a closed connection…).
    /// - Parameter error: The error it throws.
    public func fail(_ error: any Error & Sendable) {
        self.slot.resolve(.failure(error))
    }
}
