import ComponentKit
import Logging
import NIOCore
import NIOPosix
import Synchronization
import XMPPCore
import XMPPStream

/// The host's local side for out-of-process components: one XEP-0114 listener per
/// distinct `listen` address (shared by the hostnames that name it), and a supervisor per
/// hostname with a `command`. Everything it starts runs inside ``run()``.
final class ExternalGateway: Sendable {
    enum Spawn: Sendable {
        case listen(ListenAddress)
        case supervise(ExternalHandler, ComponentSupervisor)
    }

    private struct Listener {
        var handlers: [String: ExternalHandler] = [:]
        var server: (any Channel)?
        var error: String?
        /// Connections refused because too many were waiting for their handshake.
        var refused = 0
        /// When such a refusal was last logged (one line per 10 s at most).
        var refusalLogged: ContinuousClock.Instant?
    }

    /// How many connections of one listener may wait for their handshake (10 s at most
    /// each) at once; more are closed at once, so that a local process opening
    /// connections and sending nothing cannot pile up sessions. A component connects once
    /// per hostname, and reconnects with backoff when refused.
    static let maximumPendingHandshakes = 32

    private struct State {
        var listeners: [ListenAddress: Listener] = [:]
        var supervisors: [String: ComponentSupervisor] = [:]
    }

    private let state = Mutex(State())
    private let spawns: AsyncStream<Spawn>
    private let spawner: AsyncStream<Spawn>.Continuation
    /// The host connection's event loop: listeners, sessions and their tasks run there.
    private let eventLoop: any EventLoop
    private let executor: EventLoopTaskExecutor
    private let logger: Logger
    private let limits: XMLStreamLimits
    private let isUpstreamConnected: @Sendable () -> Bool

    init(
        eventLoop: any EventLoop, logger: Logger, limits: XMLStreamLimits = .default,
        isUpstreamConnected: @escaping @Sendable () -> Bool
    ) {
        (self.spawns, self.spawner) = AsyncStream.makeStream(of: Spawn.self)
        self.eventLoop = eventLoop
        self.executor = EventLoopTaskExecutor(eventLoop)
        self.logger = logger
        self.limits = limits
        self.isUpstreamConnected = isUpstreamConnected
    }

    /// Serves a hostname on its listener (opened with the first hostname that names it),
    /// and starts its command, if any.
    func attach(_ handler: ExternalHandler) {
        let address = handler.options.listen
        let (open, supervisor) = self.state.withLock { state -> (Bool, ComponentSupervisor?) in
            let open = state.listeners[address] == nil
            state.listeners[address, default: Listener()].handlers[handler.key] = handler
            guard !handler.options.command.isEmpty else { return (open, nil) }
            let supervisor = ComponentSupervisor(
                hostname: handler.hostname, command: handler.options.command,
                environment: [
                    ExternalPlugin.Environment.hostname: handler.hostname,
                    ExternalPlugin.Environment.listen: address.description,
                    ExternalPlugin.Environment.secret: handler.secret,
                ],
                restart: handler.options.restart, stopGrace: handler.options.stopGrace, logger: handler.logger)
            state.supervisors[handler.key] = supervisor
            return (open, supervisor)
        }
        if open { self.spawner.yield(.listen(address)) }
        if let supervisor { self.spawner.yield(.supervise(handler, supervisor)) }
    }

    /// Stops serving a hostname: its command is stopped; the listener closes with its last hostname.
    func detach(_ handler: ExternalHandler) {
        let address = handler.options.listen
        let (server, supervisor) = self.state.withLock { state -> ((any Channel)?, ComponentSupervisor?) in
            let supervisor = state.supervisors.removeValue(forKey: handler.key)
            guard var listener = state.listeners[address], listener.handlers[handler.key] === handler else {
                return (nil, supervisor)
            }
            listener.handlers.removeValue(forKey: handler.key)
            if listener.handlers.isEmpty {
                state.listeners.removeValue(forKey: address)
                return (listener.server, supervisor)
            }
            state.listeners[address] = listener
            return (nil, supervisor)
        }
        supervisor?.stop()
        server?.close(promise: nil)
    }

    /// The handler serving a hostname (by key) on a listener.
    func handler(for key: String, on address: ListenAddress) -> ExternalHandler? {
        self.state.withLock { $0.listeners[address]?.handlers[hostnameKey(key)] }
    }

    /// The supervisor of a hostname, if it has a command.
    func supervisor(for key: String) -> ComponentSupervisor? {
        self.state.withLock { $0.supervisors[key] }
    }

    /// Whether the listener is open.
    func isListening(_ address: ListenAddress) -> Bool {
        self.state.withLock { $0.listeners[address]?.server != nil }
    }

    /// Why a listener could not be opened, if it could not.
    func listenerError(_ address: ListenAddress) -> String? {
        self.state.withLock { $0.listeners[address]?.error }
    }

