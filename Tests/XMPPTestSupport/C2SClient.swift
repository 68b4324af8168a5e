import Foundation
import NIOCore
import NIOPosix
import Synchronization
public import XMPPCore
public import XMPPSASL
import XMPPStream
public import XMPPTLS

/// A small XMPP client (c2s, RFC 6120) for integration tests, built on the project's own
/// stream layer: ``XMPPStream/XMLStreamHandler`` for the XML stream, ``XMPPTLS/OpenSSLHandler``
/// for STARTTLS (verified against a CA file) and ``XMPPSASL/SASLClient`` (SCRAM as offered,
/// PLAIN only over TLS) for authentication, then resource binding.
///
/// ```swift
/// let alice = try await C2SClient.connect(.init(
///     port: prosody.c2sPort, domain: prosody.domain, username: "alice", password: "pw",
///     caFile: prosody.caCertificatePath))
/// try await alice.send(Message(type: .chat, to: bob.jid, body: "hi").element)
/// let message = try await bob.next(timeout: .seconds(5)) { $0.name.localName == "message" }
/// await alice.close()
/// ```
public final class C2SClient: Sendable {
    /// Where and as whom to connect.
    public struct Configuration: Sendable {
        /// The server's address; loopback by default.
        public var host: String
        /// The c2s port.
        public var port: Int
        /// The XMPP domain (stream `to`, SASL server name).
        public var domain: String
        /// The account's localpart (SASL authentication identity).
        public var username: String
        /// The password.
        public var password: String
        /// The resource to ask for, or `nil` to let the server choose.
        public var resource: String?
        /// The CA certificate (PEM) the server certificate must chain to.
        public var caFile: String
        /// The name the server certificate must carry; the domain by default.
        public var tlsServerName: String?
        /// SASL mechanisms that may be used, or `nil` for all the client supports.
        public var allowedMechanisms: [String]?
        /// Whether `-PLUS` (channel-binding) mechanisms may be used. ejabberd 23.01 offers
        /// them on TLS 1.3 but rejects `tls-exporter` ("Invalid channel binding"), so its
        /// tests turn this off.
        public var allowsChannelBinding: Bool
        /// The channel bindings handed to SASL (for `-PLUS`), or `nil` for every one the TLS
        /// session has (tls-exporter, tls-server-end-point, tls-unique on TLS 1.2).
        public var channelBindingTypes: Set<SASLChannelBindingType>?
        /// The newest TLS version offered, or `nil` for the newest available.
        public var maximumTLSVersion: TLSVersion?
        /// Whether to send initial presence once bound (needed to receive messages sent to
        /// the bare JID).
        public var sendsInitialPresence: Bool
        /// How long connecting and negotiating may take.
        public var timeout: Duration

        /// Creates a configuration.
        public init(
            host: String = "127.0.0.1",
            port: Int,
            domain: String,
            username: String,
            password: String,
            resource: String? = "test",
            caFile: String,
            tlsServerName: String? = nil,
            allowedMechanisms: [String]? = nil,
            allowsChannelBinding: Bool = true,
            channelBindingTypes: Set<SASLChannelBindingType>? = nil,
            maximumTLSVersion: TLSVersion? = nil,
            sendsInitialPresence: Bool = true,
            timeout: Duration = .seconds(10)
        ) {
            self.host = host
            self.port = port
            self.domain = domain
            self.username = username
            self.password = password
            self.resource = resource
            self.caFile = caFile
            self.tlsServerName = tlsServerName
            self.allowedMechanisms = allowedMechanisms
            self.allowsChannelBinding = allowsChannelBinding
            self.channelBindingTypes = channelBindingTypes
            self.maximumTLSVersion = maximumTLSVersion
            self.sendsInitialPresence = sendsInitialPresence
            self.timeout = timeout
        }
    }

    /// What negotiation produced.
    public struct Session: Sendable, Hashable {
        /// The full JID the server bound.
        public var jid: JID
        /// The SASL mechanism used.
        public var mechanism: String
        /// The channel binding the `-PLUS` mechanism used, if any.
        public var channelBinding: SASLChannelBindingType? = nil
        /// The TLS session.
        public var tls: TLSSessionInfo
        /// The id of the final stream.
        public var streamID: String?
    }

