import NIOCore
import NIOPosix
import Testing
import XMPPTLS

/// The STARTTLS shape: plaintext first, then the TLS handler is inserted into live, active channels.
@Suite(.timeLimit(.minutes(1)))
struct StartTLSTests {
    let certs = TestCertificates.shared
    let eventLoop = MultiThreadedEventLoopGroup.singleton.next()

    @Test func handlerInsertedIntoActiveChannelsAfterPlaintext() async throws {
        let serverContext = try serverContext(self.certs)
        let clientContext = try clientContext(self.certs)
        let early = "first secret line\n"
        let serverExpectations = Expectations(on: self.eventLoop, expectedBytes: early.utf8.count)
        let clientExpectations = Expectations(on: self.eventLoop, expectedBytes: early.utf8.count)
        let earlyWrite = self.eventLoop.makePromise(of: Void.self)
        defer {
            serverExpectations.finish()
            clientExpectations.finish()
            earlyWrite.fail(TestTimeout())
        }

        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(StartTLSServer(context: serverContext))
                    try child.pipeline.syncOperations.addHandler(Recorder(serverExpectations, echo: true))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }

        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        StartTLSClient(context: clientContext, earlyData: early, earlyWrite: earlyWrite)
                    )
                    try channel.pipeline.syncOperations.addHandler(Recorder(clientExpectations))
                }
            }
            .connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
        defer { channel.close(promise: nil) }

        // The write issued right after inserting the handler waited for the handshake, then succeeded.
        try await awaitResult(earlyWrite.futureResult)
        let clientInfo = try await awaitResult(clientExpectations.handshake.futureResult)
        let serverInfo = try await awaitResult(serverExpectations.handshake.futureResult)
        #expect(clientInfo.tlsExporter == serverInfo.tlsExporter)
        #expect(clientInfo.tlsExporter != nil)
        #expect(try await awaitResult(serverExpectations.data.futureResult).string == early)
        #expect(try await awaitResult(clientExpectations.data.futureResult).string == early)
        let handler = try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: OpenSSLHandler.self).sessionInfo
        }.get()
        #expect(handler == clientInfo)
    }
}

/// Answers `STARTTLS` with `PROCEED` in plaintext, then puts TLS in front of everything.
private final class StartTLSServer: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let tlsContext: OpenSSLContext
    private var upgraded = false

    init(context: OpenSSLContext) {
        self.tlsContext = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.upgraded else {
            context.fireChannelRead(data)
            return
        }
        let line = self.unwrapInboundIn(data).string
        precondition(line == "STARTTLS\n", "unexpected plaintext \(line)")
        self.upgraded = true
        // PROCEED must leave in plaintext, before the TLS handler sits in the outbound path.
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "PROCEED\n")), promise: nil)
        do {
            try context.pipeline.syncOperations.addHandler(OpenSSLHandler(context: self.tlsContext), position: .first)
        } catch {
            context.fireErrorCaught(error)
        }
    }
}

/// Sends `STARTTLS`, and on `PROCEED` inserts the TLS handler and immediately writes `earlyData`.
private final class StartTLSClient: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let tlsContext: OpenSSLContext
    private let earlyData: String
    private let earlyWrite: EventLoopPromise<Void>
    private var upgraded = false

    init(context: OpenSSLContext, earlyData: String, earlyWrite: EventLoopPromise<Void>) {
        self.tlsContext = context
        self.earlyData = earlyData
        self.earlyWrite = earlyWrite
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "STARTTLS\n")), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.upgraded else {
            context.fireChannelRead(data)
            return
        }
        let line = self.unwrapInboundIn(data).string
        precondition(line == "PROCEED\n", "unexpected plaintext \(line)")
        self.upgraded = true
        do {
            try context.pipeline.syncOperations.addHandler(OpenSSLHandler(context: self.tlsContext), position: .first)
        } catch {
            context.fireErrorCaught(error)
            return
        }
        // The handshake has only just started: this write must be buffered and sent after it.
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: self.earlyData)), promise: self.earlyWrite)
    }
}
