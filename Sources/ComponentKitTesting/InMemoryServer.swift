public import ComponentKit
public import Logging
public import NIOCore
public import NIOEmbedded
import Synchronization
public import XMPPCore
import XMPPStream

/// An XMPP server in memory, for tests of a whole ``/ComponentKit/ComponentConnection``
/// with no socket: each stream is a `NIOAsyncTestingChannel`, and the server speaks
/// XEP-0114 (stream header, handshake digest checked against ``secret``, stanzas) on it.
///
/// ```swift
/// let server = InMemoryServer(domain: "example.com")
/// let connection = server.makeConnection()
/// try connection.register("echo.example.com", handler: EchoComponent())
/// try await server.run(connection) {
///     let stream = try await server.stream(for: "echo.example.com")
///     try await stream.send(.message(Message(type: .chat, from: try JID("a@example.com/r"),
///                                            to: try JID("echo.example.com"), body: "hi")))
///     let reply = await stream.nextStanza()
///     // …
/// }
/// ```
///
/// Everything the connection does on a stream runs: negotiation, binding, routing to
/// handlers, the exactly-one-answer rule, the outbound queue. What is not emulated: TLS
/// and SASL (XEP-0225; the in-memory streams are XEP-0114 in cleartext, as on loopback)
/// and TCP backpressure. The connection's event loop is ``eventLoop``: time on it moves
/// only with ``advanceTime(by:)`` (IQ request timeouts, bind retries).
public final class InMemoryServer: ComponentChannelFactory {
    /// The server's XMPP domain.
    public let domain: String
    /// The XEP-0114 secret every hostname must prove.
    public let secret: String
    /// The event loop the connection and its channels run on.
    public let eventLoop: NIOAsyncTestingEventLoop

    private struct State {
        var streams: [String: InMemoryStream] = [:]
        var waiters: [String: [CheckedContinuation<InMemoryStream, any Error>]] = [:]
        var refused: Set<String> = []
        var nextID = 0
        var connects = 0
    }

    private let state = Mutex(State())

    /// Creates a server.
    /// - Parameters:
    ///   - domain: The server's domain.
    ///   - secret: The XEP-0114 secret.
    public init(domain: String = "example.com", secret: String = "in-memory-secret") {
        self.domain = domain
        self.secret = secret
        self.eventLoop = NIOAsyncTestingEventLoop()
    }

