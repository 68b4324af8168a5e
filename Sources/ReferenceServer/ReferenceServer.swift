public import Logging
public import NIOCore
public import NIOPosix
public import XMPPCore
import XMPPSASL
import XMPPStream
import XMPPTLS

/// A small XMPP server for tests and demos: the server side of XEP-0225 (STARTTLS, SASL,
/// hostname binding) and XEP-0114 (handshake), with routing between components and a set
/// of simulated users.
///
/// It is built on the project's own parts (`XMLStreamHandler`, `OpenSSLHandler`,
/// `SASLServer`) and follows the rules of the Prosody module the project targets
/// (see `ServerComponentNegotiationStateMachine` and the routing rules below). It is not a
/// general XMPP server: no s2s, no rosters, no persistence. Its client (c2s) port, off by
/// default, serves the accounts of ``ReferenceServerConfiguration/users`` over STARTTLS and
/// SASL; their stanzas are routed like injected ones (``ReferenceServerConfiguration/c2sPort``).
///
/// ## Routing
/// - A stanza for a bound hostname (by domain) goes to the stream that bound it.
/// - A stanza from a component must have a `from` under a hostname bound on *that* stream
///   (else `invalid-from`, or `improper-addressing` without `from`, and the stream ends),
///   and a `to` (else a `bad-request` error back).
/// - A stanza for a component hostname (one some identity may bind, or with a XEP-0114
///   secret) that is not bound bounces with `service-unavailable`: back to the component,
///   or to ``userStanzas()`` for injected stanzas. IQ results and errors never bounce.
/// - An XEP-0199 ping to the server's domain is answered by the server.
/// - A stanza for a configured user (``ReferenceServerConfiguration/users``) goes to their
///   client session(s), or bounces while they are offline (RFC 6121 §8.5).
/// - Anything else is for the server's simulated users: ``userStanzas()``.
/// - Two streams cannot bind the same domain, whatever the resource (`conflict`).
///
/// ```swift
/// let server = try await ReferenceServer.start(configuration: configuration)
/// defer { Task { await server.stop() } }
/// try await server.waitUntilBound("chat.example.test")
/// try server.inject(Message(from: user, to: room, body: "hi").element)
/// for await stanza in server.userStanzas() { … }
/// ```
public final class ReferenceServer: Sendable {
    /// The configuration the server runs with.
    public let configuration: ReferenceServerConfiguration
    /// The XEP-0225 port actually listened on.
    public let port: Int
    /// The XEP-0114 port actually listened on, or `nil` when XEP-0114 is off.
    public let legacyPort: Int?
    /// The client (c2s) port actually listened on, or `nil` when it is off
    /// (``ReferenceServerConfiguration/c2sPort``).
    public let c2sPort: Int?

    let router: ComponentRouter
    private let listeners: [any Channel]
    private let logger: Logger

    private init(
        configuration: ReferenceServerConfiguration, router: ComponentRouter, listeners: [any Channel], port: Int,
        legacyPort: Int?, c2sPort: Int? = nil, logger: Logger
    ) {
        self.c2sPort = c2sPort
        self.configuration = configuration
        self.router = router
        self.listeners = listeners
        self.port = port
        self.legacyPort = legacyPort
        self.logger = logger
    }

