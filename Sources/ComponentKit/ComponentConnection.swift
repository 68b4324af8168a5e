import CoreMetrics
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization
public import XMPPCore
import XMPPStream

/// A component's connection to an XMPP server: one XEP-0225 stream carrying many
/// hostnames, or (as a fallback) one XEP-0114 stream per hostname, behind one API.
///
/// ```swift
/// let connection = ComponentConnection(configuration: configuration, logger: logger)
/// connection.register("echo.example.com", handler: Echo())
/// try await ServiceGroup(services: [connection], logger: logger).run()
/// ```
///
/// The connection is a `swift-service-lifecycle` `Service`: ``run()`` connects, binds
/// every registered hostname and serves until graceful shutdown (which unbinds, closes
/// the stream and waits for the server's close, bounded) or cancellation. While it runs,
/// ``bind(_:handler:)`` and ``unbind(_:)`` change the hostnames served.
public final class ComponentConnection: Service, Sendable {
    /// The configuration the connection was created with.
    public let configuration: ComponentConfiguration
    let logger: Logger
    let eventLoopGroup: any EventLoopGroup
    let pending: PendingRequests
    let metrics: ComponentMetrics

    private enum Phase: Sendable {
        case idle
        case running
        case shuttingDown
        case finished
    }

    private struct State: Sendable {
        var phase: Phase = .idle
        var bindings: [String: Binding] = [:]
        var stream: ComponentStream?
        var info: ConnectionInfo?
        var lastError: String?
        var subscribers: [Int: AsyncStream<ComponentEvent>.Continuation] = [:]
        var nextSubscriber = 0
        var workerStarter: AsyncStream<Spawn>.Continuation?
        /// Whether hostnames are served by XEP-0114 streams (configured, or after a fallback).
        var legacy = false
        var shutdownWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
        var shutdownRequested = false
        /// Where the next connection goes when it is not the configured server
        /// (`see-other-host`, or a transfer that failed and falls back).
        var redirectTarget: ConnectTarget?
        var transferRequest: ConnectTarget?
        var transferWaiter: CheckedContinuation<ConnectTarget?, Never>?
        var immediateReconnect = false
    }

    /// Work that ``run()`` starts in its task group.
    enum Spawn: Sendable {
        /// A hostname's handler loop.
        case worker(Binding)
        /// A hostname's own XEP-0114 stream, kept up until it is unbound.
        case legacyStream(Binding)
    }

    private let state = Mutex(State())