    /// A configuration that connects to this server: XEP-0114, no TLS (the streams never
    /// leave the process), keepalive off.
    /// - Parameter identity: The component's identity.
    public func configuration(identity: String = "component.example.com") -> ComponentConfiguration {
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: 5347, serverDomain: self.domain, identity: identity, password: Secret(self.secret))
        configuration.protocolMode = .xep0114
        configuration.tlsMode = .none
        configuration.keepalive.isEnabled = false
        return configuration
    }

    /// A connection to this server (on ``eventLoop``, through this factory).
    /// - Parameters:
    ///   - configuration: The configuration; ``configuration(identity:)`` by default.
    ///   - logger: The connection's logger; one that discards everything by default.
    public func makeConnection(
        configuration: ComponentConfiguration? = nil,
        logger: Logger = Logger(label: "InMemoryServer", factory: { _ in SwiftLogNoOpLogHandler() })
    ) -> ComponentConnection {
        ComponentConnection(
            configuration: configuration ?? self.configuration(), logger: logger, eventLoopGroup: self.eventLoop,
            channelFactory: self)
    }

    /// Refuses the handshake of a hostname from now on (`host-unknown`), as a server that
    /// does not serve it.
    /// - Parameter hostname: The hostname.
    public func refuse(_ hostname: String) {
        self.state.withLock { _ = $0.refused.insert(hostname) }
    }

    /// How many streams the connection has opened so far.
    public var connectionCount: Int {
        self.state.withLock { $0.connects }
    }

    /// Waits until a hostname's stream has completed its handshake, and returns it (at once
    /// if it already has).
    /// - Parameter hostname: The hostname.
    /// - Returns: The stream, to send stanzas to the component and read what it sends.
    public func stream(for hostname: String) async throws -> InMemoryStream {
        try await withCheckedThrowingContinuation { continuation in
            let ready = self.state.withLock { state -> InMemoryStream? in
                if let stream = state.streams[hostname], stream.isOpen {
                    return stream
                }
                state.waiters[hostname, default: []].append(continuation)
                return nil
            }
            if let ready {
                continuation.resume(returning: ready)
            }
        }
    }

    /// Runs a connection made by ``makeConnection(configuration:logger:)`` while `body`
    /// runs, then stops it (cancellation: the connection closes its streams).
    ///
    /// It also keeps the in-memory event loop turning: a `NIOAsyncTestingEventLoop` runs
    /// work submitted from outside at once, but work the loop submits to itself (a
    /// batched flush, a handler resuming) only when it is told to run.
    /// - Parameters:
    ///   - connection: The connection, with its hostnames registered.
    ///   - body: The test.
    /// - Returns: What `body` returns.
    @discardableResult
    public func run<T: Sendable>(
        _ connection: ComponentConnection, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await connection.run()
                return nil
            }
            group.addTask {
                while !Task.isCancelled {
                    await self.eventLoop.run()
                    try? await Task.sleep(for: .milliseconds(1))
                }
                return nil
            }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    /// Moves the event loop's clock forward, running what was scheduled until then.
    /// - Parameter amount: How far.
    public func advanceTime(by amount: TimeAmount) async {
        await self.eventLoop.advanceTime(by: amount)
    }

    /// Makes an in-memory channel and starts serving it.
    public func makeChannel(
        to target: ConnectTarget, on eventLoop: any EventLoop, connectTimeout: TimeAmount,
        initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        guard eventLoop === self.eventLoop else {
            throw ComponentError(
                .invalidConfiguration,
                "an InMemoryServer's channels live on its event loop: create the connection with eventLoopGroup: server.eventLoop"
            )
        }
        let channel = NIOAsyncTestingChannel(loop: self.eventLoop)
        try await self.eventLoop.flatSubmit { initializer(channel) }.get()
        self.state.withLock { $0.connects += 1 }
        // Ends when the channel closes (waitForOutboundWrite then throws).
        Task { await self.serve(channel) }
        try await channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: target.port)).get()
        return channel
    }

    // MARK: Serving a stream

    private func serve(_ channel: NIOAsyncTestingChannel) async {
        let parser = XMLStreamParser()
        var stream: InMemoryStream?
        var pendingHostname: String?
        var streamID = ""
        do {
            while true {
                let buffer = try await channel.waitForOutboundWrite(as: ByteBuffer.self)
                parser.feed(buffer.readableBytesView)
                while let event = try parser.nextEvent() {
                    switch event {
                    case .streamOpened(let header):
                        let hostname = header.to ?? ""
                        streamID = self.state.withLock { state in
                            state.nextID += 1
                            return "in-memory-\(state.nextID)"
                        }
                        pendingHostname = hostname
                        let refused = self.state.withLock { $0.refused.contains(hostname) }
                        try await Self.write(
                            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                                + "xmlns:stream='http://etherx.jabber.org/streams' from='\(hostname)' id='\(streamID)'>",
                            to: channel)
                        if refused || hostname.isEmpty {
                            try await Self.write(
                                "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
                                    + "</stream:stream>", to: channel)
                            try await channel.close()
                            return
                        }
                    case .element(let element) where stream == nil:
                        guard element.name.localName == "handshake", let hostname = pendingHostname,
                            element.text == ComponentHandshake.digest(streamID: streamID, secret: self.secret)
                        else {
                            try await Self.write(
                                "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
                                    + "</stream:stream>", to: channel)
                            try await channel.close()
                            return
                        }
                        try await Self.write("<handshake/>", to: channel)
                        let opened = InMemoryStream(hostname: hostname, channel: channel)
                        stream = opened
                        self.opened(opened)
                    case .element(let element):
                        stream?.received(element)
                    case .streamClosed:
                        try? await Self.write("</stream:stream>", to: channel)
                        try? await channel.close()
                        stream?.finish()
                        return
                    }
                }
            }
        } catch {
            // The channel closed (the component went away, or the test closed it).
            stream?.finish()
        }
    }

    private func opened(_ stream: InMemoryStream) {
        let waiters = self.state.withLock { state -> [CheckedContinuation<InMemoryStream, any Error>] in
            state.streams[stream.hostname] = stream
            return state.waiters.removeValue(forKey: stream.hostname) ?? []
        }
        for waiter in waiters {
            waiter.resume(returning: stream)
        }
    }

    static func write(_ text: String, to channel: NIOAsyncTestingChannel) async throws {
        try await channel.writeInbound(ByteBuffer(string: text))
    }
}

