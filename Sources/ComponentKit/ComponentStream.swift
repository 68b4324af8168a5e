import Logging
import NIOCore
import NIOPosix
import Synchronization
import XMPPCore
import XMPPSASL
import XMPPStream
import XMPPTLS

#if canImport(Glibc)
import Glibc
#endif

/// One negotiated TCP stream to the server: the XEP-0225 stream that carries every
/// hostname, or one XEP-0114 stream for one hostname.
final class ComponentStream: Sendable {
    /// What to negotiate.
    enum Kind: Sendable {
        case xep0225(allowsLegacyFallback: Bool)
        case xep0114(hostname: String)
    }

    /// How connecting ended, when it did not fail.
    enum Outcome: Sendable {
        case connected(ComponentStream)
        case fallBackToLegacy(reason: String)
    }

    let channel: any Channel
    let negotiated: NegotiatedStream
    /// The server's XMPP domain on this stream (the configured one, or a transfer's `<domain/>`).
    let serverDomain: String
    let kind: Kind
    /// When the stream last read anything (for liveness checks).
    let activity: StreamActivity
    /// XEP-0198 acknowledgements of what this stream delivered (XEP-0225 only).
    let acknowledgements: StreamAcknowledgements
    private let router: StanzaRouterHandlerBox

    private init(
        channel: any Channel, negotiated: NegotiatedStream, kind: Kind, activity: StreamActivity,
        router: StanzaRouterHandlerBox, serverDomain: String, acknowledgements: StreamAcknowledgements
    ) {
        self.acknowledgements = acknowledgements
        self.serverDomain = serverDomain
        self.channel = channel
        self.negotiated = negotiated
        self.kind = kind
        self.activity = activity
        self.router = router
    }

    /// The stream error the server ended the stream with, if any.
    var lastStreamError: StreamError? {
        self.router.lastStreamError
    }

    var info: ConnectionInfo {
        ConnectionInfo(
            protocolMode: self.negotiated.componentProtocol == .xep0225 ? .xep0225 : .xep0114,
            tlsVersion: self.negotiated.tls.map { "\($0.version)" },
            tlsCipherSuite: self.negotiated.tls?.cipherSuite,
            saslMechanism: self.negotiated.sasl?.mechanism,
            streamID: self.negotiated.streamID)
    }