    /// Starts listening.
    /// - Parameters:
    ///   - configuration: The server settings.
    ///   - group: The event loops to run on; the shared singleton by default.
    ///   - logger: Where to log (debug level for stream events); silent by default.
    /// - Returns: The running server; call ``stop()`` when done.
    /// - Throws: ``ReferenceServerError`` for an unusable configuration, `TLSError` for an
    ///   unreadable certificate, or the bind error.
    public static func start(
        configuration: ReferenceServerConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "ReferenceServer", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws -> ReferenceServer {
        if configuration.requireTLS, configuration.tls == nil {
            throw ReferenceServerError(.configuration, "requireTLS is set but no TLS certificate is configured")
        }
        let tlsContext = try configuration.tls.map { configuration throws(TLSError) in
            try OpenSSLContext(server: configuration)
        }
        var baseMechanisms: [String] = []
        for mechanism in configuration.sasl.mechanisms {
            let base =
                mechanism.uppercased().hasSuffix("-PLUS") ? String(mechanism.uppercased().dropLast(5)) : mechanism.uppercased()
            if !baseMechanisms.contains(base) { baseMechanisms.append(base) }
        }
        let sasl = SASLServer.Configuration(
            sasldbPath: configuration.sasl.sasldbPath,
            serverFQDN: configuration.domain,
            realm: configuration.sasl.realm ?? configuration.domain,
            mechanisms: baseMechanisms,
            scramIterationCount: configuration.sasl.scramIterationCount
        )
        let router = ComponentRouter(configuration: configuration)
        let timeout = TimeAmount.nanoseconds(
            configuration.authenticationTimeout.components.seconds * 1_000_000_000
                + configuration.authenticationTimeout.components.attoseconds / 1_000_000_000)
        var negotiation = ServerComponentNegotiationStateMachine.Configuration(
            serverDomain: configuration.domain,
            tlsAvailable: tlsContext != nil,
            requireTLS: configuration.requireTLS,
            maxAuthenticationFailures: configuration.maxAuthenticationFailures
        )
        negotiation.seeOtherHost = configuration.seeOtherHost
        negotiation.seeOtherHostBeforeTLS = configuration.seeOtherHostBeforeTLS
        let machineConfiguration = negotiation
        let limits = configuration.streamLimits

        let modern = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addXMLStreamHandler(contentNamespace: Namespace.client, limits: limits, authenticated: false)
                    try sync.addHandler(
                        ServerComponentStreamHandler(
                            machine: ServerComponentNegotiationStateMachine(configuration: machineConfiguration),
                            router: router, tlsContext: tlsContext, saslConfiguration: sasl,
                            externalIdentities: configuration.sasl.externalIdentities,
                            authenticationTimeout: timeout, logger: logger))
                }
            }
            .bind(host: configuration.host, port: configuration.port).get()
        var listeners: [any Channel] = [modern]
        var legacyPort: Int?
        if let requested = configuration.legacyPort {
            do {
                let legacy = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            let sync = channel.pipeline.syncOperations
                            try sync.addXMLStreamHandler(
                                contentNamespace: Namespace.componentAccept, limits: limits, authenticated: false)
                            try sync.addHandler(
                                ServerLegacyComponentStreamHandler(
                                    machine: ServerLegacyComponentNegotiationStateMachine(secrets: {
                                        configuration.legacySecret(for: $0)
                                    }),
                                    router: router, authenticationTimeout: timeout, logger: logger))
                        }
                    }
                    .bind(host: configuration.host, port: requested).get()
                listeners.append(legacy)
                legacyPort = legacy.localAddress?.port
            } catch {
                try? await modern.close()
                throw error
            }
        }
        var c2sPort: Int?
        do {
            if let c2s = try await C2SListener.start(
                configuration: configuration, group: group, router: router, tlsContext: tlsContext, logger: logger)
            {
                listeners.append(c2s)
                c2sPort = c2s.localAddress?.port
            }
        } catch {
            for listener in listeners { try? await listener.close() }
            throw error
        }
        let port = modern.localAddress?.port ?? configuration.port
        logger.info(
            "reference server listening",
            metadata: [
                "server.domain": "\(configuration.domain)", "server.port": "\(port)",
                "server.legacy_port": "\(legacyPort.map(String.init) ?? "off")",
            ])
        return ReferenceServer(
            configuration: configuration, router: router, listeners: listeners, port: port, legacyPort: legacyPort,
            c2sPort: c2sPort, logger: logger)
    }

    // MARK: Test and demo API

    /// Sends a stanza as if a user of the server had sent it.
    ///
    /// It goes to the component that bound the `to` domain, bounces to ``userStanzas()``
    /// with `service-unavailable` if that is an unbound component hostname, and otherwise
    /// goes to ``userStanzas()`` as is.
    /// - Parameter element: A `message`, `presence` or `iq` in `jabber:client` whose `from`
    ///   is a user JID (with a localpart) at the server domain and which has a `to`.
    /// - Throws: ``ReferenceServerError`` of kind ``ReferenceServerError/Kind/invalidInjection``.
    public func inject(_ element: Element) throws {
        try self.router.inject(element)
    }

    /// What components sent to the server's users, and bounces of injected stanzas, from now on.
    ///
    /// Each call returns a new stream that sees every later stanza; it ends at ``stop()``.
    public func userStanzas() -> AsyncStream<Element> {
        self.router.userStanzas()
    }

    /// Hostname bindings and unbindings from now on; ends at ``stop()``.
    public func hostnameEvents() -> AsyncStream<HostnameEvent> {
        self.router.hostnameEvents()
    }

    /// How many XEP-0199 pings from components the server has answered (their keepalive at
    /// work), so that a test can wait for pings instead of for time to pass.
    public var answeredPings: Int {
        self.router.answeredPings
    }

    /// The hostnames bound right now (as answered to their streams), sorted.
    public var boundHostnames: [String] {
        self.router.boundHostnames
    }

    /// Waits until a hostname is bound.
    /// - Parameters:
    ///   - hostname: The hostname as bound (`domain` or `domain/resource`).
    ///   - timeout: How long to wait.
    /// - Throws: ``ReferenceServerError`` of kind ``ReferenceServerError/Kind/timeout``.
    public func waitUntilBound(_ hostname: String, timeout: Duration = .seconds(10)) async throws {
        try await self.wait(timeout: timeout, "\(hostname) to be bound") { $0.contains(hostname.lowercased()) }
    }

    /// Waits until a hostname is no longer bound.
    /// - Parameters:
    ///   - hostname: The hostname as bound.
    ///   - timeout: How long to wait.
    /// - Throws: ``ReferenceServerError`` of kind ``ReferenceServerError/Kind/timeout``.
    public func waitUntilUnbound(_ hostname: String, timeout: Duration = .seconds(10)) async throws {
        try await self.wait(timeout: timeout, "\(hostname) to be unbound") { !$0.contains(hostname.lowercased()) }
    }

    /// Drops every connection abruptly (no stream close, no TLS `close_notify`), as a crash
    /// or network failure would; the listeners stay open.
    public func disconnectComponents() {
        for channel in self.router.allConnections {
            channel.close(promise: nil)
        }
    }

    /// Ends every authenticated component stream with a stream error (e.g. `system-shutdown`)
    /// and closes it.
    /// - Parameter error: The stream error to send.
    public func sendStreamError(_ error: StreamError) {
        for channel in self.router.componentChannels {
            channel.write(XMLStreamFrame.element(error.element), promise: nil)
            channel.writeAndFlush(XMLStreamFrame.close).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    // MARK: Fault injection (resilience tests)

    /// Sends an element to the component stream that bound `hostname`, as the server
    /// itself: a missing `from` becomes the server's domain (e.g. a XEP-0051 transfer IQ).
    ///
    /// The component's answers addressed to the server's domain reach ``userStanzas()``.
    /// - Parameters:
    ///   - element: A stanza in `jabber:client`.
    ///   - hostname: A hostname bound on the stream to write to (any resource).
    /// - Throws: ``ReferenceServerError`` of kind ``ReferenceServerError/Kind/invalidInjection``
    ///   when no stream has bound `hostname`.
    public func send(_ element: Element, toComponentBound hostname: String) throws {
        guard let channel = self.router.channel(boundTo: hostname) else {
            throw ReferenceServerError(.invalidInjection, "no component stream has bound \(hostname)")
        }
        var element = element
        if element["from"] == nil {
            element["from"] = self.configuration.domain
        }
        channel.writeAndFlush(XMLStreamFrame.element(element), promise: nil)
    }

    /// Simulates half-open links: while paused, the component streams open now deliver
    /// nothing to the server (what the components send is dropped, so the server answers
    /// nothing, not even pings) and the server does not notice a component closing its side
    /// (as if the FIN were lost): nothing is closed, the streams keep their hostnames.
    /// Resuming is the server finally noticing: the paused streams are closed and their
    /// hostnames released. Streams opened while paused are not affected.
    /// - Parameter paused: `true` to break the links silently, `false` to notice and close them.
    public func setReadingPaused(_ paused: Bool) async {
        for channel in self.router.componentChannels {
            let done = channel.eventLoop.submit {
                let sync = channel.pipeline.syncOperations
                let handler: HalfOpenLinkHandler
                if let existing = try? sync.handler(type: HalfOpenLinkHandler.self) {
                    handler = existing
                } else {
                    guard paused else { return }
                    handler = HalfOpenLinkHandler()
                    try sync.addHandler(handler, position: .first)
                }
                let context = try sync.context(handler: handler)
                if paused {
                    try handler.pause(context: context)
                } else {
                    handler.resume(context: context)
                }
            }
            try? await done.get()
        }
    }

    /// Makes the server's simulated users answer the IQ requests components send them:
    /// `handler` gets each `get`/`set` routed to the users (it still reaches
    /// ``userStanzas()`` too) and returns the answer to route back as if that user had
    /// sent it (its `from` must be a user JID at the server domain), or `nil` for none.
    /// - Parameter handler: The answer for each request; `nil` turns answering off.
    public func respondToUserIQs(_ handler: (@Sendable (IQ) -> Element?)?) {
        self.router.setUserIQResponder(handler)
    }

    /// Makes the server write stanzas to a hostname right behind its bind result, in the
    /// same write, as a busy server may (its users' traffic was waiting for the hostname).
    /// The stanzas are written as given (they are not routed); `nil` turns it off.
    /// - Parameter burst: The stanzas to write after binding a hostname (as bound), or `nil`.
    public func setBurstAfterBind(_ burst: (@Sendable (_ hostname: String) -> [Element])?) {
        self.router.setBurstAfterBind(burst)
    }

    /// Stops as a crashed process would: closes the listeners and drops every connection
    /// without `</stream:stream>` or TLS `close_notify`, then ends the subscribers' streams.
    ///
    /// The listeners use `SO_REUSEADDR`: a new server can be started on the same port at
    /// once (set ``ReferenceServerConfiguration/port`` to this server's ``port``).
    public func kill() async {
        for listener in self.listeners {
            try? await listener.close()
            // Its close callbacks (the client port's sasldb removal) have run once this returns.
            _ = try? await listener.closeFuture.get()
        }
        let connections = self.router.allConnections
        for channel in connections {
            channel.close(promise: nil)
        }
        for channel in connections {
            _ = try? await channel.closeFuture.get()
        }
        self.router.finishSubscribers()
        self.logger.info("reference server killed", metadata: ["server.port": "\(self.port)"])
    }

    /// Stops gracefully: closes the listeners, sends `</stream:stream>` on every component
    /// stream, closes every connection and ends the subscribers' streams.
    public func stop() async {
        for listener in self.listeners {
            try? await listener.close()
            // Its close callbacks (the client port's sasldb removal) have run once this returns.
            _ = try? await listener.closeFuture.get()
        }
        let components = self.router.componentChannels
        let others = self.router.allConnections.filter { channel in !components.contains { $0 === channel } }
        for channel in components {
            let closed = channel.writeAndFlush(XMLStreamFrame.close).flatMap { channel.close() }
            _ = try? await closed.get()
        }
        for channel in others {
            try? await channel.close()
        }
        for channel in components + others {
            _ = try? await channel.closeFuture.get()
        }
        self.router.finishSubscribers()
        self.logger.info("reference server stopped", metadata: ["server.port": "\(self.port)"])
    }

    private func wait(timeout: Duration, _ what: String, until condition: ([String]) -> Bool) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !condition(self.boundHostnames) {
            guard clock.now < deadline else {
                throw ReferenceServerError(.timeout, "timed out waiting for \(what); bound: \(self.boundHostnames)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