/// One hostname's stream on an ``InMemoryServer``, seen from the server: send stanzas to
/// the component, read the stanzas it sends.
public final class InMemoryStream: Sendable {
    /// The hostname the stream was opened for.
    public let hostname: String
    let channel: NIOAsyncTestingChannel

    private struct State {
        var received: [Stanza] = []
        var waiter: CheckedContinuation<Stanza?, Never>?
        var finished = false
        var enableRequested = false
        var acknowledged: [UInt64] = []
    }

    private let state = Mutex(State())

    init(hostname: String, channel: NIOAsyncTestingChannel) {
        self.hostname = hostname
        self.channel = channel
    }

    /// Whether the stream is still open.
    public var isOpen: Bool {
        self.state.withLock { !$0.finished }
    }

    /// Sends a stanza to the component, as the server routing it.
    /// - Parameter stanza: The stanza; its `to` should be under ``hostname``.
    public func send(_ stanza: Stanza) async throws {
        try await InMemoryServer.write(stanza.element.serialized(streamNamespace: Namespace.componentAccept), to: self.channel)
    }

    /// The next stanza the component sent on this stream.
    /// - Returns: The stanza, or `nil` once the stream is closed and everything was read.
    public func nextStanza() async -> Stanza? {
        await withCheckedContinuation { continuation in
            let ready = self.state.withLock { state -> Stanza?? in
                if !state.received.isEmpty { return .some(state.received.removeFirst()) }
                if state.finished { return .some(nil) }
                state.waiter = continuation
                return nil
            }
            if let ready {
                continuation.resume(returning: ready)
            }
        }
    }

    /// Ends the stream from the server's side (`</stream:stream>`, then closes the channel),
    /// as a server going away.
    public func close() async {
        try? await InMemoryServer.write("</stream:stream>", to: self.channel)
        try? await self.channel.close()
        self.finish()
    }

    /// Whether the component sent `<enable xmlns='urn:xmpp:sm:3'/>` on this stream (it does
    /// with ``/ComponentKit/ComponentConfiguration/legacyAcknowledgements``).
    public var enableRequested: Bool {
        self.state.withLock { $0.enableRequested }
    }

    /// The `h` of every `<a xmlns='urn:xmpp:sm:3'/>` the component sent, in order.
    public var acknowledgements: [UInt64] {
        self.state.withLock { $0.acknowledged }
    }

    /// Answers the component's `<enable/>` with `<enabled xmlns='urn:xmpp:sm:3'/>`, as a
    /// server whose XEP-0114 listener takes acknowledgements (the count covers every stanza
    /// written since the handshake).
    public func answerEnable() async throws {
        try await InMemoryServer.write("<enabled xmlns='\(Namespace.streamManagement)'/>", to: self.channel)
    }

    func received(_ element: Element) {
        if element.name.namespace == Namespace.streamManagement {
            self.state.withLock { state in
                switch element.name.localName {
                case "enable": state.enableRequested = true
                case "a": if let h = element["h"].flatMap(UInt64.init) { state.acknowledged.append(h) }
                default: break
                }
            }
            return
        }
        guard let stanza = Stanza(element) else { return }
        let waiter = self.state.withLock { state -> CheckedContinuation<Stanza?, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.received.append(stanza)
            return nil
        }
        waiter?.resume(returning: stanza)
    }

    func finish() {
        let waiter = self.state.withLock { state -> CheckedContinuation<Stanza?, Never>? in
            state.finished = true
            let waiter = state.waiter
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: nil)
    }
}