    /// The negotiated session.
    public let session: Session
    /// The full JID the server bound.
    public var jid: JID { self.session.jid }

    private let channel: any Channel
    private let mailbox: C2SMailbox
    private let counter = Mutex(0)

    private init(channel: any Channel, mailbox: C2SMailbox, session: Session) {
        self.channel = channel
        self.mailbox = mailbox
        self.session = session
    }

    /// Connects, negotiates STARTTLS, SASL and resource binding, and optionally sends
    /// initial presence.
    /// - Parameter configuration: Where and as whom.
    /// - Returns: A connected client.
    /// - Throws: ``C2SClientError`` saying which step failed.
    public static func connect(_ configuration: Configuration) async throws -> C2SClient {
        let tlsContext: OpenSSLContext
        do {
            tlsContext = try OpenSSLContext(
                client: TLSClientConfiguration(
                    serverName: configuration.tlsServerName ?? configuration.domain,
                    trustRoots: .caFile(configuration.caFile), maximumVersion: configuration.maximumTLSVersion))
        } catch {
            throw C2SClientError(.tlsFailed, "cannot create the TLS context with CA \(configuration.caFile): \(error)")
        }
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let promise = eventLoop.makePromise(of: Session.self)
        let mailbox = C2SMailbox()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addXMLStreamHandler(contentNamespace: Namespace.client)
                        try sync.addHandler(
                            C2SHandler(
                                configuration: configuration, tlsContext: tlsContext, promise: promise, mailbox: mailbox))
                    }
                }
                .connect(host: configuration.host, port: configuration.port)
                .get()
        } catch {
            promise.fail(C2SClientError(.connectFailed, "cannot connect"))
            throw C2SClientError(
                .connectFailed, "cannot connect to \(configuration.host):\(configuration.port): \(error)")
        }
        let session: Session
        do {
            session = try await promise.futureResult.get()
        } catch {
            try? await channel.close().get()
            throw error
        }
        let client = C2SClient(channel: channel, mailbox: mailbox, session: session)
        if configuration.sendsInitialPresence {
            try await client.send(Element("presence", namespace: Namespace.client))
        }
        return client
    }

    /// Sends a stanza (or any top-level element).
    /// - Parameter element: The element, normally in `jabber:client`.
    /// - Throws: when the connection is closed.
    public func send(_ element: Element) async throws {
        do {
            try await self.channel.writeAndFlush(XMLStreamFrame.element(element)).get()
        } catch {
            throw C2SClientError(.closed, "cannot send <\(element.name.localName)/>: \(error)")
        }
    }

    /// Takes every stanza received so far that no `next` call took, in arrival order.
    public func drain() async -> [Element] {
        self.mailbox.drain()
    }

    /// Takes the next received stanza.
    /// - Parameter timeout: The deadline.
    /// - Throws: ``C2SClientError/Kind/timeout``, or the error that closed the stream.
    public func next(timeout: Duration = .seconds(10)) async throws -> Element {
        try await self.mailbox.next(timeout: timeout, what: "stanza") { _ in true }
    }

    /// Takes the first received stanza that matches, leaving the others for later calls.
    /// - Parameters:
    ///   - timeout: The deadline.
    ///   - predicate: Which stanza.
    /// - Throws: ``C2SClientError/Kind/timeout``, or the error that closed the stream.
    public func next(
        timeout: Duration = .seconds(10), where predicate: @escaping @Sendable (Element) -> Bool
    ) async throws -> Element {
        try await self.mailbox.next(timeout: timeout, what: "matching stanza", where: predicate)
    }

    /// Sends an IQ request and waits for its `result` or `error`. An id is assigned when the
    /// request's is empty.
    /// - Parameters:
    ///   - iq: A `get` or `set`.
    ///   - timeout: The deadline.
    /// - Returns: The answer (check ``XMPPCore/IQ/type``).
    public func request(_ iq: IQ, timeout: Duration = .seconds(10)) async throws -> IQ {
        var iq = iq
        if iq.requestID.isEmpty {
            let number = self.counter.withLock { counter in
                counter += 1
                return counter
            }
            iq.element["id"] = "c2s-\(number)"
        }
        let id = iq.requestID
        try await self.send(iq.element)
        let answer = try await self.mailbox.next(requestID: id, timeout: timeout, what: "answer to IQ \(id)") {
            $0.name.localName == "iq" && $0["id"] == id && ($0["type"] == "result" || $0["type"] == "error")
        }
        guard let result = IQ(answer) else {
            throw C2SClientError(.unexpected, "the answer to IQ \(id) is not an IQ: \(answer)")
        }
        return result
    }

    /// Closes the stream (`</stream:stream>`) and the connection.
    public func close() async {
        try? await self.channel.writeAndFlush(XMLStreamFrame.close).get()
        try? await self.channel.close().get()
        self.mailbox.close(C2SClientError(.closed, "the client closed the connection"))
    }
}

