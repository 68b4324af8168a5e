import ComponentKit
import Logging
import Synchronization
import XMPPCore

/// The handler the ``ExternalPlugin`` makes for a hostname: hands each stanza addressed to
/// the hostname to its local component's stream, unchanged but for the namespace.
///
/// IQ requests are forwarded too (disco, ping, version included): the local component
/// answers them, not the host. While the component is away (within the grace after its
/// stream ended) a stanza waits for it; what cannot be delivered is answered with an
/// error stanza (`service-unavailable`), never silently dropped. A component that stops
/// reading holds up only this hostname: its writes wait, its mailbox fills, and the core
/// answers its excess with `resource-constraint` while other hostnames flow.
final class ExternalHandler: OnDemandBinding, Sendable {
    let hostname: String
    let options: ExternalOptions
    /// The XEP-0114 secret; never logged.
    let secret: String
    let logger: Logger
    let link: ExternalLink
    private let runtime = Mutex<OnDemandRuntime?>(nil)

    /// Whether a local component is connected now (for status).
    var isConnected: Bool { self.link.connected.load(ordering: .relaxed) }

    init(hostname: String, options: ExternalOptions, secret: String, logger: Logger) {
        self.hostname = hostname
        self.options = options
        self.secret = secret
        self.logger = logger
        self.link = ExternalLink(hostname: hostname, grace: options.grace, logger: logger)
    }

    /// The key under which the listener finds this handler.
    var key: String { hostnameKey(self.hostname) }

    // MARK: OnDemandBinding

    func start(_ runtime: OnDemandRuntime) {
        self.runtime.withLock { $0 = runtime }
        self.link.setRuntime(runtime)
        runtime.gateway.attach(self)
    }

    func stop() async {
        let runtime = self.runtime.withLock { $0 }
        runtime?.gateway.detach(self)
        await self.link.stop()
    }

    /// Sends a stanza of the local component upstream.
    func send(_ stanza: Stanza) async throws {
        guard let runtime = self.runtime.withLock({ $0 }) else {
            throw ComponentError(.notConnected, "\(self.hostname) is not served by a running host")
        }
        try await runtime.send(stanza)
    }

    // MARK: ComponentHandler

    var execution: HandlerExecution { .eventLoop }

    func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        if case .iq(let iq) = stanza, iq.type.isRequest {
            // The local component answers it (or we do, with an error, below).
            context.deferReply()
        }
        for _ in 0..<3 {
            guard let session = await self.link.session() else { break }
            do {
                try await session.deliver(stanza.element)
                return
            } catch {
                // The stream ended under the write: wait for the component's return (grace).
                await self.link.detach(session)
            }
        }
        try await Self.bounce(stanza, context: context, logger: self.logger, hostname: self.hostname)
    }

    /// Answers a stanza that no local component will see: IQ requests and messages get an
    /// error; presences, results and errors are logged (never answer an error with an error).
    static func bounce(_ stanza: Stanza, context: ComponentContext, logger: Logger, hostname: String) async throws {
        let error = StanzaError(.serviceUnavailable, text: "the component serving \(hostname) is not connected")
        switch stanza {
        case .iq(let iq) where iq.type.isRequest:
            try await context.send(.iq(iq.errorResult(error)))
        case .message(let message) where message.type != .error:
            try await context.send(.message(message.errorReply(error)))
        default:
            logger.debug("dropping a stanza for a disconnected component", metadata: ["stanza.id": "\(stanza.id ?? "-")"])
        }
    }
}