    /// Runs listeners and supervisors until cancelled; then closes the listeners and stops
    /// every command (SIGTERM, then SIGKILL after its grace).
    func run() async {
        await withDiscardingTaskGroup { group in
            for await spawn in self.spawns {
                switch spawn {
                case .listen(let address):
                    group.addTask(executorPreference: self.executor) { await self.listen(on: address) }
                case .supervise(let handler, let supervisor):
                    let address = handler.options.listen
                    group.addTask {
                        // Started once the upstream is connected and its listener is open.
                        await supervisor.run(isReady: { self.isUpstreamConnected() && self.isListening(address) })
                    }
                }
            }
            // Cancelled (the host stops): stop every command.
            let supervisors = self.state.withLock { Array($0.supervisors.values) }
            for supervisor in supervisors { supervisor.stop() }
        }
    }

    private func listen(on address: ListenAddress) async {
        let accepted = AcceptedChannels<XMLStreamEvent, XMLStreamFrame>()
        let limits = self.limits
        let initializer: @Sendable (any Channel) -> EventLoopFuture<ExternalSession.Channel> = { channel in
            channel.eventLoop.makeCompletedFuture {
                let sync = channel.pipeline.syncOperations
                try sync.addXMLStreamHandler(contentNamespace: Namespace.componentAccept, limits: limits, authenticated: false)
                return accepted.register(try ExternalSession.Channel(wrappingChannelSynchronously: channel))
            }
        }
        let server: NIOAsyncChannel<ExternalSession.Channel, Never>
        var unixPath: String?
        do {
            switch address {
            case .tcp(let host, let port):
                server = try await ServerBootstrap(group: self.eventLoop)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .bind(host: host, port: port, childChannelInitializer: initializer)
            case .unix(let path):
                // bind(2) creates the file with 0777 & ~umask: it gets 0600 under a temporary
                // name in the same directory, and only then appears at its path.
                let temporary = SystemCalls.parentDirectory(of: path) + "/.external-\(UInt32.random(in: 0...UInt32.max)).sock"
                try? SystemCalls.removeFile(path)
                server = try await ServerBootstrap(group: self.eventLoop)
                    .bind(unixDomainSocketPath: temporary, childChannelInitializer: initializer)
                do {
                    try SystemCalls.changeMode(temporary, 0o600)
                    try SystemCalls.renameFile(temporary, to: path)
                } catch {
                    try? SystemCalls.removeFile(temporary)
                    try? await server.channel.close()
                    throw error
                }
                unixPath = path
            }
        } catch {
            self.logger.error(
                "cannot open the external components' listener", metadata: ["listen": "\(address)", "error": "\(error)"])
            self.state.withLock { $0.listeners[address]?.error = "cannot listen on \(address): \(error)" }
            return
        }
        defer { if let unixPath { try? SystemCalls.removeFile(unixPath) } }
        let stillWanted = self.state.withLock { state -> Bool in
            guard state.listeners[address] != nil else { return false }
            state.listeners[address]?.server = server.channel
            state.listeners[address]?.error = nil
            return true
        }
        guard stillWanted else {
            try? await server.channel.close()
            return
        }
        self.logger.info("external components' listener open", metadata: ["listen": "\(address)"])
        let pending = PendingHandshakes()
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                do {
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            accepted.take(connection)
                            guard let slot = pending.take(limit: Self.maximumPendingHandshakes) else {
                                connection.channel.close(promise: nil)
                                self.refusedOne(on: address)
                                continue
                            }
                            group.addTask(executorPreference: self.executor) {
                                let session = ExternalSession(channel: connection)
                                await withTaskCancellationHandler {
                                    await session.serve(
                                        gateway: self, address: address, logger: self.logger, authenticated: slot.release)
                                } onCancel: {
                                    connection.channel.close(promise: nil)
                                }
                                slot.release()
                            }
                        }
                    }
                } catch {
                    self.logger.debug("external listener ended", metadata: ["error": "\(error)"])
                }
                await accepted.closeUnserved()
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
        self.logger.info("external components' listener closed", metadata: ["listen": "\(address)"])
    }

    private func refusedOne(on address: ListenAddress) {
        let log = self.state.withLock { state -> Int? in
            state.listeners[address]?.refused += 1
            let now = ContinuousClock.now
            if let last = state.listeners[address]?.refusalLogged, now - last < .seconds(10) { return nil }
            state.listeners[address]?.refusalLogged = now
            return state.listeners[address]?.refused
        }
        if let log {
            self.logger.warning(
                "external listener: too many connections waiting for their handshake; refused a new one",
                metadata: [
                    "listen": "\(address)", "limit": "\(Self.maximumPendingHandshakes)", "refused.total": "\(log)",
                ])
        }
    }
}

/// The connections of one listener that have not finished their handshake yet.
private final class PendingHandshakes: Sendable {
    private let count = Atomic<Int>(0)

    /// A slot, or `nil` when `limit` connections already wait.
    func take(limit: Int) -> Slot? {
        guard self.count.wrappingAdd(1, ordering: .relaxed).newValue <= limit else {
            self.count.wrappingSubtract(1, ordering: .relaxed)
            return nil
        }
        return Slot(owner: self)
    }

    /// One connection's place: given back once, when it authenticated or ended.
    final class Slot: Sendable {
        private let owner: PendingHandshakes
        private let released = Atomic<Bool>(false)

        init(owner: PendingHandshakes) {
            self.owner = owner
        }

        @Sendable func release() {
            guard !self.released.exchange(true, ordering: .relaxed) else { return }
            self.owner.count.wrappingSubtract(1, ordering: .relaxed)
        }
    }
}
