import NIOCore
import NIOPosix
import XMPPCore
import XMPPStream
import XMPPTLS

/// Runs one XEP-0114 handshake against a real server with the project's
/// `LegacyComponentNegotiationStateMachine`, over plain TCP or direct TLS.
enum ComponentHandshake {
    struct DirectTLS {
        var caFile: String
        var serverName: String
    }

    /// Connects, negotiates and closes. Returns the server's stream id; throws the
    /// machine's `NegotiationError` (or a TLS/connection error) on failure.
    static func run(port: Int, hostname: String, secret: String, tls: DirectTLS? = nil) async throws -> String? {
        let tlsContext = try tls.map {
            try OpenSSLContext(client: TLSClientConfiguration(serverName: $0.serverName, trustRoots: .caFile($0.caFile)))
        }
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let promise = eventLoop.makePromise(of: String?.self)
        let timeout = eventLoop.scheduleTask(in: .seconds(10)) {
            promise.fail(TestTimeout(description: "no handshake outcome from port \(port) within 10 s"))
        }
        defer { timeout.cancel() }
        let channel = try await ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tlsContext {
                        try sync.addHandler(OpenSSLHandler(context: tlsContext))
                    }
                    try sync.addXMLStreamHandler(contentNamespace: Namespace.componentAccept)
                    try sync.addHandler(
                        Driver(
                            machine: LegacyComponentNegotiationStateMachine(hostname: hostname, secret: secret), promise: promise)
                    )
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        do {
            let id = try await promise.futureResult.get()
            try? await channel.writeAndFlush(XMLStreamFrame.close).get()
            try? await channel.close().get()
            return id
        } catch {
            try? await channel.close().get()
            throw error
        }
    }

    private final class Driver: ChannelInboundHandler {
        typealias InboundIn = XMLStreamEvent
        typealias OutboundOut = XMLStreamFrame

        private var machine: LegacyComponentNegotiationStateMachine
        private let promise: EventLoopPromise<String?>
        private var done = false

        init(machine: LegacyComponentNegotiationStateMachine, promise: EventLoopPromise<String?>) {
            self.machine = machine
            self.promise = promise
        }

        func channelActive(context: ChannelHandlerContext) {
            self.perform(self.machine.start(), context: context)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch Self.unwrapInboundIn(data) {
            case .streamOpened(let header): self.perform(self.machine.streamOpened(header), context: context)
            case .element(let element): self.perform(self.machine.received(element), context: context)
            case .streamClosed: self.perform(self.machine.connectionClosed(), context: context)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.perform(self.machine.connectionClosed(), context: context)
            self.finish(.failure(TestTimeout(description: "connection closed without an outcome")))
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            self.finish(.failure(error))
            context.close(promise: nil)
        }

        private func perform(_ action: LegacyComponentNegotiationStateMachine.Action, context: ChannelHandlerContext) {
            switch action {
            case .none: break
            case .sendHeader: context.writeAndFlush(Self.wrapOutboundOut(.header(self.machine.outgoingHeader)), promise: nil)
            case .send(let element): context.writeAndFlush(Self.wrapOutboundOut(.element(element)), promise: nil)
            case .negotiated: self.finish(.success(self.machine.streamID))
            case .fail(let error):
                self.finish(.failure(error))
                context.close(promise: nil)
            }
        }

        private func finish(_ result: Result<String?, any Error>) {
            guard !self.done else { return }
            self.done = true
            self.promise.completeWith(result)
        }
    }
}

struct TestTimeout: Error, CustomStringConvertible {
    var description: String
}
