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
/// try connection.register("echo.example.com", handler: Echo())
/// try await ServiceGroup(services: [connection], logger: logger).run()
/// ```
///
/// The connection is a `swift-service-lifecycle` `Service`: ``run()`` connects, binds
/// every registered hostname and serves until graceful shutdown (which unbinds, closes
/// the stream and waits for the server's close, bounded) or cancellation. While it runs,
/// ``bind(_:handler:)`` and ``unbind(_:)`` change the hostnames served.
///
/// ## Threading
///
/// A connection lives on one NIO event loop, chosen when it is created: its streams, its
/// state changes and its handlers' loops all run there. What the server says takes effect
/// in the order it said it (a bind result before the stanza that follows it), and a
/// stanza costs no wake-up of another thread: each hostname's handler takes everything
/// read for it at once, and what it sends is flushed once per batch.
public final class ComponentConnection: Service, Sendable {
    /// The configuration the connection was created with.
    public let configuration: ComponentConfiguration
    let logger: Logger
    /// The event loop every stream, state change and handler loop of this connection runs on.
    let eventLoop: any EventLoop
    /// Runs the handler loops on ``eventLoop``.
    let taskExecutor: EventLoopTaskExecutor
    let pending: PendingRequests
    let metrics: ComponentMetrics
    /// Bytes waiting in all mailboxes: past the configured total, reading pauses.
    let budget: ConnectionBudget
    /// Opens each stream's channel (TCP unless a test says otherwise).
    let channelFactory: any ComponentChannelFactory

    struct State: Sendable {
        var machine: ConnectionStateMachine
        var bindings: [HostnameKey: Binding] = [:]
        var stream: ComponentStream?
        var info: ConnectionInfo?
        var lastError: String?
        var subscribers: [Int: AsyncStream<ComponentEvent>.Continuation] = [:]
        var nextSubscriber = 0
        var spawner: AsyncStream<Spawn>.Continuation?
        var shutdownWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
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

    let state: Mutex<State>

    /// Creates a connection; nothing happens until ``run()``.
    /// - Parameters:
    ///   - configuration: Where and how to connect.
    ///   - logger: The logger for connection events (secrets are never logged).
    ///   - eventLoopGroup: The NIO event loops; the connection uses one of them for its
    ///     whole life. The shared singleton by default.
    ///   - channelFactory: How each stream's channel is opened: TCP by default; the
    ///     `ComponentKitTesting` product's `InMemoryServer` for tests with no socket.
    public init(
        configuration: ComponentConfiguration,
        logger: Logger = Logger(label: "ComponentKit"),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        channelFactory: any ComponentChannelFactory = TCPChannelFactory()
    ) {
        self.channelFactory = channelFactory
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "component.identity"] = "\(configuration.identity)"
        self.logger = logger
        let eventLoop = eventLoopGroup.next()
        self.eventLoop = eventLoop
        self.taskExecutor = EventLoopTaskExecutor(eventLoop)
        self.pending = PendingRequests(serverDomain: configuration.serverDomain)
        self.metrics = ComponentMetrics(identity: configuration.identity)
        self.budget = ConnectionBudget(limit: configuration.connectionBudget.maxBytes)
        self.state = Mutex(State(machine: ConnectionStateMachine(legacy: configuration.protocolMode == .xep0114)))
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

    /// Registers an instance of a domain with a balancing weight (see
    /// ``bind(_:weight:handler:)``); otherwise as ``register(_:handler:)``.
    /// - Parameters:
    ///   - hostname: The hostname (a domain, or `domain/resource`).
    ///   - weight: The instance's weight, 1…1000, or `nil` for none.
    ///   - handler: The handler for its stanzas.
    /// - Throws: ``ComponentError`` when the hostname or weight is invalid or the hostname
    ///   already registered.
    public func register(_ hostname: String, weight: Int?, handler: some ComponentHandler) throws {
        _ = try self.addBinding(hostname, handler: handler, weight: weight)
    }

