public import NIOCore
import NIOPosix

/// How a ``ComponentConnection`` opens the channel of each stream: a TCP connection by
/// default (``TCPChannelFactory``).
///
/// The `ComponentKitTesting` product's `InMemoryServer` is another: its channels are
/// `NIOAsyncTestingChannel`s served by an in-memory XMPP server, for tests of a whole
/// connection (negotiation, binding, routing, answers) with no socket.
public protocol ComponentChannelFactory: Sendable {
    /// Opens a channel and runs `initializer` on it (which adds the stream's handlers)
    /// before it becomes active.
    /// - Parameters:
    ///   - target: Where to connect.
    ///   - eventLoop: The connection's event loop: the channel must live on it.
    ///   - connectTimeout: How long connecting may take.
    ///   - initializer: Configures the channel's pipeline; run on `eventLoop`.
    /// - Returns: The active channel.
    func makeChannel(
        to target: ConnectTarget, on eventLoop: any EventLoop, connectTimeout: TimeAmount,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel
}

/// TCP connections through NIO's `ClientBootstrap`: the default ``ComponentChannelFactory``.
public struct TCPChannelFactory: ComponentChannelFactory {
    /// Creates the factory.
    public init() {}

    /// Connects with TCP_NODELAY and one read per event-loop pass.
    public func makeChannel(
        to target: ConnectTarget, on eventLoop: any EventLoop, connectTimeout: TimeAmount,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        try await ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            // One read (≤ 64 KiB) per loop pass: the handlers, on the same loop, answer each
            // read before the next, so both sides work at once (measured: +50–90 % echoes/s
            // over the default 4 reads per pass) and a read is bounded for the budgets.
            .channelOption(.maxMessagesPerRead, value: 1)
            .channelInitializer(initializer)
            .connect(host: target.host, port: target.port)
            .get()
    }
}