    var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }

    func write(_ element: Element) -> EventLoopFuture<Void> {
        self.channel.writeAndFlush(XMLStreamFrame.element(element))
    }

    /// Whether a flush is scheduled for what was written since the last one.
    private let flushScheduled = Atomic<Bool>(false)

    /// Writes an element now and flushes it with everything else written in the same
    /// pass of the event loop: one flush (one `write(2)`/`writev(2)`, one TLS record run)
    /// per batch of stanzas instead of one per stanza. Call on the channel's event loop.
    func writeBatched(_ element: Element, promise: EventLoopPromise<Void>?) {
        self.channel.write(XMLStreamFrame.element(element), promise: promise)
        guard !self.flushScheduled.exchange(true, ordering: .relaxed) else { return }
        let channel = self.channel
        channel.eventLoop.execute {
            self.flushScheduled.store(false, ordering: .relaxed)
            channel.flush()
        }
    }

    /// Whether we sent `</stream:stream>`: nothing more may be written.
    private let closeSent = Atomic<Bool>(false)

    /// Whether stanzas may be written: the channel is open and we have not closed the stream.
    var isWritable: Bool {
        self.channel.isActive && !self.closeSent.load(ordering: .acquiring)
    }

    /// Sends `</stream:stream>`, waits for the server to close its side (bounded), then closes.
    /// With acknowledgements on, an `<a/>` first tells the server what was handled, so that
    /// it routes again only the rest.
    func closeGracefully(timeout: TimeAmount = .seconds(5)) async {
        let channel = self.channel
        let closed = channel.closeFuture
        self.acknowledgements.acknowledgeBeforeClosing()
        self.closeSent.store(true, ordering: .releasing)
        channel.writeAndFlush(XMLStreamFrame.close, promise: nil)
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            channel.close(promise: nil)
        }
        try? await closed.get()
        timer.cancel()
    }

    /// Opens a TCP connection, runs the negotiation and returns the ready stream.
    static func connect(
        configuration: ComponentConfiguration,
        target: ConnectTarget? = nil,
        kind: Kind,
        group: any EventLoop,
        channelFactory: any ComponentChannelFactory = TCPChannelFactory(),
        router: any StanzaRouting,
        logger: Logger,
        attempt: ConnectAttempt = ConnectAttempt()
    ) async throws -> Outcome {
        // XEP-0051 <domain/>: the new server's domain is the stream's `to`, the SASL
        // service name and the name its certificate must carry (verified as ever).
        let configuration =
            target?.domain.map { domain in
                var retargeted = configuration
                retargeted.serverDomain = domain
                retargeted.tlsServerName = nil
                return retargeted
            } ?? configuration
        try configuration.validate()
        // The address actually dialled (a transfer or see-other-host target included) decides
        // whether cleartext is allowed, not only the configured one.
        let dialled = target?.host ?? configuration.host
        try Self.checkInsecurePlaintextPolicy(configuration: configuration, kind: kind, host: dialled)
        let tlsContext: OpenSSLContext?
        if configuration.tlsMode == .none || (configuration.tlsMode == .startTLS && Self.isLegacy(kind)) {
            // XEP-0114 has no STARTTLS: a legacy stream is direct TLS or plaintext.
            tlsContext = nil
        } else {
            tlsContext = try OpenSSLContext(client: configuration.tlsClientConfiguration)
        }
        try Self.checkPlaintextHandshakePolicy(configuration: configuration, kind: kind, host: dialled)

        let outcomePromise = group.any().makePromise(of: NegotiationOutcome.self)
        let contentNamespace: String
        switch kind {
        case .xep0225: contentNamespace = Namespace.client
        case .xep0114: contentNamespace = Namespace.componentAccept
        }
        let limits = configuration.streamLimits
        let serverName = configuration.tlsServerName ?? configuration.serverDomain
        let direct = configuration.tlsMode == .direct
        let machineTLS: ComponentNegotiationStateMachine.TLSPolicy
        switch configuration.tlsMode {
        case .startTLS: machineTLS = .startTLS
        case .direct: machineTLS = .direct
        case .none: machineTLS = .none
        }
        var saslSettings = SASLClient.Configuration(
            authenticationIdentity: configuration.identity,
            password: configuration.password.value,
            serverFQDN: configuration.serverDomain,
            allowedMechanisms: configuration.saslMechanisms,
            hasClientCertificate: configuration.clientCertificateFile != nil)
        saslSettings.requireChannelBinding = configuration.requireChannelBinding
        let sasl = saslSettings

        let connectTimeout = TimeAmount.nanoseconds(Int64(configuration.connectTimeout.components.seconds) * 1_000_000_000)
        let target = target ?? ConnectTarget(host: configuration.host, port: configuration.port)
        let activity = StreamActivity()
        let routerBox = StanzaRouterHandlerBox()
        let acknowledgements = StreamAcknowledgements()
        let channel: any Channel
        do {
            channel = try await channelFactory.makeChannel(
                to: target, on: group, connectTimeout: connectTimeout
            ) { channel in
                attempt.started(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try Self.configurePipeline(
                        channel: channel, direct: direct, tlsContext: tlsContext, serverName: serverName,
                        contentNamespace: contentNamespace, limits: limits, kind: kind, configuration: configuration,
                        machineTLS: machineTLS, sasl: sasl, router: router, outcomePromise: outcomePromise,
                        activity: activity, routerBox: routerBox, acknowledgements: acknowledgements)
                }
            }
        } catch {
            outcomePromise.fail(error)
            if attempt.isAbandoned { throw CancellationError() }
            throw ComponentError(.notConnected, "cannot connect to \(target): \(Self.describeConnectError(error))")
        }

        let timeout = channel.eventLoop.scheduleTask(in: connectTimeout) {
            outcomePromise.fail(
                NegotiationError(.closedDuringNegotiation, "negotiation did not finish within \(configuration.connectTimeout)"))
            channel.close(promise: nil)
        }
        defer { timeout.cancel() }
        do {
            switch try await outcomePromise.futureResult.get() {
            case .negotiated(let negotiated):
                let stream = ComponentStream(
                    channel: channel, negotiated: negotiated, kind: kind, activity: activity, router: routerBox,
                    serverDomain: configuration.serverDomain, acknowledgements: acknowledgements)
                // Before the first bind: every stanza the server writes after <enabled/> counts.
                if configuration.acknowledgements,
                    negotiated.features?.firstChild("sm", namespace: Namespace.streamManagement) != nil
                {
                    acknowledgements.enable()
                    channel.closeFuture.whenComplete { _ in acknowledgements.streamEnded() }
                } else if case .xep0114 = kind, configuration.legacyAcknowledgements {
                    acknowledgements.sendEnable()
                    channel.closeFuture.whenComplete { _ in acknowledgements.streamEnded() }
                }
                logger.info(
                    "component stream negotiated",
                    metadata: [
                        "component.protocol": "\(negotiated.componentProtocol.rawValue)",
                        "tls.version": "\(negotiated.tls.map { "\($0.version)" } ?? "none")",
                        "sasl.mechanism": "\(negotiated.sasl?.mechanism ?? "none")",
                    ])
                return .connected(stream)
            case .fallBackToLegacy(let reason):
                try? await channel.close()
                return .fallBackToLegacy(reason: reason)
            }
        } catch {
            try? await channel.close()
            throw error
        }
    }

    private static func configurePipeline(
        channel: any Channel, direct: Bool, tlsContext: OpenSSLContext?, serverName: String,
        contentNamespace: String, limits: XMLStreamLimits, kind: Kind, configuration: ComponentConfiguration,
        machineTLS: ComponentNegotiationStateMachine.TLSPolicy, sasl: SASLClient.Configuration,
        router: any StanzaRouting, outcomePromise: EventLoopPromise<NegotiationOutcome>,
        activity: StreamActivity, routerBox: StanzaRouterHandlerBox, acknowledgements: StreamAcknowledgements
    ) throws {
        acknowledgements.attach(channel)
        if case .xep0114 = kind, configuration.legacyAcknowledgements {
            // Counts from the first stanza after <handshake/>, as the server does.
            acknowledgements.armForLegacyStream()
        }
        let operations = channel.pipeline.syncOperations
        if direct, let tlsContext {
            try operations.addHandler(OpenSSLHandler(context: tlsContext, serverName: serverName))
        }
        // Small stanzas until negotiation succeeds (the negotiation handler then sends
        // XMLStreamHandler.Authenticated).
        try operations.addHandler(XMLStreamHandler(contentNamespace: contentNamespace, limits: limits, authenticated: false))
        let mode: ComponentNegotiationHandler.Mode
        switch kind {
        case .xep0225(let allowsFallback):
            let machine = ComponentNegotiationStateMachine(
                configuration: .init(
                    serverDomain: configuration.serverDomain,
                    defaultHostname: configuration.identity,
                    tls: machineTLS,
                    allowsLegacyFallback: allowsFallback))
            mode = .xep0225(machine, sasl: sasl, tls: tlsContext, tlsServerName: serverName)
        case .xep0114(let hostname):
            mode = .xep0114(
                LegacyComponentNegotiationStateMachine(
                    hostname: hostname, secret: try configuration.secret(for: hostname).value))
        }
        let negotiation = ComponentNegotiationHandler(mode: mode, eventLoop: channel.eventLoop)
        negotiation.outcome.cascade(to: outcomePromise)
        try operations.addHandler(negotiation)
        try operations.addHandler(
            StanzaRouterHandler(router: router, activity: activity, box: routerBox, acknowledgements: acknowledgements))
    }

    /// The XEP-0114 handshake digest can be attacked offline: never send it in cleartext to
    /// anything but loopback unless the configuration says so in words, and never at all when
    /// the configuration asks for TLS (`starttls`: XEP-0114 has no STARTTLS).
    static func checkPlaintextHandshakePolicy(
        configuration: ComponentConfiguration, kind: Kind, host: String? = nil
    ) throws {
        let host = host ?? configuration.host
        guard case .xep0114(let hostname) = kind, configuration.tlsMode != .direct else { return }
        if configuration.tlsMode == .startTLS {
            throw NegotiationError(
                .tlsNotOffered,
                "refusing to send the XEP-0114 handshake for \(hostname) in cleartext: tls = \"starttls\" asks for TLS, "
                    + "and XEP-0114 has no STARTTLS; use tls = \"direct\" (XEP-0114 over TLS), protocol = \"xep0225\", "
                    + "or tls = \"none\" on loopback")
        }
        guard !configuration.allowPlaintextHandshake, !Self.isLoopback(host) else { return }
        throw NegotiationError(
            .tlsNotOffered,
            "refusing to send the XEP-0114 handshake for \(hostname) over plaintext to \(host): "
                + "use tls = \"direct\", or set allow_plaintext_handshake = true if the network is trusted")
    }

    /// XEP-0225 without TLS runs SASL (and a fake server can ask SCRAM for a cheap proof) and
    /// every stanza in cleartext: only to loopback, or with an explicit opt-in.
    static func checkInsecurePlaintextPolicy(
        configuration: ComponentConfiguration, kind: Kind, host: String? = nil
    ) throws {
        let host = host ?? configuration.host
        guard case .xep0225 = kind, configuration.tlsMode == .none, !configuration.allowInsecurePlaintext,
            !Self.isLoopback(host)
        else { return }
        throw NegotiationError(
            .tlsNotOffered,
            "refusing XEP-0225 without TLS to \(host), which is not a loopback address: SASL and every "
                + "stanza would travel in cleartext; use tls = \"starttls\" (or \"direct\"), or set "
                + "allow_insecure_plaintext = true (allowInsecurePlaintext) if the network is trusted")
    }

    /// "connection refused", "no route to host", "timed out"… rather than NIO's nested dump.
    static func describeConnectError(_ error: any Error) -> String {
        if let connection = error as? NIOConnectionError {
            if let first = connection.connectionErrors.first {
                return Self.describeConnectError(first.error)
            }
            if let dns = connection.dnsAAAAError ?? connection.dnsAError {
                return "cannot resolve \(connection.host): \(dns)"
            }
        }
        if let io = error as? IOError {
            return String(cString: strerror(io.errnoCode)).lowercased()
        }
        if let channel = error as? ChannelError, case .connectTimeout(let timeout) = channel {
            return "no answer within \(timeout.nanoseconds / 1_000_000) ms (connect timeout)"
        }
        return String(describing: error)
    }

    static func isLegacy(_ kind: Kind) -> Bool {
        if case .xep0114 = kind { return true }
        return false
    }

    static func isLoopback(_ host: String) -> Bool {
        let lowered = host.lowercased()
        if lowered == "localhost" || lowered == "::1" || lowered == "[::1]" { return true }
        return lowered.hasPrefix("127.")
    }
}

