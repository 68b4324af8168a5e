import Logging
import NIOCore
import XMPPCore
import XMPPSASL
import XMPPStream
import XMPPTLS

/// Drives a ``C2SNegotiationStateMachine`` on one client connection and, once a resource is
/// bound, handles the user's stanzas: answers what is for the server or the account itself
/// (session, roster, ping, disco), stamps `from` and routes the rest like
/// ``ReferenceServer/inject(_:)`` (the same balancing; the affinity key is the full JID).
///
/// `from` (RFC 6120 §8.1.2.1): absent, the full JID or the bare JID of the session is
/// stamped with the full JID; any other value ends the stream with `invalid-from`.
final class C2SStreamHandler: ChannelInboundHandler {
    typealias InboundIn = XMLStreamEvent
    typealias OutboundOut = XMLStreamFrame

    private var machine: C2SNegotiationStateMachine
    private let router: ComponentRouter
    private let tlsContext: OpenSSLContext
    private let saslConfiguration: SASLServer.Configuration
    private let channelBinding: Bool
    private let authenticationTimeout: TimeAmount
    private var logger: Logger
    private var connectionID: ComponentRouter.SessionID?
    private var tlsSession: TLSSessionInfo?
    private var advertisedSASL: SASLServer?
    private var activeSASL: SASLServer?
    private var timer: Scheduled<Void>?
    private var closing = false
    private var boundJID: JID?

    init(
        machine: C2SNegotiationStateMachine, router: ComponentRouter, tlsContext: OpenSSLContext,
        saslConfiguration: SASLServer.Configuration, channelBinding: Bool, authenticationTimeout: TimeAmount,
        logger: Logger
    ) {
        self.channelBinding = channelBinding
        self.machine = machine
        self.router = router
        self.tlsContext = tlsContext
        self.saslConfiguration = saslConfiguration
        self.authenticationTimeout = authenticationTimeout
        self.logger = logger
    }

    private var domain: String { self.machine.configuration.serverDomain }

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
        if let jid = self.boundJID {
            self.boundJID = nil
            self.router.clients.unbind(jid, channel: context.channel)
            self.logger.debug("client session ended", metadata: ["c2s.jid": "\(jid)"])
        }
        if let id = self.connectionID {
            self.connectionID = nil
            self.router.connectionClosed(id)
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let action: C2SNegotiationStateMachine.Action
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
            self.perform(self.machine.tlsEstablished(), context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The stream layer already sent the stream error for bad input (limits, malformed XML).
        self.logger.debug("client stream failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: Actions

    private func activate(context: ChannelHandlerContext) {
        guard self.connectionID == nil else { return }
        self.connectionID = self.router.connectionOpened(context.channel)
        self.logger[metadataKey: "c2s.connection"] = "\(self.connectionID ?? 0)"
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.authenticationTimeout) {
            let (handler, context) = bound.value
            handler.perform(handler.machine.authenticationTimedOut(), context: context)
        }
    }

    private func perform(_ action: C2SNegotiationStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .openStream(let header, let offer):
            self.openStream(header, offer: offer, context: context)
        case .proceedWithTLS:
            context.writeAndFlush(Self.wrapOutboundOut(.element(Element("proceed", namespace: Namespace.tls))), promise: nil)
            // Bytes pipelined after <starttls/> are refused (STARTTLS command injection).
            context.triggerUserOutboundEvent(XMLStreamHandler.Restart.rejectingPendingInput, promise: nil)
            guard context.channel.isActive else { return }
            do {
                try context.pipeline.syncOperations.addHandler(OpenSSLHandler(context: self.tlsContext), position: .first)
            } catch {
                context.close(promise: nil)
            }
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
        case .bind(let iq, let resource):
            self.bind(iq, resource: resource, context: context)
        case .send(let element):
            context.writeAndFlush(Self.wrapOutboundOut(.element(element)), promise: nil)
        case .established(let element):
            self.received(element, context: context)
        case .closeStream:
            self.closing = true
            let channel = context.channel
            context.writeAndFlush(Self.wrapOutboundOut(.close)).whenComplete { _ in channel.close(promise: nil) }
        case .fail(let error, let header):
            self.fail(error, header: header, context: context)
        }
    }

    private func openStream(_ header: StreamHeader, offer: C2SNegotiationStateMachine.Offer, context: ChannelHandlerContext) {
        var features = Element("features", namespace: Namespace.stream)
        switch offer {
        case .startTLS:
            features.append(
                Element("starttls", namespace: Namespace.tls, children: [Element("required", namespace: Namespace.tls)]))
        case .sasl:
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
        case .bind:
            features.append(Element("bind", namespace: Namespace.bind))
            let session = "urn:ietf:params:xml:ns:xmpp-session"
            features.append(Element("session", namespace: session, children: [Element("optional", namespace: session)]))
        }
        context.write(Self.wrapOutboundOut(.header(header)), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.element(features)), promise: nil)
    }