    /// Creates a connection; nothing happens until ``run()``.
    /// - Parameters:
    ///   - configuration: Where and how to connect.
    ///   - logger: The logger for connection events (secrets are never logged).
    ///   - eventLoopGroup: The NIO event loops to use; the shared singleton by default.
    public init(
        configuration: ComponentConfiguration,
        logger: Logger = Logger(label: "ComponentKit"),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "component.identity"] = "\(configuration.identity)"
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
        self.pending = PendingRequests(serverDomain: configuration.serverDomain)
        self.metrics = ComponentMetrics(identity: configuration.identity)
    }

    // MARK: Public API

    /// Registers a hostname and its handler, to be bound as soon as a stream is up (and
    /// again after every reconnect). Use before ``run()``; while running, prefer
    /// ``bind(_:handler:)``, which waits for the server's answer.
    /// - Parameters:
    ///   - hostname: The hostname (a domain, or `domain/resource`).
    ///   - handler: The handler for its stanzas.
    /// - Throws: ``ComponentError`` when the hostname is invalid or already registered.
    public func register(_ hostname: String, handler: some ComponentHandler) throws {
        _ = try self.addBinding(hostname, handler: handler)
    }

    /// Binds a hostname to a handler and waits until the server has bound it.
    ///
    /// On a XEP-0225 stream this is one `<bind/>` IQ; the hostname the server returns is
    /// the one recorded and returned. If no stream is up yet, the binding waits for one
    /// (up to the request timeout).
    /// - Parameters:
    ///   - hostname: The hostname (a domain, or `domain/resource`).
    ///   - handler: The handler for its stanzas.
    /// - Returns: The hostname the server bound.
    /// - Throws: ``ComponentError``: ``ComponentError/Kind/bindRefused(_:)`` with the
    ///   server's condition (`conflict`, `not-allowed`, `bad-request`,
    ///   `resource-constraint`…), ``ComponentError/Kind/timeout``, ``ComponentError/Kind/alreadyBound``.
    @discardableResult
    public func bind(_ hostname: String, handler: some ComponentHandler) async throws -> String {
        let binding = try self.addBinding(hostname, handler: handler)
        let timeout = self.configuration.requestTimeout
        return try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask {
                try await withCheckedThrowingContinuation { continuation in
                    binding.addWaiter(continuation)
                    if case .bound(let name) = binding.currentState {
                        binding.resolveWaiters(.success(name))
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw ComponentError(.timeout, "binding \(hostname) got no answer within \(timeout)")
            }
            defer { group.cancelAll() }
            do {
                let result = try await group.next()!
                return result
            } catch {
                if (error as? ComponentError)?.kind == .timeout {
                    binding.resolveWaiters(.failure(error))
                    self.removeBinding(binding, reason: "bind timed out")
                }
                throw error
            }
        }
    }

    /// Unbinds a hostname: its handler receives no more stanzas once the server confirms.
    ///
    /// If the server refuses (some servers' unbind is broken), the error says so and the
    /// hostname is still considered bound: stanzas keep flowing to its handler.
    /// - Parameter hostname: The hostname as passed to ``bind(_:handler:)``.
    /// - Throws: ``ComponentError`` (``ComponentError/Kind/notBound``,
    ///   ``ComponentError/Kind/unbindRefused(_:)``, ``ComponentError/Kind/timeout``).
    public func unbind(_ hostname: String) async throws {
        guard let key = Self.routingKey(hostname), let binding = self.lookup(key) else {
            throw ComponentError(.notBound, "\(hostname) is not bound on this connection")
        }
        if let stream = binding.legacyStream {
            // XEP-0114: unbinding is closing the hostname's own stream.
            self.removeBinding(binding, reason: "unbound")
            await stream.closeGracefully()
            return
        }
        guard case .bound(let bound) = binding.currentState, let stream = self.currentStream else {
            self.removeBinding(binding, reason: "unbound while not connected")
            return
        }
        binding.state.withLock { $0 = .unbinding }
        let request = HostnameBinding.unbindRequest(id: self.pending.makeID(), hostname: bound)
        let answer: IQ
        do {
            answer = try await self.rawRequest(request, via: .stream(stream), timeout: self.configuration.requestTimeout)
        } catch {
            binding.state.withLock { if $0 == .unbinding { $0 = .bound(bound) } }
            throw error
        }
        if answer.type == .error {
            binding.state.withLock { if $0 == .unbinding { $0 = .bound(bound) } }
            let stanzaError = answer.error ?? StanzaError(.undefinedCondition)
            self.logger.warning(
                "server refused to unbind", metadata: ["component.hostname": "\(bound)", "error": "\(stanzaError)"])
            throw ComponentError(
                .unbindRefused(stanzaError.condition),
                "the server refused to unbind \(bound): \(stanzaError); it is still bound", stanzaError: stanzaError)
        }
        self.removeBinding(binding, reason: "unbound")
    }

    /// Sends a stanza, and returns once it is written to the server's stream.
    ///
    /// The stanza's `from` must be under a hostname registered on this connection and it
    /// must have a `to`; otherwise it is refused here with a clear error instead of making
    /// the server end the stream. While that hostname has no stream (not yet bound, or
    /// reconnecting), the stanza waits in the hostname's bounded queue and goes out, in
    /// order, once the hostname is bound again (see ``ComponentConfiguration/outboundQueue``).
    /// - Parameter stanza: The stanza.
    /// - Throws: ``ComponentError``: ``ComponentError/Kind/unboundSender``,
    ///   ``ComponentError/Kind/invalidStanza``, ``ComponentError/Kind/queueFull``,
    ///   ``ComponentError/Kind/expired``, ``ComponentError/Kind/notConnected`` (the connection
    ///   is not running, or the hostname was removed while the stanza waited).
    public func send(_ stanza: Stanza) async throws {
        try await self.send(element: stanza.element)
    }

    /// Sends an IQ request and waits for its answer (see ``ComponentContext/request(_:timeout:)``).
    ///
    /// A `get` answered with a redirect (an error with code 302 carrying the redirected
    /// query) is followed transparently, with the same id, when the redirect is valid; at
    /// most three redirects in a row are followed (see ``IQRedirect``).
    /// - Parameters:
    ///   - iq: A `get` or `set` whose `from` is under a bound hostname; an id is assigned if missing.
    ///   - timeout: How long to wait; the configuration's default when `nil`.
    /// - Returns: The answer (`result` or `error`).
    public func request(_ iq: IQ, timeout: Duration? = nil) async throws -> IQ {
        guard iq.type.isRequest else {
            throw ComponentError(.invalidStanza, "an IQ request must be of type get or set, not \(iq.type.rawValue)")
        }
        var iq = iq
        if iq.element["id"] == nil {
            iq.element["id"] = self.pending.makeID()
        }
        let original = iq
        var current = iq
        var redirects = 0
        while true {
            let binding = try self.prepareOutgoing(current.element)
            let answer = try await self.rawRequest(
                current, via: .binding(binding), timeout: timeout ?? self.configuration.requestTimeout)
            guard let redirected = IQRedirect.redirectedQuery(in: answer) else {
                return answer
            }
            try IQRedirect.validate(original: original, redirected: redirected)
            redirects += 1
            guard redirects <= IQRedirect.maximumRedirects else {
                throw ComponentError(
                    .tooManyRedirects,
                    "IQ '\(original.requestID)' was redirected more than \(IQRedirect.maximumRedirects) times in a row")
            }
            self.logger.debug(
                "following an IQ redirect",
                metadata: ["stanza.id": "\(original.requestID)", "redirect.to": "\(redirected.element["to"] ?? "-")"])
            current = redirected
        }
    }

    /// A new stream of this connection's events, starting now.
    public func events() -> AsyncStream<ComponentEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: ComponentEvent.self, bufferingPolicy: .bufferingNewest(1024))
        let id = self.state.withLock { state -> Int in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            return id
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    /// A snapshot of the connection: what is negotiated, and each hostname's state.
    public var status: ComponentStatus {
        self.state.withLock { state in
            ComponentStatus(
                isConnected: state.stream != nil || state.bindings.values.contains { $0.legacyStream != nil },
                connection: state.info,
                lastError: state.lastError,
                hostnames: state.bindings.values.map { binding in
                    let bindingState: ComponentStatus.HostnameState
                    switch binding.currentState {
                    case .pending: bindingState = .pending
                    case .binding: bindingState = .binding
                    case .bound: bindingState = .bound
                    case .unbinding: bindingState = .unbinding
                    case .removed: bindingState = .unbound
                    }
                    return ComponentStatus.Hostname(
                        hostname: binding.boundHostname ?? binding.requested, state: bindingState,
                        stanzasIn: binding.stanzasIn.load(ordering: .relaxed),
                        stanzasOut: binding.stanzasOut.load(ordering: .relaxed))
                }.sorted { $0.hostname < $1.hostname })
        }
    }

    /// Starts a graceful shutdown: unbind every hostname, close the stream, wait for the
    /// server's close (bounded). ``run()`` returns when it is done.
    public func shutdown() {
        let (waiters, transferWaiter) = self.state.withLock {
            state -> ([CheckedContinuation<Void, Never>], CheckedContinuation<ConnectTarget?, Never>?) in
            state.shutdownRequested = true
            if state.phase == .running {
                state.phase = .shuttingDown
            }
            let waiters = Array(state.shutdownWaiters.values)
            state.shutdownWaiters.removeAll()
            let transferWaiter = state.transferWaiter
            state.transferWaiter = nil
            return (waiters, transferWaiter)
        }
        for waiter in waiters { waiter.resume() }
        transferWaiter?.resume(returning: nil)
    }

    // MARK: Service

    /// Connects, binds the registered hostnames and serves until graceful shutdown or
    /// cancellation; reconnects when the stream drops.
    ///
    /// - Throws: A ``XMPPStream/NegotiationError`` or connection error when
    ///   ``ComponentConfiguration/maxConnectAttempts`` consecutive attempts failed.
    public func run() async throws {
        let (starter, starterContinuation) = AsyncStream.makeStream(of: Spawn.self)
        let legacy = self.configuration.protocolMode == .xep0114
        let existing = try self.state.withLock { state -> [Binding] in
            guard state.phase == .idle else {
                throw ComponentError(.protocolViolation, "run() was called twice on the same ComponentConnection")
            }
            state.phase = state.shutdownRequested ? .shuttingDown : .running
            state.workerStarter = starterContinuation
            state.legacy = legacy
            return Array(state.bindings.values)
        }
        defer {
            let subscribers = self.state.withLock { state -> [AsyncStream<ComponentEvent>.Continuation] in
                state.phase = .finished
                state.workerStarter = nil
                return Array(state.subscribers.values)
            }
            for subscriber in subscribers { subscriber.finish() }
        }
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                for binding in existing {
                    group.addTask { await self.work(binding) }
                    if legacy {
                        group.addTask { await self.superviseLegacyStream(binding) }
                    }
                }
                group.addTask { await self.expireQueuedStanzas() }
                group.addTask {
                    defer { starterContinuation.finish() }
                    if legacy {
                        await self.waitForShutdownRequest()
                    } else {
                        // Bindings never served by a stream (shutdown or giving up while
                        // disconnected) still have running workers: end them, or run()
                        // would wait for them forever.
                        defer { self.removeRemainingBindings(reason: "shutdown") }
                        try await self.connectionLoop()
                    }
                }
                for await spawn in starter {
                    switch spawn {
                    case .worker(let binding):
                        group.addTask { await self.work(binding) }
                    case .legacyStream(let binding):
                        group.addTask { await self.superviseLegacyStream(binding) }
                    }
                }
            }
        } onGracefulShutdown: {
            self.shutdown()
        }
    }

    // MARK: Connection loop

    /// Consumes the one-shot redirect target (see-other-host), if any.
    func takeRedirectTarget() -> ConnectTarget? {
        self.state.withLock { state in
            let target = state.redirectTarget
            state.redirectTarget = nil
            return target
        }
    }

    func setRedirectTarget(_ target: ConnectTarget?) {
        self.state.withLock { $0.redirectTarget = target }
    }

    var isLegacy: Bool {
        self.state.withLock { $0.legacy }
    }

    func requestImmediateReconnect() {
        self.state.withLock { $0.immediateReconnect = true }
    }

    func takePendingImmediateReconnect() -> Bool {
        self.state.withLock { state in
            let value = state.immediateReconnect
            state.immediateReconnect = false
            return value
        }
    }

    func setCurrentStream(_ stream: ComponentStream?) {
        self.state.withLock { $0.stream = stream }
    }

    func allBindings() -> [Binding] {
        self.state.withLock { Array($0.bindings.values) }
    }

    /// Waits until shutdown is requested (returns at once if it already was).
    func waitForShutdownRequest() async {
        let id = self.state.withLock { state -> Int in
            let id = state.nextWaiter
            state.nextWaiter += 1
            return id
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.phase != .running || Task.isCancelled { return true }
                    state.shutdownWaiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { state in
                state.shutdownWaiters.removeValue(forKey: id)
            }
            waiter?.resume()
        }
    }

    /// Sleeps, returning early on shutdown.
    func sleepUnlessShutdown(_ duration: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: duration) }
            group.addTask { await self.waitForShutdownRequest() }
            await group.next()
            group.cancelAll()
        }
    }

    /// Asks the serving loop to move to another server (XEP-0051).
    func requestTransfer(to target: ConnectTarget) {
        let waiter = self.state.withLock { state -> CheckedContinuation<ConnectTarget?, Never>? in
            guard let waiter = state.transferWaiter else {
                state.transferRequest = target
                return nil
            }
            state.transferWaiter = nil
            return waiter
        }
        waiter?.resume(returning: target)
    }

    /// Waits for a transfer request; `nil` on shutdown or cancellation.
    func nextTransferRequest() async -> ConnectTarget? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ConnectTarget?, Never>) in
                let immediate = self.state.withLock { state -> ConnectTarget?? in
                    if state.phase != .running || Task.isCancelled { return .some(nil) }
                    if let request = state.transferRequest {
                        state.transferRequest = nil
                        return .some(request)
                    }
                    state.transferWaiter = continuation
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = self.state.withLock { state -> CheckedContinuation<ConnectTarget?, Never>? in
                let waiter = state.transferWaiter
                state.transferWaiter = nil
                return waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    var isShuttingDown: Bool {
        self.state.withLock { $0.phase != .running }
    }

    var currentStream: ComponentStream? {
        self.state.withLock { $0.stream }
    }

    // MARK: Binding

    private func addBinding(_ hostname: String, handler: some ComponentHandler) throws -> Binding {
        let jid: JID
        do {
            jid = try JID(hostname)
        } catch {
            throw ComponentError(.invalidHostname, "'\(hostname)' is not a valid hostname: \(error)")
        }
        guard jid.localpart == nil else {
            throw ComponentError(
                .invalidHostname, "'\(hostname)' is not a hostname: a component binds a domain or domain/resource, not user@domain")
        }
        let binding = Binding(
            key: jid.domainpart, requested: jid.description, handler: handler,
            queueDepth: self.configuration.handlerQueueDepth, outbound: self.configuration.outboundQueue)
        let (starter, stream, legacy) = try self.state.withLock {
            state -> (AsyncStream<Spawn>.Continuation?, ComponentStream?, Bool) in
            if let existing = state.bindings[binding.key], existing.currentState != .removed {
                throw ComponentError(.alreadyBound, "\(existing.requested) is already bound on this connection")
            }
            if state.phase == .shuttingDown || state.phase == .finished {
                throw ComponentError(.shuttingDown, "the connection is shutting down")
            }
            state.bindings[binding.key] = binding
            return (state.workerStarter, state.stream, state.legacy)
        }
        starter?.yield(.worker(binding))
        if legacy {
            starter?.yield(.legacyStream(binding))
        } else if let stream {
            Task { await self.performBind(binding, on: stream) }
        }
        return binding
    }

    func bindAllPending(on stream: ComponentStream) async {
        let pendingBindings = self.state.withLock { state in
            state.bindings.values.filter { $0.currentState == .pending }
        }
        await withTaskGroup(of: Void.self) { group in
            for binding in pendingBindings {
                group.addTask { await self.performBind(binding, on: stream) }
            }
        }
    }

    private func performBind(_ binding: Binding, on stream: ComponentStream) async {
        let proceed = binding.state.withLock { state -> Bool in
            guard state == .pending else { return false }
            state = .binding
            return true
        }
        guard proceed else { return }
        let request = HostnameBinding.bindRequest(id: self.pending.makeID(), hostname: binding.requested)
        do {
            let answer = try await self.rawRequest(request, via: .stream(stream), timeout: self.configuration.requestTimeout)
            if answer.type == .error {
                let stanzaError = answer.error ?? StanzaError(.undefinedCondition)
                let error = ComponentError(
                    .bindRefused(stanzaError.condition),
                    "the server refused to bind \(binding.requested): \(stanzaError)", stanzaError: stanzaError)
                self.metrics.bindsRefused.increment()
                if stanzaError.condition == .conflict, binding.everBound.load(ordering: .relaxed) {
                    self.retryRebind(binding, on: stream, after: error)
                    return
                }
                self.emit(.bindFailed(hostname: binding.requested, reason: error.message))
                self.removeBinding(binding, reason: "bind refused")
                binding.resolveWaiters(.failure(error))
                return
            }
            let hostname = HostnameBinding.boundHostname(in: answer) ?? binding.requested
            let stillWanted = binding.state.withLock { state -> Bool in
                guard state == .binding else { return false }
                state = .bound(hostname)
                return true
            }
            guard stillWanted else { return }
            binding.everBound.store(true, ordering: .relaxed)
            binding.conflictRetries.store(0, ordering: .relaxed)
            self.flushIfPossible(binding)
            self.metrics.bindsSucceeded.increment()
            self.logger.info("hostname bound", metadata: ["component.hostname": "\(hostname)"])
            self.emit(.bound(hostname: hostname))
            let context = ComponentContext(
                hostname: hostname, logger: self.handlerLogger(hostname), connection: self, replyTracker: nil)
            await binding.handler.hostnameBound(hostname, in: context)
            binding.resolveWaiters(.success(hostname))
        } catch {
            binding.state.withLock { if $0 == .binding { $0 = .pending } }
            self.metrics.bindsFailed.increment()
            let reason = String(describing: error)
            self.emit(.bindFailed(hostname: binding.requested, reason: reason))
            binding.resolveWaiters(.failure(error))
        }
    }

    /// A re-bind (after a reconnect or transfer) refused with `conflict`: the server most
    /// likely still holds our previous stream, which it has not yet noticed is dead (a
    /// half-open link). The hostname was ours, so keep it (its queue too) and try again
    /// with the reconnect backoff instead of dropping it for good.
    private func retryRebind(_ binding: Binding, on stream: ComponentStream, after error: ComponentError) {
        binding.state.withLock { if $0 == .binding { $0 = .pending } }
        let attempt = binding.conflictRetries.add(1, ordering: .relaxed).newValue
        let policy = self.configuration.reconnect
        var delay = policy.initialDelay
        for _ in 1..<min(attempt, 32) {
            delay = min(delay * policy.multiplier, policy.maximumDelay)
        }
        let wait = delay * Double.random(in: 0.5...1.0)
        self.recordError(error.message)
        self.logger.warning(
            "re-bind refused with conflict; retrying",
            metadata: ["component.hostname": "\(binding.requested)", "attempt": "\(attempt)", "delay": "\(wait)"])
        self.emit(.bindFailed(hostname: binding.requested, reason: "\(error.message); retrying in \(wait)"))
        Task {
            await self.sleepUnlessShutdown(wait)
            guard !self.isShuttingDown, self.currentStream === stream, stream.channel.isActive else { return }
            await self.performBind(binding, on: stream)
        }
    }

    func unbindAllForShutdown(on stream: ComponentStream) async {
        let bound = self.state.withLock { state in
            state.bindings.values.compactMap { binding -> (Binding, String)? in
                binding.boundHostname.map { (binding, $0) }
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for (binding, hostname) in bound {
                group.addTask {
                    let request = HostnameBinding.unbindRequest(id: self.pending.makeID(), hostname: hostname)
                    _ = try? await self.rawRequest(request, via: .stream(stream), timeout: .seconds(5))
                    self.removeBinding(binding, reason: "shutdown")
                }
            }
        }
    }

    func removeBinding(_ binding: Binding, reason: String) {
        let previous = binding.state.withLock { state -> Binding.State in
            let previous = state
            state = .removed
            return previous
        }
        self.state.withLock { state in
            if state.bindings[binding.key] === binding {
                state.bindings.removeValue(forKey: binding.key)
            }
        }
        binding.mailbox.finish()
        self.failQueued(binding, reason: "\(binding.requested) was \(reason)")
        if case .bound(let hostname) = previous {
            self.logger.info("hostname unbound", metadata: ["component.hostname": "\(hostname)", "reason": "\(reason)"])
            self.emit(.unbound(hostname: hostname))
            let handler = binding.handler
            Task { await handler.hostnameUnbound(hostname) }
        } else if previous == .unbinding {
            self.emit(.unbound(hostname: binding.requested))
            let handler = binding.handler
            let requested = binding.requested
            Task { await handler.hostnameUnbound(requested) }
        }
    }

    /// Removes every binding still registered (finishing their mailboxes and workers).
    private func removeRemainingBindings(reason: String) {
        let bindings = self.state.withLock { Array($0.bindings.values) }
        for binding in bindings {
            self.removeBinding(binding, reason: reason)
        }
    }

    func lookup(_ key: String) -> Binding? {
        self.state.withLock { $0.bindings[key] }
    }

    // MARK: Sending

    func send(element: Element) async throws {
        let binding = try self.prepareOutgoing(element)
        try await self.deliver(element, binding: binding)
    }

    /// Checks an outgoing stanza and returns the binding of its sender.
    private func prepareOutgoing(_ element: Element) throws -> Binding {
        guard let from = element["from"], let key = Self.routingKey(from) else {
            throw ComponentError(.unboundSender, "an outgoing stanza needs a 'from' under a bound hostname")
        }
        // A registered hostname may send at any time: while it is not bound (not yet, or
        // during a reconnect) its stanzas wait in its bounded queue.
        guard let binding = self.lookup(key), binding.currentState != .removed else {
            throw ComponentError(
                .unboundSender, "'\(from)' is not under a hostname bound on this connection; the server would reject it")
        }
        guard element["to"] != nil else {
            throw ComponentError(.invalidStanza, "an outgoing <\(element.name.localName)/> needs a 'to' address")
        }
        do {
            try element.validateCharacters()
        } catch {
            throw ComponentError(.invalidStanza, "the stanza cannot be sent: \(error)")
        }
        return binding
    }

    /// The stream that carries a binding's stanzas now, if it is bound.
    func stream(for binding: Binding) -> ComponentStream? {
        guard binding.boundHostname != nil || binding.currentState == .unbinding else { return nil }
        if let legacy = binding.legacyStream { return legacy }
        let stream = self.currentStream
        return stream?.channel.isActive == true ? stream : nil
    }

    /// Writes a stanza now, or queues it (bounded, in order) until its hostname is bound again.
    func deliver(_ element: Element, binding: Binding) async throws {
        let ticket = binding.outbound.takeTicket()
        if !binding.outbound.mustQueue, let stream = self.stream(for: binding) {
            do {
                try await stream.write(element).get()
                binding.countOut()
                return
            } catch {
                // The stream died under the write: the stanza was not written; queue it.
            }
        }
        if self.isFinished || binding.currentState == .removed {
            throw ComponentError(.notConnected, "not connected to the server, and the connection is not running")
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            guard binding.outbound.enqueue(element, ticket: ticket, continuation: continuation) else {
                self.metrics.queueOverflows.increment()
                continuation.resume(
                    throwing: ComponentError(
                        .queueFull,
                        "\(binding.requested) is not connected and its outgoing queue is full "
                            + "(\(binding.outbound.policy.maxStanzas) stanzas)"))
                return
            }
            self.flushIfPossible(binding)
        }
    }

    /// Starts writing a binding's queued stanzas if it has a stream.
    func flushIfPossible(_ binding: Binding) {
        guard binding.outbound.count > 0, let stream = self.stream(for: binding) else { return }
        Task { await self.flush(binding, on: stream) }
    }

    private func flush(_ binding: Binding, on stream: ComponentStream) async {
        guard binding.outbound.beginFlush() else { return }
        while true {
            let batch = binding.outbound.nextBatch()
            if batch.isEmpty { return }
            let channel = stream.channel
            let writes = batch.map { channel.write(XMLStreamFrame.element($0.element)) }
            channel.flush()
            for (index, write) in writes.enumerated() {
                do {
                    try await write.get()
                    binding.countOut()
                    batch[index].continuation.resume()
                } catch {
                    // Not written: back to the front, in order, for the next stream.
                    binding.outbound.requeueFront(Array(batch[index...]))
                    return
                }
            }
        }
    }

    /// Fails queued stanzas that waited too long; runs while the connection runs.
    func expireQueuedStanzas() async {
        let policy = self.configuration.outboundQueue
        let period = min(policy.maxAge / 4, .seconds(1))
        while !self.isShuttingDown && !Task.isCancelled {
            try? await Task.sleep(for: period)
            let bindings = self.state.withLock { Array($0.bindings.values) }
            for binding in bindings {
                for entry in binding.outbound.expired() {
                    self.metrics.queueExpired.increment()
                    entry.continuation.resume(
                        throwing: ComponentError(
                            .expired, "\(binding.requested) stayed disconnected longer than \(policy.maxAge); the stanza was not sent"))
                }
            }
        }
    }

    /// Fails everything a binding still has queued (it is being removed, or the connection stops).
    func failQueued(_ binding: Binding, reason: String) {
        let entries = binding.outbound.drain()
        guard !entries.isEmpty else { return }
        self.logger.warning(
            "queued stanzas were not sent", metadata: ["component.hostname": "\(binding.requested)", "count": "\(entries.count)", "reason": "\(reason)"])
        for entry in entries {
            entry.continuation.resume(throwing: ComponentError(.notConnected, "\(reason); the stanza was not sent"))
        }
    }

    var isFinished: Bool {
        self.state.withLock { $0.phase == .finished || $0.phase == .idle }
    }

    /// How a request travels: on a given stream (binding IQs), or as a binding's stanza
    /// (queued while disconnected).
    enum RequestRoute: Sendable {
        case stream(ComponentStream)
        case binding(Binding)
    }

    /// Sends an IQ request and waits for the answer matched by id and sender.
    func rawRequest(_ iq: IQ, via route: RequestRoute, timeout: Duration) async throws -> IQ {
        let id = iq.requestID
        let pending = self.pending
        let metrics = self.metrics
        let started = ContinuousClock.now
        defer {
            let elapsed = ContinuousClock.now - started
            metrics.iqLatency.recordNanoseconds(
                elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<IQ, any Error>) in
                let streamIdentity: ObjectIdentifier?
                let eventLoop: any EventLoop
                switch route {
                case .stream(let stream):
                    streamIdentity = ObjectIdentifier(stream)
                    eventLoop = stream.channel.eventLoop
                case .binding:
                    streamIdentity = nil
                    eventLoop = self.eventLoopGroup.any()
                }
                guard
                    pending.register(
                        id: id, expectedFrom: iq.element["to"], stream: streamIdentity,
                        continuation: continuation)
                else {
                    continuation.resume(
                        throwing: ComponentError(.invalidStanza, "an IQ request with id '\(id)' is already waiting for its answer"))
                    return
                }
                let nanoseconds = Int64(timeout.components.seconds) * 1_000_000_000
                    + Int64(timeout.components.attoseconds / 1_000_000_000)
                let scheduled = eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) {
                    metrics.iqTimeouts.increment()
                    pending.fail(id: id, ComponentError(.timeout, "no answer to IQ '\(id)' within \(timeout)"))
                }
                pending.setTimeout(id: id, scheduled)
                switch route {
                case .stream(let stream):
                    stream.write(iq.element).whenFailure { error in
                        pending.fail(id: id, ComponentError(.connectionClosed, "the request could not be sent: \(error)"))
                    }
                case .binding(let binding):
                    Task {
                        do {
                            try await self.deliver(iq.element, binding: binding)
                        } catch {
                            pending.fail(id: id, error)
                        }
                    }
                }
            }
        } onCancel: {
            pending.fail(id: id, CancellationError())
        }
    }

    func recordConnected(_ info: ConnectionInfo) {
        self.state.withLock { state in
            state.info = info
            state.lastError = nil
        }
    }

    func recordError(_ description: String) {
        self.state.withLock { $0.lastError = description }
    }

    /// Switches to XEP-0114 after a fallback: every registered hostname gets its own stream.
    func switchToLegacy(reason: String) {
        let (starter, bindings) = self.state.withLock { state -> (AsyncStream<Spawn>.Continuation?, [Binding]) in
            state.legacy = true
            return (state.workerStarter, Array(state.bindings.values))
        }
        self.emit(.fellBackToLegacy(reason: reason))
        for binding in bindings {
            starter?.yield(.legacyStream(binding))
        }
    }

    func recordStreamError(_ error: StreamError) {
        self.state.withLock { $0.lastError = "\(error)" }
    }

    // MARK: Events

    func emit(_ event: ComponentEvent) {
        let subscribers = self.state.withLock { Array($0.subscribers.values) }
        for subscriber in subscribers {
            subscriber.yield(event)
        }
    }

    func handlerLogger(_ hostname: String) -> Logger {
        var logger = self.logger
        logger[metadataKey: "component.hostname"] = "\(hostname)"
        return logger
    }

    /// The routing key of an address: its domainpart, lowercased (no full JID parse on
    /// the hot path; the server has already normalised what it routes).
    static func routingKey(_ address: String) -> String? {
        var domain = Substring(address)
        if let slash = domain.firstIndex(of: "/") {
            domain = domain[..<slash]
        }
        if let at = domain.lastIndex(of: "@") {
            domain = domain[domain.index(after: at)...]
        }
        if domain.hasSuffix(".") {
            domain = domain.dropLast()
        }
        guard !domain.isEmpty else { return nil }
        return domain.lowercased()
    }
}
