public import Logging
public import NIOCore
import NIOHTTP1
public import NIOPosix
public import Prometheus
public import ServiceLifecycle
import Synchronization

/// A minimal HTTP/1.1 responder for Prometheus: `GET /metrics` answers the registry's
/// text exposition; anything else is 404 (or 405 for other methods). One request per
/// connection.
///
/// The endpoint has no authentication, so what a client can hold is bounded: at most
/// ``maxConnections`` connections at once (more are closed as soon as they are accepted)
/// and each lives at most ``idleTimeout`` (a client that does not send its request in that
/// time, or does not read the answer, is disconnected).
///
/// The application bootstraps swift-metrics with a `PrometheusMetricsFactory` on the same
/// registry (`component-host` does); this library never bootstraps.
public struct MetricsServer: Service {
    /// Where to listen.
    public let address: HostConfiguration.ListenAddress
    let registry: PrometheusCollectorRegistry
    let beforeScrape: @Sendable () async -> Void
    let onListening: @Sendable (SocketAddress) -> Void
    let logger: Logger
    let eventLoopGroup: any EventLoopGroup
    /// The most connections served at once; 16 by default.
    public let maxConnections: Int
    /// How long one connection may last (request and answer); 10 s by default.
    public let idleTimeout: Duration

    /// Creates a server; nothing listens until ``run()``.
    /// - Parameters:
    ///   - address: Where to listen (port 0 picks a free port; see `onListening`).
    ///   - registry: The Prometheus registry to expose.
    ///   - logger: The logger.
    ///   - eventLoopGroup: The NIO event loops.
    ///   - maxConnections: The most connections served at once (at least 1).
    ///   - idleTimeout: How long one connection may last.
    ///   - beforeScrape: Called before each exposition (e.g. ``ComponentHost/sampleMetrics()``).
    ///   - onListening: Called with the bound address.
    public init(
        address: HostConfiguration.ListenAddress, registry: PrometheusCollectorRegistry, logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        maxConnections: Int = 16, idleTimeout: Duration = .seconds(10),
        beforeScrape: @escaping @Sendable () async -> Void = {},
        onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) {
        self.address = address
        self.registry = registry
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
        self.maxConnections = max(1, maxConnections)
        self.idleTimeout = idleTimeout
        self.beforeScrape = beforeScrape
        self.onListening = onListening
    }

    /// Listens and answers until graceful shutdown or cancellation.
    public func run() async throws {
        let lifetime = TimeAmount.nanoseconds(
            Int64(self.idleTimeout.components.seconds) * 1_000_000_000 + self.idleTimeout.components.attoseconds / 1_000_000_000)
        let accepted = AcceptedChannels<HTTPServerRequestPart, HTTPServerResponsePart>()
        // One loop for the listener and its connections: connections are then taken in the
        // order the kernel accepted them, so the cap refuses the newest (with children on
        // several loops, a later connection could be counted before an earlier one).
        let loop = self.eventLoopGroup.next()
        let server = try await ServerBootstrap(group: loop, childGroup: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: self.address.host, port: self.address.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Every connection ends within `idleTimeout`, whatever the client does.
                    let deadline = channel.eventLoop.scheduleTask(in: lifetime) { channel.close(promise: nil) }
                    channel.closeFuture.whenComplete { _ in deadline.cancel() }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return accepted.register(
                        try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                            wrappingChannelSynchronously: channel))
                }
            }
        if let local = server.channel.localAddress {
            self.logger.info("metrics listening", metadata: ["metrics.address": "\(local)"])
            self.onListening(local)
        }
        let active = ConnectionCount()
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                do {
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            accepted.take(connection)
                            guard active.value.add(1, ordering: .relaxed).newValue <= self.maxConnections else {
                                active.value.subtract(1, ordering: .relaxed)
                                self.logger.debug(
                                    "metrics connection refused: too many open",
                                    metadata: ["metrics.max": "\(self.maxConnections)"])
                                group.addTask { try? await connection.executeThenClose { _, _ in } }
                                continue
                            }
                            group.addTask {
                                await self.serve(connection)
                                active.value.subtract(1, ordering: .relaxed)
                            }
                        }
                    }
                } catch {
                    await accepted.closeUnserved()
                    throw error
                }
                await accepted.closeUnserved()
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case .head(let requestHead):
                        head = requestHead
                    case .body:
                        break
                    case .end:
                        guard let request = head else { return }
                        let (status, body) = await self.answer(request)
                        var headers = HTTPHeaders()
                        headers.add(
                            name: "Content-Type",
                            value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8")
                        headers.add(name: "Content-Length", value: String(body.count))
                        headers.add(name: "Connection", value: "close")
                        try await outbound.write(
                            .head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                        try await outbound.write(.end(nil))
                        return
                    }
                }
            }
        } catch {
            self.logger.debug("metrics connection ended", metadata: ["error": "\(error)"])
        }
    }

    private func answer(_ request: HTTPRequestHead) async -> (HTTPResponseStatus, [UInt8]) {
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        guard path == "/metrics" else {
            return (.notFound, Array("not found; metrics are at /metrics\n".utf8))
        }
        guard request.method == .GET || request.method == .HEAD else {
            return (.methodNotAllowed, Array("only GET\n".utf8))
        }
        await self.beforeScrape()
        var buffer: [UInt8] = []
        self.registry.emit(into: &buffer)
        return (.ok, buffer)
    }
}

/// The number of connections being served (shared by the accept loop and the tasks).
private final class ConnectionCount: Sendable {
    let value = Atomic<Int>(0)
}