    /// Binds a hostname to a handler and waits until the server has bound it.
    ///
    /// On a XEP-0225 stream this is one `<bind/>` IQ; the hostname the server returns is
    /// the one recorded and returned. If no stream is up yet, the binding waits for one
    /// (up to the request timeout). When the timeout passes with the request still
    /// unanswered, the hostname is given up like an ``unbind(_:)``: an `<unbind/>` follows
    /// the bind request on the stream (the server answers both in order), so that a late
    /// answer never leaves the hostname bound on the server and unserved here. The handler hears ``ComponentHandler/hostnameBound(_:in:)``
    /// before the first stanza of the binding.
    /// - Parameters:
    ///   - hostname: The hostname (a domain, or `domain/resource`).
    ///   - handler: The handler for its stanzas.
    /// - Returns: The hostname the server bound.
    /// - Throws: ``ComponentError``: ``ComponentError/Kind/bindRefused(_:)`` with the
    ///   server's condition (`conflict`, `not-allowed`, `bad-request`,
    ///   `resource-constraint`…), ``ComponentError/Kind/timeout``, ``ComponentError/Kind/alreadyBound``.
    @discardableResult
    public func bind(_ hostname: String, handler: some ComponentHandler) async throws -> String {
        try await self.bind(hostname, weight: nil, handler: handler)
    }

