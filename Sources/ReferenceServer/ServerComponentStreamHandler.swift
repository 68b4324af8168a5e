import Logging
import NIOCore
import XMPPCore
import XMPPSASL
import XMPPStream
import XMPPTLS

/// Drives a ``ServerComponentNegotiationStateMachine`` on one XEP-0225 connection and,
/// once negotiated, hands elements to the ``ComponentRouter``.
///
/// Sits after ``/XMPPStream/XMLStreamHandler``: reads ``/XMPPStream/XMLStreamEvent``s,
/// writes ``/XMPPStream/XMLStreamFrame``s. Owns the `SASLServer` of the running exchange
/// (one per `<auth/>`), puts an ``/XMPPTLS/OpenSSLHandler`` at the head of the pipeline for
/// STARTTLS and arms the authentication timer.
final class ServerComponentStreamHandler: ChannelInboundHandler {
    typealias InboundIn = XMLStreamEvent
    typealias OutboundOut = XMLStreamFrame

    private var machine: ServerComponentNegotiationStateMachine
    private let router: ComponentRouter
    private let tlsContext: OpenSSLContext?
    private let baseSASLConfiguration: SASLServer.Configuration
    private let externalIdentities: [[UInt8]: String]
    private let authenticationTimeout: TimeAmount
    private var logger: Logger
    private var sessionID: ComponentRouter.SessionID?
    private var tlsSession: TLSSessionInfo?
    private var advertisedSASL: SASLServer?
    private var activeSASL: SASLServer?
    private var timer: Scheduled<Void>?
    private var closing = false