/// Negotiates the c2s stream, then hands stanzas to the mailbox.
private final class C2SHandler: ChannelInboundHandler {
    typealias InboundIn = XMLStreamEvent
    typealias OutboundOut = XMLStreamFrame

    private enum Phase {
        case awaitingHeader
        case awaitingFeatures
        case awaitingProceed
        case tlsHandshake
        case authenticating
        case binding
        case session
        case ready
        case finished
    }

    private let configuration: C2SClient.Configuration
    private let tlsContext: OpenSSLContext
    private let promise: EventLoopPromise<C2SClient.Session>
    private let mailbox: C2SMailbox
    private var phase = Phase.awaitingHeader
    private var tlsSession: TLSSessionInfo?
    private var sasl: SASLClient?
    private var mechanism: String?
    private var channelBinding: SASLChannelBindingType?
    private var authenticated = false
    private var sessionRequired = false
    private var jid: JID?
    private var streamID: String?
    private var timeout: Scheduled<Void>?
    private var started = false

    init(
        configuration: C2SClient.Configuration, tlsContext: OpenSSLContext,
        promise: EventLoopPromise<C2SClient.Session>, mailbox: C2SMailbox
    ) {
        self.configuration = configuration
        self.tlsContext = tlsContext
        self.promise = promise
        self.mailbox = mailbox
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let nanoseconds =
            self.configuration.timeout.components.seconds * 1_000_000_000
            + self.configuration.timeout.components.attoseconds / 1_000_000_000
        self.timeout = context.eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) {
            let (handler, context) = bound.value
            handler.fail(
                C2SClientError(.timeout, "negotiation did not finish within \(handler.configuration.timeout) (\(handler.phase))"),
                context: context)
        }
        if context.channel.isActive { self.openStream(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.openStream(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(C2SClientError(.closed, "the connection closed (\(self.phase))"), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let kind: C2SClientError.Kind =
            switch self.phase {
            case .tlsHandshake, .awaitingProceed: .tlsFailed
            default: error is TLSError ? .tlsFailed : .unexpected
            }
        self.fail(C2SClientError(kind, "\(error) (\(self.phase))"), context: context)
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let info) = event as? TLSEvent, case .tlsHandshake = self.phase {
            self.tlsSession = info
            self.phase = .awaitingHeader
            self.writeHeader(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .streamOpened(let header):
            guard case .awaitingHeader = self.phase else {
                return self.fail(C2SClientError(.unexpected, "a second stream header"), context: context)
            }
            guard header.contentNamespace == Namespace.client else {
                return self.fail(
                    C2SClientError(.unexpected, "the server's stream is in '\(header.contentNamespace)', not jabber:client"),
                    context: context)
            }
            self.streamID = header.id
            self.phase = .awaitingFeatures
        case .element(let element):
            self.received(element, context: context)
        case .streamClosed:
            self.fail(C2SClientError(.closed, "the server closed the stream (\(self.phase))"), context: context)
            context.close(promise: nil)
        }
    }

    // MARK: Negotiation

    private func received(_ element: Element, context: ChannelHandlerContext) {
        if element.name == QualifiedName(Namespace.stream, "error") {
            let error = StreamError(element: element) ?? StreamError(.undefinedCondition)
            self.fail(
                C2SClientError(.streamError, "stream error \(error) (\(self.phase))", streamError: error), context: context)
            context.close(promise: nil)
            return
        }
        switch self.phase {
        case .ready:
            self.mailbox.deliver(element)
        case .awaitingFeatures where element.name == QualifiedName(Namespace.stream, "features"):
            self.features(element, context: context)
        case .awaitingProceed where element.name.namespace == Namespace.tls:
            guard element.name.localName == "proceed" else {
                return self.fail(C2SClientError(.tlsFailed, "the server refused STARTTLS: \(element)"), context: context)
            }
            self.phase = .tlsHandshake
            context.triggerUserOutboundEvent(XMLStreamHandler.Restart.rejectingPendingInput, promise: nil)
            do {
                try context.pipeline.syncOperations.addHandler(
                    OpenSSLHandler(context: self.tlsContext, serverName: self.configuration.tlsServerName),
                    position: .first)
            } catch {
                self.fail(C2SClientError(.tlsFailed, "cannot add the TLS handler: \(error)"), context: context)
            }
        case .authenticating where element.name.namespace == Namespace.sasl:
            self.saslStep(element, context: context)
        case .binding where element.name.localName == "iq" && element["id"] == "bind-1":
            guard element["type"] == "result",
                let text = element.firstChild("bind", namespace: Namespace.bind)?.firstChild("jid", namespace: Namespace.bind)?
                    .text,
                let jid = try? JID(text)
            else {
                return self.fail(C2SClientError(.bindFailed, "resource binding failed: \(element)"), context: context)
            }
            self.jid = jid
            if self.sessionRequired {
                self.phase = .session
                let session = Element("session", namespace: "urn:ietf:params:xml:ns:xmpp-session")
                self.write(.element(IQ(type: .set, id: "session-1", payload: session).element), context: context)
            } else {
                self.succeed(context: context)
            }
        case .session where element.name.localName == "iq" && element["id"] == "session-1":
            guard element["type"] == "result" else {
                return self.fail(C2SClientError(.bindFailed, "session establishment failed: \(element)"), context: context)
            }
            self.succeed(context: context)
        default:
            self.fail(C2SClientError(.unexpected, "unexpected \(element) (\(self.phase))"), context: context)
        }
    }

    private func features(_ features: Element, context: ChannelHandlerContext) {
        if self.tlsSession == nil {
            guard features.firstChild("starttls", namespace: Namespace.tls) != nil else {
                return self.fail(
                    C2SClientError(.tlsNotOffered, "the server offered no STARTTLS: \(features)"), context: context)
            }
            self.phase = .awaitingProceed
            self.write(.element(Element("starttls", namespace: Namespace.tls)), context: context)
        } else if !self.authenticated {
            self.phase = .authenticating
            var allowed = self.configuration.allowedMechanisms
            if !self.configuration.allowsChannelBinding {
                let offered =
                    allowed
                    ?? (features.firstChild("mechanisms", namespace: Namespace.sasl)?
                        .children("mechanism", namespace: Namespace.sasl).map(\.text) ?? [])
                allowed = offered.filter { !$0.uppercased().hasSuffix("-PLUS") }
            }
            do {
                let client = try SASLClient(
                    configuration: .init(
                        authenticationIdentity: self.configuration.username, password: self.configuration.password,
                        serverFQDN: self.configuration.domain, allowedMechanisms: allowed),
                    transport: Self.transportSecurity(self.tlsSession, types: self.configuration.channelBindingTypes))
                self.sasl = client
                let auth = try client.start(features: Self.advertisingPinnedBindings(features, self.configuration))
                self.mechanism = client.mechanism
                self.write(.element(auth), context: context)
            } catch {
                self.fail(
                    C2SClientError(.authenticationFailed, "SASL could not start: \(error); features: \(features)"),
                    context: context)
            }
        } else {
            guard features.firstChild("bind", namespace: Namespace.bind) != nil else {
                return self.fail(
                    C2SClientError(.bindFailed, "the server offered no resource binding: \(features)"), context: context)
            }
            let session = features.firstChild("session", namespace: "urn:ietf:params:xml:ns:xmpp-session")
            self.sessionRequired = session != nil && session?.firstChild("optional", namespace: session!.name.namespace) == nil
            self.phase = .binding
            var bind = Element("bind", namespace: Namespace.bind)
            if let resource = self.configuration.resource {
                bind.append(Element("resource", namespace: Namespace.bind, text: resource))
            }
            self.write(.element(IQ(type: .set, id: "bind-1", payload: bind).element), context: context)
        }
    }

    private func saslStep(_ element: Element, context: ChannelHandlerContext) {
        guard let sasl = self.sasl else { return }
        do {
            switch try sasl.receive(element) {
            case .send(let response):
                self.write(.element(response), context: context)
            case .succeeded(let outcome):
                self.sasl = nil
                self.mechanism = outcome.mechanism
                self.channelBinding = outcome.channelBinding
                self.authenticated = true
                self.phase = .awaitingHeader
                context.triggerUserOutboundEvent(XMLStreamHandler.Restart.carryingOverPendingInput, promise: nil)
                self.writeHeader(context: context)
            }
        } catch {
            self.sasl = nil
            self.fail(
                C2SClientError(
                    .authenticationFailed, "SASL \(self.mechanism ?? "?") failed for \(self.configuration.username): \(error)"),
                context: context)
        }
    }

    // MARK: Plumbing

    private func openStream(context: ChannelHandlerContext) {
        guard !self.started else { return }
        self.started = true
        self.writeHeader(context: context)
    }

    private func writeHeader(context: ChannelHandlerContext) {
        let header = StreamHeader(
            contentNamespace: Namespace.client, to: self.configuration.domain, version: "1.0", language: "en")
        self.write(.header(header), context: context)
    }

    private func write(_ frame: XMLStreamFrame, context: ChannelHandlerContext) {
        context.writeAndFlush(Self.wrapOutboundOut(frame), promise: nil)
    }

    private func succeed(context: ChannelHandlerContext) {
        guard let jid = self.jid, let tls = self.tlsSession else { return }
        self.phase = .ready
        self.timeout?.cancel()
        self.promise.succeed(
            C2SClient.Session(
                jid: jid, mechanism: self.mechanism ?? "", channelBinding: self.channelBinding, tls: tls, streamID: self.streamID)
        )
    }

    private func fail(_ error: C2SClientError, context: ChannelHandlerContext) {
        switch self.phase {
        case .finished:
            return
        case .ready:
            self.phase = .finished
            self.mailbox.close(error)
        default:
            self.phase = .finished
            self.timeout?.cancel()
            self.sasl = nil
            self.promise.fail(error)
            context.close(promise: nil)
        }
    }

    /// A server without XEP-0440 (ejabberd 23.01) says nothing of the channel bindings it
    /// accepts, and the SDK then uses `-PLUS` on TLS 1.3 only. When a test pins the types
    /// (``Configuration/channelBindingTypes``) for such a server, they are advertised to the
    /// SASL client as if the server had sent `<sasl-channel-binding/>`; the server still
    /// checks the binding itself.
    private static func advertisingPinnedBindings(_ features: Element, _ configuration: C2SClient.Configuration) -> Element {
        guard let types = configuration.channelBindingTypes, configuration.allowsChannelBinding,
            features.firstChild("sasl-channel-binding", namespace: Namespace.saslChannelBinding) == nil
        else { return features }
        var features = features
        features.append(
            Element(
                "sasl-channel-binding", namespace: Namespace.saslChannelBinding,
                children: types.sorted { $0.rawValue < $1.rawValue }.map {
                    Element("channel-binding", namespace: Namespace.saslChannelBinding, attributes: ["type": $0.rawValue])
                }))
        return features
    }

    private static func transportSecurity(_ session: TLSSessionInfo?, types: Set<SASLChannelBindingType>?)
        -> SASLTransportSecurity
    {
        guard let session else { return .plaintext }
        var bindings: [SASLChannelBindingType: [UInt8]] = [:]
        if let exporter = session.tlsExporter { bindings[.tlsExporter] = exporter }
        if let endPoint = session.tlsServerEndPoint { bindings[.tlsServerEndPoint] = endPoint }
        if let unique = session.tlsUnique { bindings[.tlsUnique] = unique }
        if let types { bindings = bindings.filter { types.contains($0.key) } }
        return SASLTransportSecurity(isTLSActive: true, isTLS13: session.version == .v1_3, channelBindings: bindings)
    }
}