    /// Binds an instance of a domain with a balancing weight and waits until the server has
    /// bound it; otherwise as ``bind(_:handler:)``.
    ///
    /// The weight goes to the server as the `weight` attribute, in this project's namespace
    /// `urn:xmpp:component:balancing:0`, of the bind request's `<hostname/>`; a server that
    /// balances a domain over several instances (`domain/resource`) with XEP-0354's
    /// `weighted` algorithm gives each a share in proportion to it. Servers that do not know
    /// the attribute ignore it.
    /// - Parameters:
    ///   - hostname: The hostname (a domain, or `domain/resource`).
    ///   - weight: The instance's weight, 1…1000, or `nil` for none (the server's default, 1).
    ///   - handler: The handler for its stanzas.
    /// - Returns: The hostname the server bound.
    /// - Throws: As ``bind(_:handler:)``; ``ComponentError/Kind/invalidConfiguration`` for a
    ///   weight out of range.
    @discardableResult
    public func bind(_ hostname: String, weight: Int?, handler: some ComponentHandler) async throws -> String {
        let binding = try self.addBinding(hostname, handler: handler, weight: weight)
        let timeout = self.configuration.requestTimeout
        return try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask { try await binding.waitForOutcome() }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw ComponentError(.timeout, "binding \(hostname) got no answer within \(timeout)")
            }
            defer { group.cancelAll() }
            do {
                return try await group.next()!
            } catch {
                if (error as? ComponentError)?.kind == .timeout {
                    binding.resolveWaiters(.failure(error))
                    await self.giveUpBinding(binding)
                }
                throw error
            }
        }
    }

    /// Unbinds a hostname: its handler receives no more stanzas once the server confirms.
    ///
    /// From the moment the `<unbind/>` is sent, nothing more leaves from the hostname:
    /// what its handler sends meanwhile waits, and fails with
    /// ``ComponentError/Kind/notConnected`` once the server confirms (or goes out if the
    /// server refuses). A server that answers `item-not-found` holds no such binding: the
    /// hostname is removed here too. If the server refuses otherwise (some servers' unbind
    /// is broken), the error says so and the hostname is still bound.
    /// - Parameter hostname: The hostname as passed to ``bind(_:handler:)``.
    /// - Throws: ``ComponentError`` (``ComponentError/Kind/notBound``,
    ///   ``ComponentError/Kind/unbindRefused(_:)``, ``ComponentError/Kind/timeout``).
    public func unbind(_ hostname: String) async throws {
        guard let key = HostnameKey(hostname) else {
            throw ComponentError(.notBound, "\(hostname) is not bound on this connection")
        }
        let closeLegacy: ComponentStream? = try await withCheckedThrowingContinuation { continuation in
            self.execute {
                self.startUnbind(
                    key, hostname: hostname, timeout: self.configuration.requestTimeout, continuation: continuation)
            }
        }
        // XEP-0114: unbinding is closing the hostname's own stream.
        await closeLegacy?.closeGracefully()
    }

    /// Sends a stanza.
    ///
    /// The stanza's `from` must be under a hostname registered on this connection and it
    /// must have a `to`; otherwise it is refused here with a clear error instead of making
    /// the server end the stream. While the hostname is bound, the stanza is handed to the
    /// stream and `send` returns without waiting for the write (stanzas sent in one batch
    /// of the handler are flushed together); should the link break before it is written,
    /// it goes back into the hostname's queue, in send order. While the hostname has no
    /// stream (not yet bound, reconnecting, or unbinding), the stanza waits in that bounded
    /// queue and `send` returns once it is handed to the next stream (see
    /// ``ComponentConfiguration/outboundQueue``).
    ///
    /// Note that a component stream has no acknowledgements: what the kernel accepted just
    /// before a link dies can be lost even though `send` returned.
    /// - Parameter stanza: The stanza.
    /// - Throws: ``ComponentError``: ``ComponentError/Kind/unboundSender``,
    ///   ``ComponentError/Kind/invalidStanza``, ``ComponentError/Kind/queueFull``,
    ///   ``ComponentError/Kind/expired``, ``ComponentError/Kind/notConnected`` (the connection
    ///   is not running, or the hostname was removed while the stanza waited).
    public func send(_ stanza: Stanza) async throws {
        try await self.send(element: stanza.element)
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
                hostnames: state.bindings.map { key, binding in
                    let record = state.machine.hostnames[key]
                    let hostnameState: ComponentStatus.HostnameState
                    switch record?.phase {
                    case .pending: hostnameState = .pending
                    case .binding: hostnameState = .binding
                    case .bound: hostnameState = .bound
                    case .unbinding: hostnameState = .unbinding
                    case nil: hostnameState = .unbound
                    }
                    return ComponentStatus.Hostname(
                        hostname: record?.boundHostname ?? binding.requested, state: hostnameState,
                        stanzasIn: binding.stanzasIn.load(ordering: .relaxed),
                        stanzasOut: binding.stanzasOut.load(ordering: .relaxed),
                        queuedStanzas: binding.mailbox.depth, queuedBytes: binding.mailbox.queuedBytes)
                }.sorted { $0.hostname < $1.hostname })
        }
    }

    /// Starts a graceful shutdown: unbind every hostname, close the stream, wait for the
    /// server's close (bounded). ``run()`` returns when it is done.
    public func shutdown() {
        let (waiters, transferWaiter) = self.state.withLock {
            state -> ([CheckedContinuation<Void, Never>], CheckedContinuation<ConnectTarget?, Never>?) in
            _ = state.machine.requestShutdown()
            let waiters = Array(state.shutdownWaiters.values)
            state.shutdownWaiters.removeAll()
            let transferWaiter = state.transferWaiter
            state.transferWaiter = nil
            return (waiters, transferWaiter)
        }
        for waiter in waiters { waiter.resume() }
        transferWaiter?.resume(returning: nil)
    }

    /// Forgets the server a XEP-0051 transfer moved the connection to: later reconnects go
    /// to the configured server again (the host calls this when its configuration is
    /// reloaded). A transfer target is otherwise sticky across reconnects.
    public func forgetTransferTarget() {
        self.state.withLock { $0.machine.forgetTransferTarget() }
    }

    // MARK: Service

    /// Connects, binds the registered hostnames and serves until graceful shutdown or
    /// cancellation; reconnects when the stream drops.
    ///
    /// Everything the connection runs (handler loops, streams, timers) runs inside this
    /// method's task group: when it returns, nothing of the connection is left running.
    /// - Throws: ``ComponentError/Kind/invalidConfiguration`` at once for a configuration
    ///   that cannot work safely (``ComponentConfiguration/validate()``, or a policy that
    ///   refuses cleartext to this address); a ``/XMPPStream/NegotiationError`` or connection
    ///   error when ``ReconnectPolicy/maxAttempts`` consecutive attempts failed.
    public func run() async throws {
        // A configuration that cannot work safely fails now, not on every reconnect.
        try self.configuration.validate()
        let (spawns, spawner) = AsyncStream.makeStream(of: Spawn.self)
        let (existing, legacy) = try self.state.withLock { state -> ([Binding], Bool) in
            do {
                let keys = try state.machine.start()
                state.spawner = spawner
                return (keys.compactMap { state.bindings[$0] }, state.machine.legacy)
            } catch {
                throw ComponentError(.protocolViolation, "run() was called twice on the same ComponentConnection")
            }
        }
        defer { self.finishRun() }
        let executor = self.taskExecutor
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                for binding in existing {
                    group.addTask(executorPreference: binding.handler.execution == .eventLoop ? executor : nil) {
                        await self.work(binding)
                    }
                    if legacy {
                        group.addTask { await self.superviseLegacyStream(binding) }
                    }
                }
                group.addTask { await self.expireQueuedStanzas() }
                group.addTask {
                    defer { spawner.finish() }
                    if legacy {
                        await self.waitForShutdownRequest()
                        // Each hostname's supervisor answers what arrived, then closes its stream.
                        await self.waitForLegacyStreamsToClose()
                    } else {
                        try await self.connectionLoop()
                    }
                }
                for await spawn in spawns {
                    switch spawn {
                    case .worker(let binding):
                        group.addTask(executorPreference: binding.handler.execution == .eventLoop ? executor : nil) {
                            await self.work(binding)
                        }
                    case .legacyStream(let binding):
                        group.addTask { await self.superviseLegacyStream(binding) }
                    }
                }
                // No more spawns: the stream is closed. End the hostnames still registered
                // (their handler loops would wait for stanzas forever) and cancel what still
                // runs, so that a handler stuck in its work cannot hold up the shutdown.
                await self.onLoop { self.removeAllBindings(reason: "shut down") }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.shutdown()
        }
    }

    private func finishRun() {
        let (subscribers, remaining) = self.state.withLock {
            state -> ([AsyncStream<ComponentEvent>.Continuation], [Binding]) in
            _ = state.machine.finish()
            state.spawner = nil
            let remaining = Array(state.bindings.values)
            state.bindings.removeAll()
            return (Array(state.subscribers.values), remaining)
        }
        for binding in remaining {
            binding.mailbox.finish()
            self.failQueued(binding, reason: "the connection stopped")
        }
        for subscriber in subscribers { subscriber.finish() }
    }

    // MARK: Registering

    private func addBinding(_ hostname: String, handler: some ComponentHandler, weight: Int? = nil) throws -> Binding {
        if let weight, !(1...1000).contains(weight) {
            throw ComponentError(.invalidConfiguration, "the weight of \(hostname) must be from 1 to 1000, not \(weight)")
        }
        let jid: JID
        do {
            jid = try JID(hostname)
        } catch {
            throw ComponentError(.invalidHostname, "'\(hostname)' is not a valid hostname: \(error)")
        }
        guard jid.localpart == nil, let key = HostnameKey(jid.description) else {
            throw ComponentError(
                .invalidHostname,
                "'\(hostname)' is not a hostname: a component binds a domain or domain/resource, not user@domain")
        }
        let budget = self.budget
        let binding = Binding(
            key: key, requested: jid.description, handler: handler, weight: weight,
            builtInFeatures: StanzaDispatcher.builtInFeatures(version: self.configuration.softwareVersion),
            budget: self.configuration.hostnameBudget,
            outbound: self.configuration.outboundQueue, released: { budget.release($0) })
        let (result, spawner, stream) = self.state.withLock {
            state -> (ConnectionStateMachine.AddResult, AsyncStream<Spawn>.Continuation?, ComponentStream?) in
            let result = state.machine.add(key, requested: binding.requested)
            if case .added = result {
                state.bindings[key] = binding
            }
            return (result, state.spawner, state.stream)
        }
        switch result {
        case .duplicate(let existing):
            throw ComponentError(.alreadyBound, "\(existing) is already bound on this connection")
        case .shuttingDown:
            throw ComponentError(.shuttingDown, "the connection is shutting down")
        case .added(let bindNow, let startLegacyStream):
            spawner?.yield(.worker(binding))
            if startLegacyStream {
                spawner?.yield(.legacyStream(binding))
            } else if bindNow, let stream {
                self.execute { self.startBind(binding, on: stream) }
            }
        }
        return binding
    }

    /// A `bind()` that stopped waiting: the hostname is unbound like any other, so that a
    /// bind request still in flight is followed by an `<unbind/>` (the server answers both
    /// in order) instead of being forgotten here while the server binds it. Returns once the
    /// unbind is sent or the hostname is removed; the answer is not awaited.
    func giveUpBinding(_ binding: Binding) async {
        let key = binding.key
        let id = self.pending.makeID()
        await self.onLoop {
            let (start, stream) = self.state.withLock { state in
                (state.machine.unbindStarted(key, requestID: id), state.stream)
            }
            switch start {
            case .notRegistered, .inProgress:
                return
            case .removedLocally(let wasBinding):
                self.removeBindingForGood(binding, reason: wasBinding ? "bind timed out" : "bind gave up")
            case .send(let bound):
                guard let stream else {
                    self.removeBindingForGood(binding, reason: "bind timed out")
                    return
                }
                let request = HostnameBinding.unbindRequest(id: id, hostname: bound)
                // Behind the bind in flight, and like it without a timeout of its own.
                self.sendRequest(request, via: .stream(stream), timeout: nil) { result in
                    self.bindGivenUpUnbound(binding, requestID: id, result: result)
                }
            }
        }
    }

    /// The answer to the `<unbind/>` of a `bind()` that stopped waiting.
    private func bindGivenUpUnbound(_ binding: Binding, requestID: String, result: Result<IQ, any Error>) {
        let outcome: ConnectionStateMachine.UnbindOutcome
        switch result {
        case .success(let answer) where answer.type == .error:
            outcome = .refused(answer.error?.condition ?? .undefinedCondition)
        case .success:
            outcome = .succeeded
        case .failure:
            outcome = .noAnswer
        }
        switch self.state.withLock({ $0.machine.unbindAnswered(binding.key, requestID: requestID, outcome: outcome) }) {
        case .removed(let hostname):
            self.removeBindingForGood(binding, reason: "bind timed out", unboundHostname: hostname)
        case .stillBound(let hostname, let announce):
            // The server kept it (it refused the unbind): served after all.
            if announce {
                binding.mailbox.post(.bound(hostname))
                self.emit(.bound(hostname: hostname))
            }
            self.flushQueue(binding)
        case .stale:
            break
        }
    }

    /// Removes a hostname for good (its record in the machine is already gone, or is
    /// removed here): its handler loop ends after what is queued, its queued sends fail.
    func removeBindingForGood(_ binding: Binding, reason: String, unboundHostname: String? = nil) {
        let removed = self.state.withLock { state -> Bool in
            state.machine.remove(binding.key)
            guard state.bindings[binding.key] === binding else { return false }
            state.bindings.removeValue(forKey: binding.key)
            return true
        }
        guard removed else { return }
        // A bind() still waiting (an unbind sent behind its request) learns it will not be.
        binding.resolveWaiters(.failure(ComponentError(.notBound, "\(binding.requested) was \(reason)")))
        binding.mailbox.finish(after: unboundHostname.map { .unbound($0) })
        self.failQueued(binding, reason: "\(binding.requested) was \(reason)")
        if let unboundHostname {
            self.logger.info("hostname unbound", metadata: ["component.hostname": "\(unboundHostname)", "reason": "\(reason)"])
            self.emit(.unbound(hostname: unboundHostname))
        }
    }

    /// Removes every binding still registered (finishing their mailboxes and workers).
    func removeAllBindings(reason: String) {
        let bindings = self.state.withLock { state in
            state.bindings.map { ($0.value, state.machine.hostnames[$0.key]?.boundHostname) }
        }
        for (binding, bound) in bindings {
            self.removeBindingForGood(binding, reason: reason, unboundHostname: bound)
        }
    }

    func binding(_ key: HostnameKey) -> Binding? {
        self.state.withLock { $0.bindings[key] }
    }

    func allBindings() -> [Binding] {
        self.state.withLock { Array($0.bindings.values) }
    }

    // MARK: Unbinding

    /// Runs on the event loop: sends `<unbind/>` (the answer is applied in stream order),
    /// or removes a hostname that is not bound on a stream.
    func startUnbind(
        _ key: HostnameKey, hostname requested: String, timeout: Duration,
        continuation: CheckedContinuation<ComponentStream?, any Error>
    ) {
        let id = self.pending.makeID()
        let (start, binding, stream) = self.state.withLock { state in
            (state.machine.unbindStarted(key, requestID: id), state.bindings[key], state.stream)
        }
        guard let binding else {
            continuation.resume(throwing: ComponentError(.notBound, "\(requested) is not bound on this connection"))
            return
        }
        switch start {
        case .notRegistered:
            continuation.resume(throwing: ComponentError(.notBound, "\(requested) is not bound on this connection"))
        case .inProgress:
            continuation.resume(throwing: ComponentError(.notBound, "\(requested) is already being unbound"))
        case .removedLocally(let wasBinding):
            let legacyStream = binding.legacyStream
            let bound = legacyStream != nil ? binding.requested : nil
            self.removeBindingForGood(
                binding, reason: wasBinding ? "unbound while its bind was in flight" : "unbound", unboundHostname: bound)
            continuation.resume(returning: legacyStream)
        case .send(let bound):
            guard let stream else {
                continuation.resume(throwing: ComponentError(.notConnected, "no stream to unbind \(bound) on"))
                return
            }
            let request = HostnameBinding.unbindRequest(id: id, hostname: bound)
            self.sendRequest(request, via: .stream(stream), timeout: timeout) { result in
                self.unbindAnswered(binding, requestID: id, result: result, continuation: continuation)
            }
        }
    }

    private func unbindAnswered(
        _ binding: Binding, requestID: String, result: Result<IQ, any Error>,
        continuation: CheckedContinuation<ComponentStream?, any Error>
    ) {
        let outcome: ConnectionStateMachine.UnbindOutcome
        var refusal: StanzaError?
        switch result {
        case .success(let answer) where answer.type == .error:
            let error = answer.error ?? StanzaError(.undefinedCondition)
            refusal = error
            outcome = .refused(error.condition)
        case .success:
            outcome = .succeeded
        case .failure:
            outcome = .noAnswer
        }
        let answered = self.state.withLock { $0.machine.unbindAnswered(binding.key, requestID: requestID, outcome: outcome) }
        switch answered {
        case .removed(let hostname):
            self.removeBindingForGood(binding, reason: "unbound", unboundHostname: hostname)
            continuation.resume(returning: nil)
        case .stillBound(let hostname, let announce):
            if announce {
                // The unbind went out behind a bind in flight, whose answer was set aside.
                binding.mailbox.post(.bound(hostname))
                self.emit(.bound(hostname: hostname))
                binding.resolveWaiters(.success(hostname))
            }
            // What the handler sent meanwhile may go now.
            self.flushQueue(binding)
            if let refusal {
                self.logger.warning(
                    "server refused to unbind", metadata: ["component.hostname": "\(hostname)", "error": "\(refusal)"])
                continuation.resume(
                    throwing: ComponentError(
                        .unbindRefused(refusal.condition),
                        "the server refused to unbind \(hostname): \(refusal); it is still bound", stanzaError: refusal))
            } else if case .failure(let error) = result {
                continuation.resume(throwing: error)
            } else {
                continuation.resume(returning: nil)
            }
        case .stale:
            continuation.resume(returning: nil)
        }
    }

    // MARK: Events and bookkeeping

    func emit(_ event: ComponentEvent) {
        let subscribers = self.state.withLock { Array($0.subscribers.values) }
        for subscriber in subscribers {
            subscriber.yield(event)
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

    func handlerLogger(_ hostname: String) -> Logger {
        var logger = self.logger
        logger[metadataKey: "component.hostname"] = "\(hostname)"
        return logger
    }

    /// Runs `body` on the connection's event loop: at once when already there.
    func execute(_ body: @escaping @Sendable () -> Void) {
        if self.eventLoop.inEventLoop {
            body()
        } else {
            self.eventLoop.execute(body)
        }
    }

    var isShuttingDown: Bool {
        self.state.withLock { $0.machine.phase != .running }
    }

    var isFinished: Bool {
        self.state.withLock { $0.machine.phase == .finished || $0.machine.phase == .idle }
    }

    var currentStream: ComponentStream? {
        self.state.withLock { $0.stream }
    }

    var isLegacy: Bool {
        self.state.withLock { $0.machine.legacy }
    }

    /// The routing key of an address (see ``HostnameKey/init(address:)``).
    static func routingKey(_ address: String) -> HostnameKey? {
        HostnameKey(address: address)
    }
}