    init(
        machine: ServerComponentNegotiationStateMachine,
        router: ComponentRouter,
        tlsContext: OpenSSLContext?,
        saslConfiguration: SASLServer.Configuration,
        externalIdentities: [[UInt8]: String] = [:],
        authenticationTimeout: TimeAmount,
        logger: Logger
    ) {
        self.machine = machine
        self.router = router
        self.tlsContext = tlsContext
        self.baseSASLConfiguration = saslConfiguration
        self.externalIdentities = externalIdentities
        self.authenticationTimeout = authenticationTimeout
        self.logger = logger
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.activate(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.activate(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.machine.connectionClosed()
        self.activeSASL = nil
        self.advertisedSASL = nil
        if let id = self.sessionID {
            self.sessionID = nil
            self.router.connectionClosed(id)
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let action: ServerComponentNegotiationStateMachine.Action
        switch Self.unwrapInboundIn(data) {
        case .streamOpened(let header): action = self.machine.streamOpened(header)
        case .element(let element): action = self.machine.received(element)
        case .streamClosed: action = self.machine.streamClosed()
        }
        self.perform(action, context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let info) = event as? TLSEvent {
            self.tlsSession = info
            self.logger.debug(
                "TLS established", metadata: ["tls.version": "\(info.version)", "tls.cipher": "\(info.cipherSuite)"])
            self.perform(self.machine.tlsEstablished(), context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("stream failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: Actions

    private func activate(context: ChannelHandlerContext) {
        guard self.sessionID == nil else { return }
        self.sessionID = self.router.connectionOpened(context.channel)
        self.logger[metadataKey: "stream.session"] = "\(self.sessionID ?? 0)"
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.authenticationTimeout) {
            let (handler, context) = bound.value
            handler.perform(handler.machine.authenticationTimedOut(), context: context)
        }
    }

    private func perform(_ action: ServerComponentNegotiationStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .openStream(let header, let offer):
            self.openStream(header, offer: offer, context: context)
        case .proceedWithTLS:
            self.startTLS(context: context)
        case .startSASL(let auth):
            let server: SASLServer
            if let advertised = self.advertisedSASL {
                server = advertised
                self.advertisedSASL = nil
            } else {
                do {
                    server = try SASLServer(configuration: self.saslConfiguration, transport: self.transport)
                } catch {
                    self.fail(StreamError(.internalServerError, text: "SASL is unavailable"), header: nil, context: context)
                    return
                }
            }
            self.activeSASL = server
            self.handle(server.start(auth: auth), context: context)
        case .continueSASL(let element):
            guard let server = self.activeSASL else { return }
            self.handle(server.receive(response: element), context: context)
        case .restartStream:
            context.triggerUserOutboundEvent(XMLStreamHandler.Restart.carryingOverPendingInput, promise: nil)
        case .established(let element):
            guard let id = self.sessionID else { return }
            if let error = self.router.received(element, from: id) {
                self.fail(error, header: nil, context: context)
            }
        case .closeStream:
            self.closing = true
            let channel = context.channel
            context.writeAndFlush(Self.wrapOutboundOut(.close)).whenComplete { _ in channel.close(promise: nil) }
        case .fail(let error, let header):
            self.fail(error, header: header, context: context)
        }
    }

    private func openStream(
        _ header: StreamHeader, offer: ServerComponentNegotiationStateMachine.Offer, context: ChannelHandlerContext
    ) {
        var features = Element("features", namespace: Namespace.stream)
        if offer.startTLS {
            var startTLS = Element("starttls", namespace: Namespace.tls)
            if offer.startTLSRequired { startTLS.append(Element("required", namespace: Namespace.tls)) }
            features.append(startTLS)
        }
        if offer.sasl {
            do {
                let server = try SASLServer(configuration: self.saslConfiguration, transport: self.transport)
                self.advertisedSASL = server
                features.append(server.mechanismsElement)
                if let binding = server.channelBindingElement { features.append(binding) }
            } catch {
                self.logger.error("cannot create the SASL server", metadata: ["error": "\(error)"])
                self.fail(StreamError(.internalServerError, text: "SASL is unavailable"), header: header, context: context)
                return
            }
        }
        if offer.bind {
            features.append(
                Element("bind", namespace: Namespace.component, children: [Element("required", namespace: Namespace.component)]))
        }
        if offer.streamManagement {
            features.append(Element("sm", namespace: StreamAcknowledgements.namespace))
        }
        context.write(Self.wrapOutboundOut(.header(header)), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.element(features)), promise: nil)
    }

    private func startTLS(context: ChannelHandlerContext) {
        guard let tlsContext = self.tlsContext else {
            self.fail(StreamError(.internalServerError, text: "no TLS certificate"), header: nil, context: context)
            return
        }
        context.writeAndFlush(Self.wrapOutboundOut(.element(Element("proceed", namespace: Namespace.tls))), promise: nil)
        // Bytes pipelined after <starttls/> are refused (STARTTLS command injection).
        context.triggerUserOutboundEvent(XMLStreamHandler.Restart.rejectingPendingInput, promise: nil)
        guard context.channel.isActive else { return }
        do {
            try context.pipeline.syncOperations.addHandler(OpenSSLHandler(context: tlsContext), position: .first)
        } catch {
            context.close(promise: nil)
        }
    }

    private func handle(_ step: SASLServerStep, context: ChannelHandlerContext) {
        switch step {
        case .challenge(let challenge):
            context.writeAndFlush(Self.wrapOutboundOut(.element(challenge)), promise: nil)
        case .success(let success, let identity):
            self.activeSASL = nil
            context.writeAndFlush(Self.wrapOutboundOut(.element(success)), promise: nil)
            self.timer?.cancel()
            if let id = self.sessionID {
                self.router.authenticated(id, channel: context.channel, identity: identity)
            }
            self.logger.debug("authenticated", metadata: ["sasl.identity": "\(identity)"])
            context.triggerUserOutboundEvent(XMLStreamHandler.Authenticated(), promise: nil)
            self.perform(self.machine.authenticationSucceeded(identity: identity), context: context)
        case .failure(let failure, let error):
            self.activeSASL = nil
            self.logger.debug("authentication failed", metadata: ["sasl.error": "\(error)"])
            context.writeAndFlush(Self.wrapOutboundOut(.element(failure)), promise: nil)
            self.perform(self.machine.authenticationFailed(), context: context)
        }
    }

    private func fail(_ error: StreamError, header: StreamHeader?, context: ChannelHandlerContext) {
        guard !self.closing else { return }
        self.closing = true
        self.logger.debug("closing the stream with an error", metadata: ["stream.error": "\(error)"])
        if let header { context.write(Self.wrapOutboundOut(.header(header)), promise: nil) }
        context.write(Self.wrapOutboundOut(.element(error.element)), promise: nil)
        let channel = context.channel
        context.writeAndFlush(Self.wrapOutboundOut(.close)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The SASL settings of this stream: EXTERNAL when the verified client certificate is one
    /// of ``ReferenceServerConfiguration/SASL/externalIdentities``.
    private var saslConfiguration: SASLServer.Configuration {
        var configuration = self.baseSASLConfiguration
        if let certificate = self.tlsSession?.peerCertificateDER, let identity = self.externalIdentities[certificate] {
            configuration.externalIdentity = identity
        }
        return configuration
    }

    private var transport: SASLTransportSecurity {
        guard let session = self.tlsSession else { return .plaintext }
        var bindings: [SASLChannelBindingType: [UInt8]] = [:]
        if let exporter = session.tlsExporter { bindings[.tlsExporter] = exporter }
        if let endPoint = session.tlsServerEndPoint { bindings[.tlsServerEndPoint] = endPoint }
        if let unique = session.tlsUnique { bindings[.tlsUnique] = unique }
        return SASLTransportSecurity(isTLSActive: true, isTLS13: session.version == .v1_3, channelBindings: bindings)
    }
}
