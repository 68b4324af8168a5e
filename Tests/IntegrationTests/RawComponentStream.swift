import Foundation
import NIOCore
import NIOPosix
import Synchronization
import XMPPCore
import XMPPSASL
import XMPPStream
import XMPPTLS

/// A scripted XEP-0225 component on a raw socket, for wire tests of the reference server:
/// STARTTLS (verified against the fixture's CA) and SASL (SCRAM, as offered) are done by
/// ``connect(port:)``; from the restarted stream on, every element the server writes
/// (features first) is handed to ``next(timeout:)`` as is, and the test writes whatever it
/// wants with ``send(_:)``: no SDK, no automatic acknowledgement.
final class RawComponentStream: Sendable {
    let channel: any Channel
    private let inbox: RawInbox

    private init(channel: any Channel, inbox: RawInbox) {
        self.channel = channel
        self.inbox = inbox
    }

    /// Connects as ``ScaleFixture/identity`` and authenticates.
    static func connect(port: Int) async throws -> RawComponentStream {
        let tlsContext = try OpenSSLContext(
            client: TLSClientConfiguration(
                serverName: ScaleFixture.domain, trustRoots: .caFile(ScaleFixture.shared.files.caCertificateFile)))
        let inbox = RawInbox()
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let ready = eventLoop.makePromise(of: Void.self)
        let channel = try await ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addXMLStreamHandler(contentNamespace: Namespace.client)
                    try channel.pipeline.syncOperations.addHandler(
                        RawComponentHandler(tlsContext: tlsContext, ready: ready, inbox: inbox))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        let stream = RawComponentStream(channel: channel, inbox: inbox)
        do {
            try await withDeadline(.seconds(20), "negotiation") { try await ready.futureResult.get() }
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return stream
    }

    /// Connects, authenticates and binds `hostname`; the features element is checked for bind.
    static func bound(_ hostname: String, port: Int) async throws -> RawComponentStream {
        let stream = try await Self.connect(port: port)
        let features = try await stream.next()
        guard features.name == QualifiedName(Namespace.stream, "features") else {
            throw IntegrationTestError("expected features, got \(features)")
        }
        let bind = Element(
            "bind", namespace: Namespace.component,
            children: [Element("hostname", namespace: Namespace.component, text: hostname)])
        try await stream.send(IQ(type: .set, to: try JID(ScaleFixture.domain), id: "bind-1", payload: bind).element)
        let answer = try await stream.next { $0["id"] == "bind-1" }
        guard answer["type"] == "result" else { throw IntegrationTestError("bind refused: \(answer)") }
        return stream
    }

    /// Writes an element.
    func send(_ element: Element) async throws {
        try await self.channel.writeAndFlush(XMLStreamFrame.element(element))
    }

    /// From now on, answers the server's `<r/>` at once with the count of stanzas received
    /// since `<enabled/>` (as a component that handled them would).
    func answerRequests() { self.inbox.setAnswering() }

    /// The stanzas this stream acknowledged (the first `h` received since `<enabled/>`).
    var acknowledged: [Element] { self.inbox.acknowledged }

    /// Enables XEP-0198 and returns the server's answer.
    func enableAcknowledgements() async throws -> Element {
        try await self.send(Element("enable", namespace: "urn:xmpp:sm:3"))
        return try await self.next { $0.name.namespace == "urn:xmpp:sm:3" }
    }

    /// The next element the server wrote (or the first matching one, the others staying queued).
    func next(
        timeout: Duration = .seconds(10), where predicate: @escaping @Sendable (Element) -> Bool = { _ in true }
    ) async throws -> Element {
        try await self.inbox.next(timeout: timeout, where: predicate)
    }

    /// Everything received and not taken yet.
    func drain() -> [Element] { self.inbox.drain() }

    /// Every element received so far, taken or not.
    var received: [Element] { self.inbox.all }

    /// Whether the server closed the stream or the connection.
    var isClosed: Bool { self.inbox.isClosed }

    /// Waits until the connection is closed.
    func waitClosed() async throws {
        let channel = self.channel
        try await withDeadline(.seconds(10), "close") { try await channel.closeFuture.get() }
    }

    /// Drops the connection as a killed process would: no `</stream:stream>`, no
    /// acknowledgement, a TCP reset (`SO_LINGER` 0) right behind the TLS alert.
    func kill() async {
        let channel = self.channel
        if let provider = channel as? any SocketOptionProvider {
            try? await provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        }
        try? await channel.close()
    }
}

/// Awaits `operation`, failing after `timeout`.
func withDeadline<T: Sendable>(
    _ timeout: Duration, _ what: String, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw IntegrationTestError("\(what) took more than \(timeout)")
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// What a ``RawComponentStream`` received.
private final class RawInbox: Sendable {
    private struct State {
        var all: [Element] = []
        var pending: [Element] = []
        var closed = false
        var answering = false
        /// Stanzas received since `<enabled/>`, and how many of them were acknowledged.
        var counted: [Element]?
        var acknowledgedCount = 0
    }

    private let state = Mutex(State())

    /// Records an element; returns the `<a/>` to send when it is an `<r/>` to answer.
    func deliver(_ element: Element) -> Element? {
        self.state.withLock { state in
            state.all.append(element)
            state.pending.append(element)
            let sm = "urn:xmpp:sm:3"
            if element.name == QualifiedName(sm, "enabled") {
                state.counted = []
            } else if ["message", "presence", "iq"].contains(element.name.localName), element.name.namespace != sm {
                state.counted?.append(element)
            } else if element.name == QualifiedName(sm, "r"), state.answering, let counted = state.counted {
                state.acknowledgedCount = counted.count
                return Element("a", namespace: sm, attributes: ["h": String(counted.count)])
            }
            return nil
        }
    }

    func setAnswering() { self.state.withLock { $0.answering = true } }

    var acknowledged: [Element] {
        self.state.withLock { Array(($0.counted ?? []).prefix($0.acknowledgedCount)) }
    }

    func close() { self.state.withLock { $0.closed = true } }

    var isClosed: Bool { self.state.withLock { $0.closed } }
    var all: [Element] { self.state.withLock { $0.all } }

    func drain() -> [Element] {
        self.state.withLock { state in
            defer { state.pending = [] }
            return state.pending
        }
    }

    func next(timeout: Duration, where predicate: (Element) -> Bool) async throws -> Element {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (found, closed) = self.state.withLock { state -> (Element?, Bool) in
                guard let index = state.pending.firstIndex(where: predicate) else { return (nil, state.closed) }
                return (state.pending.remove(at: index), false)
            }
            if let found { return found }
            if closed { throw IntegrationTestError("the stream closed; pending: \(self.state.withLock { $0.pending })") }
            guard ContinuousClock.now < deadline else {
                throw IntegrationTestError("nothing matching within \(timeout); pending: \(self.state.withLock { $0.pending })")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// STARTTLS, SASL and the stream restart; then every element goes to the inbox.
private final class RawComponentHandler: ChannelInboundHandler {
    typealias InboundIn = XMLStreamEvent
    typealias OutboundOut = XMLStreamFrame

    private enum Phase {
        case plain, proceeding, tls, authenticating, ready
    }

    private let tlsContext: OpenSSLContext
    private let ready: EventLoopPromise<Void>
    private let inbox: RawInbox
    private var phase = Phase.plain
    private var tlsSession: TLSSessionInfo?
    private var sasl: SASLClient?

    init(tlsContext: OpenSSLContext, ready: EventLoopPromise<Void>, inbox: RawInbox) {
        self.tlsContext = tlsContext
        self.ready = ready
        self.inbox = inbox
    }

    func channelActive(context: ChannelHandlerContext) {
        self.header(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.inbox.close()
        self.ready.fail(IntegrationTestError("closed during negotiation (\(self.phase))"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.ready.fail(error)
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let info) = event as? TLSEvent {
            self.tlsSession = info
            self.phase = .tls
            self.header(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .element(let element) = Self.unwrapInboundIn(data) else {
            if case .streamClosed = Self.unwrapInboundIn(data) { self.inbox.close() }
            return
        }
        do {
            try self.received(element, context: context)
        } catch {
            self.ready.fail(error)
            context.close(promise: nil)
        }
    }

    private func received(_ element: Element, context: ChannelHandlerContext) throws {
        switch self.phase {
        case .ready:
            if let answer = self.inbox.deliver(element) {
                context.writeAndFlush(Self.wrapOutboundOut(.element(answer)), promise: nil)
            }
        case .plain:
            guard element.firstChild("starttls", namespace: Namespace.tls) != nil else {
                throw IntegrationTestError("no STARTTLS: \(element)")
            }
            self.phase = .proceeding
            context.writeAndFlush(Self.wrapOutboundOut(.element(Element("starttls", namespace: Namespace.tls))), promise: nil)
        case .proceeding:
            guard element.name.localName == "proceed" else { throw IntegrationTestError("STARTTLS refused: \(element)") }
            context.triggerUserOutboundEvent(XMLStreamHandler.Restart.rejectingPendingInput, promise: nil)
            try context.pipeline.syncOperations.addHandler(OpenSSLHandler(context: self.tlsContext), position: .first)
        case .tls:
            guard let session = self.tlsSession else { throw IntegrationTestError("no TLS session") }
            var bindings: [SASLChannelBindingType: [UInt8]] = [:]
            if let exporter = session.tlsExporter { bindings[.tlsExporter] = exporter }
            if let endPoint = session.tlsServerEndPoint { bindings[.tlsServerEndPoint] = endPoint }
            let client = try SASLClient(
                configuration: .init(
                    authenticationIdentity: ScaleFixture.identity, password: ScaleFixture.password,
                    serverFQDN: ScaleFixture.domain),
                transport: SASLTransportSecurity(
                    isTLSActive: true, isTLS13: session.version == .v1_3, channelBindings: bindings))
            self.sasl = client
            self.phase = .authenticating
            context.writeAndFlush(Self.wrapOutboundOut(.element(try client.start(features: element))), promise: nil)
        case .authenticating:
            guard let sasl = self.sasl else { return }
            switch try sasl.receive(element) {
            case .send(let response):
                context.writeAndFlush(Self.wrapOutboundOut(.element(response)), promise: nil)
            case .succeeded:
                self.sasl = nil
                self.phase = .ready
                context.triggerUserOutboundEvent(XMLStreamHandler.Restart.carryingOverPendingInput, promise: nil)
                self.header(context: context)
                self.ready.succeed()
            }
        }
    }

    private func header(context: ChannelHandlerContext) {
        let header = StreamHeader(contentNamespace: Namespace.client, to: ScaleFixture.domain, version: "1.0")
        context.writeAndFlush(Self.wrapOutboundOut(.header(header)), promise: nil)
    }
}