/// A connection attempt that shutdown can abandon: closing the channel (once it exists)
/// ends the TCP connect, TLS and negotiation at once instead of waiting for their timeouts.
final class ConnectAttempt: Sendable {
    private struct State {
        var channel: (any Channel)?
        var abandoned = false
    }

    private let state = Mutex(State())

    init() {}

    /// The channel exists (before it connects).
    func started(_ channel: any Channel) {
        let close = self.state.withLock { state -> Bool in
            state.channel = channel
            return state.abandoned
        }
        if close { channel.close(promise: nil) }
    }

    /// Abandons the attempt: its channel is closed now or as soon as it exists.
    func abandon() {
        let channel = self.state.withLock { state -> (any Channel)? in
            state.abandoned = true
            return state.channel
        }
        channel?.close(promise: nil)
    }

    var isAbandoned: Bool {
        self.state.withLock { $0.abandoned }
    }
}

/// The time of a stream's last read, for liveness checks (written on the event loop,
/// read by the monitor), and whether reading is paused on purpose.
final class StreamActivity: Sendable {
    private let lastRead = Atomic<Int64>(0)
    private let origin = ContinuousClock.now
    private let paused = Atomic<Bool>(false)

    /// Whether reading is paused by the connection's budget (the stream is idle by our
    /// choice, not because the server went quiet).
    var isPaused: Bool {
        get { self.paused.load(ordering: .relaxed) }
        set { self.paused.store(newValue, ordering: .relaxed) }
    }

    init() {
        self.touch()
    }

    func touch() {
        let elapsed = ContinuousClock.now - self.origin
        self.lastRead.store(
            Int64(elapsed.components.seconds) * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000, ordering: .relaxed
        )
    }

    var idleTime: Duration {
        let now = ContinuousClock.now - self.origin
        let nowNanos = Int64(now.components.seconds) * 1_000_000_000 + now.components.attoseconds / 1_000_000_000
        return .nanoseconds(nowNanos - self.lastRead.load(ordering: .relaxed))
    }
}

/// What the router handler learned that outlives it (the server's stream error).
final class StanzaRouterHandlerBox: Sendable {
    private let streamError = Mutex<StreamError?>(nil)

    var lastStreamError: StreamError? {
        get { self.streamError.withLock { $0 } }
        set { self.streamError.withLock { $0 = newValue } }
    }
}
