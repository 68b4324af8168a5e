import NIOCore
import NIOPosix
import Synchronization
import XMPPTLS

/// A thread-safe count of completed handshakes.
final class Counter: Sendable {
    private let storage = Mutex(0)
    var value: Int { self.storage.withLock { $0 } }
    func increment() { self.storage.withLock { $0 += 1 } }
}

struct TestTimeout: Error {}

/// Awaits a future, failing after `timeout` so that no test can hang.
func awaitResult<T: Sendable>(_ future: EventLoopFuture<T>, timeout: TimeAmount = .seconds(10)) async throws -> T {
    let promise = future.eventLoop.makePromise(of: T.self)
    future.cascade(to: promise)
    let timer = future.eventLoop.scheduleTask(in: timeout) { promise.fail(TestTimeout()) }
    defer { timer.cancel() }
    return try await promise.futureResult.get()
}

/// The promises a ``Recorder`` completes. Every one is completed by ``finish()`` at the latest,
/// because NIO traps on leaked promises in debug builds.
struct Expectations: Sendable {
    let handshake: EventLoopPromise<TLSSessionInfo>
    let error: EventLoopPromise<any Error>
    let inactive: EventLoopPromise<Void>
    let data: EventLoopPromise<ByteBuffer>
    /// The channel the ``Recorder`` was added to (for a server: the first accepted child).
    let channel: EventLoopPromise<any Channel>
    /// How many handshake-completed events the ``Recorder`` saw.
    let handshakes = Counter()
    let expectedBytes: Int

    init(on eventLoop: any EventLoop, expectedBytes: Int = 0) {
        self.handshake = eventLoop.makePromise()
        self.error = eventLoop.makePromise()
        self.inactive = eventLoop.makePromise()
        self.data = eventLoop.makePromise()
        self.channel = eventLoop.makePromise()
        self.expectedBytes = expectedBytes
    }

    func finish() {
        self.handshake.fail(TestTimeout())
        self.error.fail(TestTimeout())
        self.inactive.fail(TestTimeout())
        self.data.fail(TestTimeout())
        self.channel.fail(TestTimeout())
    }

    /// The first error, or `nil` if the channel closed without one.
    func firstError(timeout: TimeAmount = .seconds(10)) async throws -> (any Error)? {
        _ = try? await awaitResult(self.inactive.futureResult, timeout: timeout)
        // Errors are fired before the channel becomes inactive.
        self.error.fail(TestTimeout())
        do {
            return try await self.error.futureResult.get()
        } catch is TestTimeout {
            return nil
        }
    }
}

/// Records what the TLS handler passes up; optionally echoes plaintext back.
final class Recorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let expectations: Expectations
    private let echo: Bool
    private var received: ByteBuffer?

    init(_ expectations: Expectations, echo: Bool = false) {
        self.expectations = expectations
        self.echo = echo
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.expectations.channel.succeed(context.channel)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSEvent, case .handshakeCompleted(let info) = event {
            self.expectations.handshakes.increment()
            self.expectations.handshake.succeed(info)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        if self.echo {
            context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
        }
        if self.received == nil {
            self.received = buffer
        } else {
            self.received!.writeBuffer(&buffer)
        }
        if self.expectations.expectedBytes > 0, let received = self.received,
            received.readableBytes >= self.expectations.expectedBytes
        {
            self.expectations.data.succeed(received)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.expectations.error.succeed(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.expectations.handshake.fail(ChannelError.ioOnClosedChannel)
        self.expectations.data.fail(ChannelError.ioOnClosedChannel)
        self.expectations.inactive.succeed()
        context.fireChannelInactive()
    }
}

/// A TLS server of ours on a loopback port.
struct TestServer {
    let channel: any Channel
    var port: Int { self.channel.localAddress!.port! }

    /// Starts a server whose accepted connections get a TLS handler and a ``Recorder``.
    ///
    /// Only the first connection's events reach `expectations`.
    static func start(
        context: OpenSSLContext, expectations: Expectations, echo: Bool = false
    ) async throws -> TestServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(OpenSSLHandler(context: context))
                    try child.pipeline.syncOperations.addHandler(Recorder(expectations, echo: echo))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TestServer(channel: channel)
    }

    func stop() async {
        try? await self.channel.close()
    }
}

/// Connects a TLS client of ours to a loopback port.
func connectClient(
    port: Int, context: OpenSSLContext, expectations: Expectations, serverName: String? = nil
) async throws -> any Channel {
    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(OpenSSLHandler(context: context, serverName: serverName))
                try channel.pipeline.syncOperations.addHandler(Recorder(expectations))
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
}

extension ByteBuffer {
    var string: String { String(buffer: self) }
}

/// A deterministic pseudo-random payload.
func payload(count: Int, seed: UInt8) -> [UInt8] {
    var state = UInt32(seed) &* 2_654_435_761 | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 17
        state ^= state << 5
        return UInt8(truncatingIfNeeded: state)
    }
}

func clientContext(
    _ certs: TestCertificates, verification: TLSCertificateVerification = .fullVerification,
    min: TLSVersion = .v1_2, max: TLSVersion? = nil, withClientCertificate: Bool = false
) throws -> OpenSSLContext {
    try OpenSSLContext(
        client: TLSClientConfiguration(
            serverName: "example.test",
            trustRoots: .caFile(certs.caCertificate),
            certificateVerification: verification,
            minimumVersion: min,
            maximumVersion: max,
            certificateChainFile: withClientCertificate ? certs.clientCertificate : nil,
            privateKeyFile: withClientCertificate ? certs.leafKey : nil
        )
    )
}

func serverContext(
    _ certs: TestCertificates, certificate: String? = nil, min: TLSVersion = .v1_2, max: TLSVersion? = nil,
    clientCertificates: TLSServerConfiguration.ClientCertificateRequest = .none
) throws -> OpenSSLContext {
    try OpenSSLContext(
        server: TLSServerConfiguration(
            certificateChainFile: certificate ?? certs.serverCertificate,
            privateKeyFile: certs.leafKey,
            minimumVersion: min,
            maximumVersion: max,
            clientCertificateRequest: clientCertificates
        )
    )
}