    private func handle(_ step: SASLServerStep, context: ChannelHandlerContext) {
        switch step {
        case .challenge(let challenge):
            context.writeAndFlush(Self.wrapOutboundOut(.element(challenge)), promise: nil)
        case .success(let success, let identity):
            self.activeSASL = nil
            // The sasldb holds only the configured users; a name given with the domain
            // (`alice@example.test`) is the same account.
            var localpart = identity
            if let at = identity.lastIndex(of: "@"),
                identity[identity.index(after: at)...].lowercased() == self.domain.lowercased()
            {
                localpart = String(identity[..<at])
            }
            guard let user = try? JID(localpart: localpart, domainpart: self.domain, resourcepart: nil),
                self.router.clients.isUser(user)
            else {
                self.logger.debug("authenticated identity is not a configured user")
                let failure = Element(
                    "failure", namespace: Namespace.sasl, children: [Element("not-authorized", namespace: Namespace.sasl)])
                context.writeAndFlush(Self.wrapOutboundOut(.element(failure)), promise: nil)
                self.perform(self.machine.authenticationFailed(), context: context)
                return
            }
            context.writeAndFlush(Self.wrapOutboundOut(.element(success)), promise: nil)
            self.timer?.cancel()
            self.logger.debug("client authenticated", metadata: ["c2s.user": "\(user)"])
            context.triggerUserOutboundEvent(XMLStreamHandler.Authenticated(), promise: nil)
            self.perform(self.machine.authenticationSucceeded(identity: user.description), context: context)
        case .failure(let failure, let error):
            self.activeSASL = nil
            self.logger.debug("client authentication failed", metadata: ["sasl.error": "\(error)"])
            context.writeAndFlush(Self.wrapOutboundOut(.element(failure)), promise: nil)
            self.perform(self.machine.authenticationFailed(), context: context)
        }
    }

    private func bind(_ iq: IQ, resource: String?, context: ChannelHandlerContext) {
        guard let identity = self.machine.authenticatedIdentity, let user = try? JID(identity),
            let jid = self.router.clients.bind(user: user, requested: resource, channel: context.channel)
        else {
            context.writeAndFlush(
                Self.wrapOutboundOut(.element(iq.errorResult(StanzaError(.badRequest, text: "cannot bind")).element)),
                promise: nil)
            self.fail(StreamError(.internalServerError, text: "resource binding failed"), header: nil, context: context)
            return
        }
        self.boundJID = jid
        self.machine.bound(jid)
        self.logger[metadataKey: "c2s.jid"] = "\(jid)"
        self.logger.debug("client session bound")
        var answer = IQ(
            type: .result, id: iq.requestID,
            payload: Element(
                "bind", namespace: Namespace.bind, children: [Element("jid", namespace: Namespace.bind, text: jid.description)]))
        answer.element["to"] = jid.description
        context.writeAndFlush(Self.wrapOutboundOut(.element(answer.element)), promise: nil)
    }

    // MARK: Stanzas

