import Foundation
import Logging
import NIOCore
import NIOPosix
import ReferenceServer
import XMPPCore
import XMPPSASL
import XMPPStream
import XMPPTLS

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A CA, a server certificate for example.test and a sasldb with one identity, made once.
struct Fixture: Sendable {
    static let domain = "example.test"
    static let identity = "component.example.test"
    static let password = "s3cret-pässword"
    static let legacySecret = "legacy-secret"

    let directory: String
    let files: DevelopmentCertificate.Files
    let sasldb: String

    static let shared: Fixture = {
        do {
            let directory = NSTemporaryDirectory() + "refserver-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            atexit { try? FileManager.default.removeItem(atPath: Fixture.shared.directory) }
            let files = try DevelopmentCertificateAuthority().issue(dnsNames: [domain], ipAddresses: ["127.0.0.1"])
                .write(toDirectory: directory, name: "server")
            let sasldb = directory + "/sasldb"
            try SASLDatabase.setPassword(path: sasldb, user: identity, realm: domain, password: password)
            return Fixture(directory: directory, files: files, sasldb: sasldb)
        } catch {
            fatalError("cannot create the test fixture: \(error)")
        }
    }()

    var configuration: ReferenceServerConfiguration {
        var configuration = ReferenceServerConfiguration(
            domain: Self.domain, tls: self.files.serverConfiguration,
            sasl: .init(sasldbPath: self.sasldb, scramIterationCount: nil))
        configuration.legacyPort = 0
        configuration.allowedHostnames = [Self.identity: ["a.example.test", "b.example.test", "*.c.example.test"]]
        configuration.legacySecrets = ["legacy.example.test": Self.legacySecret, "legacy2.example.test": Self.legacySecret]
        configuration.authenticationTimeout = .seconds(10)
        return configuration
    }
}

/// Runs `body` with a started server and always stops it.
func withServer<T: Sendable>(
    _ configure: (inout ReferenceServerConfiguration) -> Void = { _ in },
    _ body: (ReferenceServer) async throws -> T
) async throws -> T {
    var configuration = Fixture.shared.configuration
    configure(&configuration)
    var logger = Logger(label: "refserver")
    logger.logLevel = ProcessInfo.processInfo.environment["REFSERVER_DEBUG"] != nil ? .trace : .critical
    let server = try await ReferenceServer.start(configuration: configuration, logger: logger)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

/// Awaits `operation`, failing after `timeout`.
func withTimeout<T: Sendable>(_ timeout: Duration = .seconds(10), _ operation: @escaping @Sendable () async throws -> T)
    async throws -> T
{
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw TestFailure("timed out after \(timeout)")
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// A scripted plaintext client: XMLStreamHandler plus a collector of events.
final class RawClient: Sendable {
    let channel: any Channel
    let events: AsyncStream<XMLStreamEvent>

    private init(channel: any Channel, events: AsyncStream<XMLStreamEvent>) {
        self.channel = channel
        self.events = events
    }

    static func connect(port: Int, namespace: String) async throws -> RawClient {
        let (events, continuation) = AsyncStream<XMLStreamEvent>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addXMLStreamHandler(contentNamespace: namespace)
                    try channel.pipeline.syncOperations.addHandler(Collector(continuation))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawClient(channel: channel, events: events)
    }

    func send(_ frame: XMLStreamFrame) async throws {
        try await self.channel.writeAndFlush(frame)
    }

    /// The next event, or `nil` when the connection closed; fails after 10 s.
    func next() async throws -> XMLStreamEvent? {
        let events = self.events
        return try await withTimeout {
            var iterator = events.makeAsyncIterator()
            return await iterator.next()
        }
    }

    /// The next element.
    func nextElement() async throws -> Element {
        guard case .element(let element)? = try await self.next() else { throw TestFailure("expected an element") }
        return element
    }

    /// Waits until the connection is closed.
    func waitClosed() async throws {
        let channel = self.channel
        try await withTimeout { try await channel.closeFuture.get() }
    }

    func close() {
        self.channel.close(promise: nil)
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = XMLStreamEvent
        let continuation: AsyncStream<XMLStreamEvent>.Continuation
        init(_ continuation: AsyncStream<XMLStreamEvent>.Continuation) { self.continuation = continuation }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.continuation.yield(Self.unwrapInboundIn(data))
        }
        func channelInactive(context: ChannelHandlerContext) {
            self.continuation.finish()
            context.fireChannelInactive()
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {}
    }
}

extension RawClient {
    /// Opens a XEP-0114 stream for `hostname` and sends the handshake with `secret`.
    /// - Returns: What the server answered after the handshake (or the header error).
    func legacyHandshake(hostname: String, secret: String) async throws -> Element {
        try await self.send(.header(StreamHeader(contentNamespace: Namespace.componentAccept, to: hostname, version: nil)))
        guard case .streamOpened(let header)? = try await self.next() else { throw TestFailure("no header") }
        guard let id = header.id else { throw TestFailure("no stream id") }
        if header.from != hostname { return try await self.nextElement() }
        try await self.send(
            .element(
                Element(
                    "handshake", namespace: Namespace.componentAccept,
                    text: ComponentHandshake.digest(streamID: id, secret: secret))))
        return try await self.nextElement()
    }
}

extension Element {
    /// The condition of a `<stream:error/>`, or `nil`.
    var streamErrorCondition: StreamError.Condition? {
        StreamError(element: self)?.condition
    }
}

/// Prints when REFSERVER_DEBUG is set.
func debugLog(_ message: @autoclosure () -> String) {
    if ProcessInfo.processInfo.environment["REFSERVER_DEBUG"] != nil {
        FileHandle.standardError.write(Data("[test] \(message())\n".utf8))
    }
}
