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
        var shutdownWaiter: CheckedContinuation<Void, Never>?
        var shutdownRequested = false
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
            answer = try await self.rawRequest(request, on: stream, timeout: self.configuration.requestTimeout)
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

    /// Sends a stanza.
    ///
    /// The stanza's `from` must be under a bound hostname and it must have a `to`;
    /// otherwise it is refused here with a clear error instead of making the server end
    /// the stream.
    /// - Parameter stanza: The stanza.
    public func send(_ stanza: Stanza) async throws {
        try await self.send(element: stanza.element)
    }

    /// Sends an IQ request and waits for its answer (see ``ComponentContext/request(_:timeout:)``).
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
        let stream = try self.prepareOutgoing(iq.element)
        return try await self.rawRequest(iq, on: stream, timeout: timeout ?? self.configuration.requestTimeout)
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
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.shutdownRequested = true
            if state.phase == .running {
                state.phase = .shuttingDown
            }
            let waiter = state.shutdownWaiter
            state.shutdownWaiter = nil
            return waiter
        }
        waiter?.resume()
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

    var isShuttingDown: Bool {
        self.state.withLock { $0.phase != .running }
    }

    var currentStream: ComponentStream? {
        self.state.withLock { $0.stream }
    }

    private func connectionLoop() async throws {
        var failures = 0
        var delay = self.configuration.reconnect.initialDelay
        while !self.isShuttingDown && !Task.isCancelled {
            self.emit(.connecting(host: self.configuration.host, port: self.configuration.port))
            let started = ContinuousClock.now
            do {
                let kind = ComponentStream.Kind.xep0225(allowsLegacyFallback: self.configuration.protocolMode == .auto)
                switch try await ComponentStream.connect(
                    configuration: self.configuration, kind: kind, group: self.eventLoopGroup, router: self,
                    logger: self.logger)
                {
                case .connected(let stream):
                    failures = 0
                    try await self.serve(stream)
                case .fallBackToLegacy(let reason):
                    self.logger.notice(
                        "falling back to XEP-0114: one stream per hostname", metadata: ["reason": "\(reason)"])
                    self.switchToLegacy(reason: reason)
                    await self.waitForShutdownRequest()
                    return
                }
            } catch {
                failures += 1
                let reason = String(describing: error)
                self.state.withLock { $0.lastError = reason }
                self.logger.warning("component connection failed", metadata: ["error": "\(reason)", "attempt": "\(failures)"])
                self.emit(.disconnected(reason: reason))
                if let limit = self.configuration.reconnect.maxAttempts, failures >= limit {
                    throw error
                }
            }
            if self.isShuttingDown || Task.isCancelled { break }
            if ContinuousClock.now - started > self.configuration.reconnect.stableAfter {
                delay = self.configuration.reconnect.initialDelay
            }
            let jittered = delay * Double.random(in: 0.5...1.0)
            self.logger.debug("reconnecting", metadata: ["delay": "\(jittered)"])
            await self.sleepUnlessShutdown(jittered)
            delay = min(delay * self.configuration.reconnect.multiplier, self.configuration.reconnect.maximumDelay)
        }
    }

    private func serve(_ stream: ComponentStream) async throws {
        let info = stream.info
        self.recordConnected(info)
        self.state.withLock { $0.stream = stream }
        self.emit(.connected(info))
        await self.bindAllPending(on: stream)

        // Wait for the stream to close, or for a shutdown request.
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await stream.closeFuture.get()
            }
            group.addTask {
                await self.waitForShutdownRequest()
            }
            await group.next()
            group.cancelAll()
        }
        if stream.channel.isActive {
            await self.unbindAllForShutdown(on: stream)
            await stream.closeGracefully()
        }
        let reason = self.isShuttingDown ? "shutdown" : "the server closed the stream"
        let bindings = self.state.withLock { state -> [Binding] in
            state.stream = nil
            return Array(state.bindings.values)
        }
        self.pending.failAll(ComponentError(.connectionClosed, "the stream closed before the answer came"))
        for binding in bindings {
            let wasBound = binding.state.withLock { state -> Bool in
                guard case .bound = state else {
                    if state != .removed { state = .pending }
                    return false
                }
                state = .pending
                return true
            }
            if wasBound {
                self.emit(.unbound(hostname: binding.requested))
                await binding.handler.hostnameUnbound(binding.requested)
            }
        }
        if self.isShuttingDown {
            for binding in bindings {
                self.removeBinding(binding, reason: "shutdown")
            }
        }
        self.emit(.disconnected(reason: reason))
    }

    func waitForShutdownRequest() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.phase != .running { return true }
                    state.shutdownWaiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                let waiter = state.shutdownWaiter
                state.shutdownWaiter = nil
                return waiter
            }
            waiter?.resume()
        }
    }

    func sleepUnlessShutdown(_ duration: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: duration) }
            group.addTask { await self.waitForShutdownRequest() }
            await group.next()
            group.cancelAll()
        }
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
            queueDepth: self.configuration.handlerQueueDepth)
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

    private func bindAllPending(on stream: ComponentStream) async {
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
            let answer = try await self.rawRequest(request, on: stream, timeout: self.configuration.requestTimeout)
            if answer.type == .error {
                let stanzaError = answer.error ?? StanzaError(.undefinedCondition)
                let error = ComponentError(
                    .bindRefused(stanzaError.condition),
                    "the server refused to bind \(binding.requested): \(stanzaError)", stanzaError: stanzaError)
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
            self.logger.info("hostname bound", metadata: ["component.hostname": "\(hostname)"])
            self.emit(.bound(hostname: hostname))
            let context = ComponentContext(
                hostname: hostname, logger: self.handlerLogger(hostname), connection: self, replyTracker: nil)
            await binding.handler.hostnameBound(hostname, in: context)
            binding.resolveWaiters(.success(hostname))
        } catch {
            binding.state.withLock { if $0 == .binding { $0 = .pending } }
            let reason = String(describing: error)
            self.emit(.bindFailed(hostname: binding.requested, reason: reason))
            binding.resolveWaiters(.failure(error))
        }
    }

    private func unbindAllForShutdown(on stream: ComponentStream) async {
        let bound = self.state.withLock { state in
            state.bindings.values.compactMap { binding -> (Binding, String)? in
                binding.boundHostname.map { (binding, $0) }
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for (binding, hostname) in bound {
                group.addTask {
                    let request = HostnameBinding.unbindRequest(id: self.pending.makeID(), hostname: hostname)
                    _ = try? await self.rawRequest(request, on: stream, timeout: .seconds(5))
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
        let stream = try self.prepareOutgoing(element)
        try await stream.write(element).get()
    }

    /// Checks an outgoing stanza and returns the stream that carries it.
    private func prepareOutgoing(_ element: Element) throws -> ComponentStream {
        guard let from = element["from"], let key = Self.routingKey(from) else {
            throw ComponentError(.unboundSender, "an outgoing stanza needs a 'from' under a bound hostname")
        }
        guard let binding = self.lookup(key), binding.boundHostname != nil || binding.currentState == .unbinding else {
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
        guard let stream = binding.legacyStream ?? self.currentStream else {
            throw ComponentError(.notConnected, "not connected to the server")
        }
        binding.stanzasOut.add(1, ordering: .relaxed)
        return stream
    }

    /// Sends an IQ request on a stream and waits for the answer matched by id and sender.
    func rawRequest(_ iq: IQ, on stream: ComponentStream, timeout: Duration) async throws -> IQ {
        let id = iq.requestID
        let pending = self.pending
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<IQ, any Error>) in
                guard
                    pending.register(
                        id: id, expectedFrom: iq.element["to"], stream: ObjectIdentifier(stream),
                        continuation: continuation)
                else {
                    continuation.resume(
                        throwing: ComponentError(.invalidStanza, "an IQ request with id '\(id)' is already waiting for its answer"))
                    return
                }
                let nanoseconds = Int64(timeout.components.seconds) * 1_000_000_000
                    + Int64(timeout.components.attoseconds / 1_000_000_000)
                let scheduled = stream.channel.eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) {
                    pending.fail(id: id, ComponentError(.timeout, "no answer to IQ '\(id)' within \(timeout)"))
                }
                pending.setTimeout(id: id, scheduled)
                stream.write(iq.element).whenFailure { error in
                    pending.fail(id: id, ComponentError(.connectionClosed, "the request could not be sent: \(error)"))
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