    private func received(_ element: Element, context: ChannelHandlerContext) {
        guard let jid = self.boundJID else { return }
        guard element.name.namespace == Namespace.client, Stanza(element) != nil else {
            self.fail(
                StreamError(.unsupportedStanzaType, text: "<\(element.name.localName)/> is not a stanza"), header: nil,
                context: context)
            return
        }
        var element = element
        if let from = element["from"] {
            guard let claimed = try? JID(from), claimed == jid || claimed == jid.bare else {
                self.fail(
                    StreamError(.invalidFrom, text: "this stream is \(jid), not '\(from)'"), header: nil, context: context)
                return
            }
        }
        element["from"] = jid.description
        let to: JID?
        if let text = element["to"] {
            guard let parsed = try? JID(text) else {
                self.answer(element, StanzaError(.jidMalformed, text: "'\(text)' is not a JID"), context: context)
                return
            }
            to = parsed
        } else {
            to = nil
        }
        let stanza = Stanza(element)!
        // What the server or the account itself answers (RFC 6120 §10.3, §10.5.3.2).
        if to == nil || to == jid.bare || to?.description == self.domain.lowercased() {
            switch stanza {
            case .iq(let iq):
                self.local(iq, to: to, context: context)
                return
            case .presence:
                // No rosters: initial and unavailable presence go nowhere.
                return
            case .message:
                if to == nil { element["to"] = jid.bare.description }
            }
        }
        do {
            try self.router.inject(element)
        } catch {
            self.answer(element, StanzaError(.badRequest, text: "\(error)"), context: context)
        }
    }

    private func local(_ iq: IQ, to: JID?, context: ChannelHandlerContext) {
        guard iq.type.isRequest else { return }
        let payload = iq.payload?.name
        var answer: IQ
        switch (iq.type, payload?.namespace, payload?.localName) {
        case (.set, "urn:ietf:params:xml:ns:xmpp-session", "session"), (.get, Namespace.ping, "ping"):
            answer = iq.result()
        case (.get, "jabber:iq:roster", "query"):
            answer = iq.result(Element("query", namespace: "jabber:iq:roster"))
        case (.get, Namespace.discoInfo, "query") where to?.description == self.domain.lowercased():
            // The server's identity and features, as components see them.
            do {
                try self.router.inject(iq.element)
            } catch {
                self.answer(iq.element, StanzaError(.badRequest, text: "\(error)"), context: context)
            }
            return
        default:
            answer = iq.errorResult(StanzaError(.serviceUnavailable))
        }
        answer.element["from"] = to?.description
        answer.element["to"] = self.boundJID?.description
        context.writeAndFlush(Self.wrapOutboundOut(.element(answer.element)), promise: nil)
    }

    /// Sends an error reply to a stanza of this client (none for errors and IQ answers).
    private func answer(_ element: Element, _ error: StanzaError, context: ChannelHandlerContext) {
        guard let stanza = Stanza(element), !stanza.isError else { return }
        let reply: Element
        switch stanza {
        case .iq(let iq):
            guard iq.type.isRequest else { return }
            reply = iq.errorResult(error).element
        case .message(let message): reply = message.errorReply(error).element
        case .presence(let presence): reply = presence.errorReply(error).element
        }
        var stamped = reply
        stamped["to"] = self.boundJID?.description
        context.writeAndFlush(Self.wrapOutboundOut(.element(stamped)), promise: nil)
    }

    private func fail(_ error: StreamError, header: StreamHeader?, context: ChannelHandlerContext) {
        guard !self.closing else { return }
        self.closing = true
        self.logger.debug("closing the client stream with an error", metadata: ["stream.error": "\(error)"])
        if let header { context.write(Self.wrapOutboundOut(.header(header)), promise: nil) }
        context.write(Self.wrapOutboundOut(.element(error.element)), promise: nil)
        let channel = context.channel
        context.writeAndFlush(Self.wrapOutboundOut(.close)).whenComplete { _ in channel.close(promise: nil) }
    }

    private var transport: SASLTransportSecurity {
        guard let session = self.tlsSession else { return .plaintext }
        var bindings: [SASLChannelBindingType: [UInt8]] = [:]
        guard self.channelBinding else {
            return SASLTransportSecurity(isTLSActive: true, isTLS13: session.version == .v1_3, channelBindings: bindings)
        }
        if let exporter = session.tlsExporter { bindings[.tlsExporter] = exporter }
        if let endPoint = session.tlsServerEndPoint { bindings[.tlsServerEndPoint] = endPoint }
        if let unique = session.tlsUnique { bindings[.tlsUnique] = unique }
        return SASLTransportSecurity(isTLSActive: true, isTLS13: session.version == .v1_3, channelBindings: bindings)
    }
}