/// The state of one external hostname: its local session (at most one), whether it is
/// registered upstream, and the grace after its session ended.
actor ExternalLink {
    enum AttachResult: Sendable {
        case accepted
        case conflict
        case stopped
        case failed(String)
    }

    let hostname: String
    let grace: Duration
    let logger: Logger
    /// Mirrors whether a session is attached, for readers outside the actor.
    nonisolated let connected = Atomic<Bool>(false)
    /// Set once by ``ExternalHandler/start(_:)``, before the listener can accept anything.
    private nonisolated let runtimeBox = Mutex<OnDemandRuntime?>(nil)
    private var runtime: OnDemandRuntime? { self.runtimeBox.withLock { $0 } }
    private var current: ExternalSession?
    /// A session whose handshake succeeded and whose `<handshake/>` answer is being written:
    /// it holds the hostname (a second one is a conflict) but gets no stanza yet.
    private var reserved: ExternalSession?
    private var registered = false
    private var stopped = false
    private var graceTask: Task<Void, Never>?
    private var unbindTask: Task<Void, Never>?
    private var waiters: [CheckedContinuation<ExternalSession?, Never>] = []
    /// Sessions accepted, for status.
    private(set) var sessionsAccepted = 0

    init(hostname: String, grace: Duration, logger: Logger) {
        self.hostname = hostname
        self.grace = grace
        self.logger = logger
    }

    nonisolated func setRuntime(_ runtime: OnDemandRuntime) {
        self.runtimeBox.withLock { $0 = runtime }
    }

    /// Whether a local component is connected now.
    var isConnected: Bool { self.current != nil }

    /// A local component's handshake is right: it gets the hostname unless another has it.
    /// It receives stanzas once ``activate(_:)`` says its stream is established.
    func attach(_ session: ExternalSession) async -> AttachResult {
        if let pending = self.unbindTask {
            await pending.value
        }
        guard !self.stopped, let runtime = self.runtime else { return .stopped }
        if self.current != nil || self.reserved != nil { return .conflict }
        if !self.registered {
            do {
                try runtime.bind()
            } catch {
                return .failed("\(error)")
            }
            self.registered = true
        }
        self.graceTask?.cancel()
        self.graceTask = nil
        self.reserved = session
        return .accepted
    }

    /// The session's stream is established (its `<handshake/>` answer written): stanzas,
    /// those that waited first, go to it.
    func activate(_ session: ExternalSession) {
        guard self.reserved === session else { return }
        self.reserved = nil
        self.current = session
        self.connected.store(true, ordering: .relaxed)
        self.sessionsAccepted += 1
        let waiters = self.waiters
        self.waiters.removeAll()
        for waiter in waiters { waiter.resume(returning: session) }
        self.logger.info("external component connected")
    }

    /// A local stream ended: the hostname stays bound for the grace, then is unbound.
    func detach(_ session: ExternalSession) {
        if self.reserved === session {
            self.reserved = nil
        } else {
            guard self.current === session else { return }
        }
        self.current = nil
        self.connected.store(false, ordering: .relaxed)
        self.logger.info("external component disconnected", metadata: ["grace": "\(self.grace)"])
        guard !self.stopped else { return }
        let grace = self.grace
        self.graceTask?.cancel()
        self.graceTask = Task {
            do {
                try await Task.sleep(for: grace)
            } catch {
                return
            }
            await self.graceExpired()
        }
    }

    private func graceExpired() async {
        guard self.current == nil, self.reserved == nil, self.graceTask != nil else { return }
        self.graceTask = nil
        self.releaseWaiters()
        // What waits in the hostname's mailbox is answered with errors while the hostname is
        // still bound (an error from an unbound hostname could not be sent): give the
        // handler up to 2 s to get through it before the unbind.
        if let runtime = self.runtime {
            let deadline = ContinuousClock.now + .seconds(2)
            while runtime.pendingStanzas() > 0, ContinuousClock.now < deadline, self.current == nil, self.reserved == nil {
                try? await Task.sleep(for: .milliseconds(10))
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard self.current == nil, self.reserved == nil, !self.stopped else { return }
        await self.unregister()
    }

    private func unregister() async {
        guard self.registered, let runtime = self.runtime else { return }
        self.registered = false
        let task = Task { await runtime.unbind() }
        self.unbindTask = task
        await task.value
        if self.unbindTask == task { self.unbindTask = nil }
    }

    private func releaseWaiters() {
        let waiters = self.waiters
        self.waiters.removeAll()
        for waiter in waiters { waiter.resume(returning: nil) }
    }

    /// The connected session, or the one that connects within the grace; `nil` when none will.
    func session() async -> ExternalSession? {
        if let current = self.current { return current }
        guard !self.stopped, self.graceTask != nil || self.reserved != nil else { return nil }
        return await withCheckedContinuation { self.waiters.append($0) }
    }

    /// The hostname is no longer served: close the session, release waiters. The host
    /// unbinds the hostname itself.
    func stop() async {
        self.stopped = true
        self.graceTask?.cancel()
        self.graceTask = nil
        self.registered = false
        self.releaseWaiters()
        let session = self.current ?? self.reserved
        self.current = nil
        self.reserved = nil
        self.connected.store(false, ordering: .relaxed)
        await session?.close(StreamError(.systemShutdown, text: "\(self.hostname) is no longer served by this host"))
    }
}
