public import NIOCore
public import XMPPCore
public import XMPPSASL
public import XMPPTLS

/// What a successful client negotiation produced.
public struct NegotiatedStream: Sendable, Hashable {
    /// Which protocol the stream speaks.
    public enum ComponentProtocol: String, Sendable, Hashable {
        /// XEP-0225 Component Connections.
        case xep0225
        /// XEP-0114 Jabber Component Protocol.
        case xep0114
    }

    /// The protocol.
    public var componentProtocol: ComponentProtocol
    /// The server's stream id.
    public var streamID: String?
    /// The final stream features (XEP-0225), or `nil`.
    public var features: Element?
    /// The TLS session, when TLS protects the stream.
    public var tls: TLSSessionInfo?
    /// The SASL outcome (XEP-0225), or `nil`.
    public var sasl: SASLOutcome?

    /// Creates a value.
    public init(
        componentProtocol: ComponentProtocol, streamID: String?, features: Element?, tls: TLSSessionInfo?,
        sasl: SASLOutcome?
    ) {
        self.componentProtocol = componentProtocol
        self.streamID = streamID
        self.features = features
        self.tls = tls
        self.sasl = sasl
    }
}

/// How a negotiation ended when it did not fail.
public enum NegotiationOutcome: Sendable, Hashable {
    /// The stream is ready for stanzas.
    case negotiated(NegotiatedStream)
    /// The server is a XEP-0114 port (``ComponentNegotiationStateMachine/Configuration/allowsLegacyFallback``);
    /// the channel has been closed and the caller should reconnect with the legacy protocol.
    case fallBackToLegacy(reason: String)
}

/// Drives a client negotiation state machine on a channel: XEP-0225 (STARTTLS, SASL,
/// features) or the XEP-0114 handshake.
///
/// Sits after ``XMLStreamHandler``. It carries out the machine's actions: sends headers
/// and elements, inserts an ``/XMPPTLS/OpenSSLHandler`` at the head of the pipeline for
/// STARTTLS (restarting the parser and refusing any cleartext that followed `<proceed/>`),
/// runs the ``/XMPPSASL/SASLClient``, and restarts the stream after `<success/>`. The
/// ``outcome`` future completes when negotiation ends; afterwards the handler passes
/// ``XMLStreamEvent``s through unchanged.
public final class ComponentNegotiationHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// Stream events in.
    public typealias InboundIn = XMLStreamEvent
    /// Stream events out, after negotiation.
    public typealias InboundOut = XMLStreamEvent
    /// Frames out (passed through).
    public typealias OutboundIn = XMLStreamFrame
    /// Frames out.
    public typealias OutboundOut = XMLStreamFrame

    /// Which negotiation to run.
    public enum Mode {
        /// XEP-0225: the machine, SASL credentials, and the TLS context for STARTTLS
        /// (`nil` only with ``ComponentNegotiationStateMachine/TLSPolicy/none`` or `.direct`).
        case xep0225(
            ComponentNegotiationStateMachine, sasl: SASLClient.Configuration, tls: OpenSSLContext?, tlsServerName: String?)
        /// XEP-0114: the handshake machine.
        case xep0114(LegacyComponentNegotiationStateMachine)
    }

    private enum Machine {
        case modern(ComponentNegotiationStateMachine)
        case legacy(LegacyComponentNegotiationStateMachine)
    }

    private var machine: Machine
    private let saslConfiguration: SASLClient.Configuration?
    private let tlsContext: OpenSSLContext?
    private let tlsServerName: String?
    private var saslClient: SASLClient?
    private var saslOutcome: SASLOutcome?
    private var tlsSession: TLSSessionInfo?
    private var finished = false
    private var streamOpenedBySelf = false
    private let outcomePromise: EventLoopPromise<NegotiationOutcome>

    /// Completes when negotiation succeeds or ends in a fallback; fails with a
    /// ``NegotiationError`` (or the TLS/stream error that ended it).
    public var outcome: EventLoopFuture<NegotiationOutcome> { self.outcomePromise.futureResult }

    /// Creates the handler.
    /// - Parameters:
    ///   - mode: Which negotiation to run.
    ///   - eventLoop: The channel's event loop (for ``outcome``).
    public init(mode: Mode, eventLoop: any EventLoop) {
        switch mode {
        case .xep0225(let machine, let sasl, let tls, let serverName):
            self.machine = .modern(machine)
            self.saslConfiguration = sasl
            self.tlsContext = tls
            self.tlsServerName = serverName
        case .xep0114(let machine):
            self.machine = .legacy(machine)
            self.saslConfiguration = nil
            self.tlsContext = nil
            self.tlsServerName = nil
        }
        self.outcomePromise = eventLoop.makePromise(of: NegotiationOutcome.self)
    }

    // MARK: Channel events

    /// Starts negotiating when the handler is added to an active channel.
    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            self.start(context: context)
        }
    }

    /// Starts negotiating when the connection comes up.
    public func channelActive(context: ChannelHandlerContext) {
        self.start(context: context)
        context.fireChannelActive()
    }

    /// Fails the negotiation if the connection ends first.
    public func channelInactive(context: ChannelHandlerContext) {
        if !self.finished {
            self.connectionClosed(context: context)
            if !self.finished {
                self.finish(.failure(NegotiationError(.closedDuringNegotiation, "the connection closed during negotiation")))
            }
        }
        context.fireChannelInactive()
    }

    /// Feeds stream events to the machine until negotiation finishes.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.finished else {
            context.fireChannelRead(data)
            return
        }
        switch self.unwrapInboundIn(data) {
        case .streamOpened(let header):
            self.step(context: context, modern: { $0.streamOpened(header) }, legacy: { $0.streamOpened(header) })
        case .element(let element):
            self.step(context: context, modern: { $0.received(element) }, legacy: { $0.received(element) })
        case .streamClosed:
            if !self.finished {
                self.connectionClosed(context: context)
            }
        }
    }

    /// Watches for the TLS handshake to complete.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let info) = event as? TLSEvent {
            self.tlsSession = info
            if !self.finished, case .modern(var machine) = self.machine {
                let action = machine.tlsEstablished()
                self.machine = .modern(machine)
                self.perform(action, context: context)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Fails the negotiation on errors (TLS, XML) before passing them on.
    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !self.finished {
            self.finish(.failure(error))
            context.close(promise: nil)
        }
        context.fireErrorCaught(error)
    }

    // MARK: Actions

    private func start(context: ChannelHandlerContext) {
        guard !self.streamOpenedBySelf else { return }
        self.streamOpenedBySelf = true
        self.step(context: context, modern: { $0.start() }, legacy: { $0.start() })
    }

    private func connectionClosed(context: ChannelHandlerContext) {
        self.step(context: context, modern: { $0.connectionClosed() }, legacy: { $0.connectionClosed() })
    }

    /// Feeds one event to whichever machine runs, stores it back, and carries out its action.
    private func step(
        context: ChannelHandlerContext,
        modern: (inout ComponentNegotiationStateMachine) -> ComponentNegotiationStateMachine.Action,
        legacy: (inout LegacyComponentNegotiationStateMachine) -> LegacyComponentNegotiationStateMachine.Action
    ) {
        switch self.machine {
        case .modern(var machine):
            let action = modern(&machine)
            self.machine = .modern(machine)
            self.perform(action, context: context)
        case .legacy(var machine):
            let action = legacy(&machine)
            self.machine = .legacy(machine)
            self.perform(action, context: context)
        }
    }

    private func perform(_ action: ComponentNegotiationStateMachine.Action, context: ChannelHandlerContext) {
        guard case .modern(let machine) = self.machine else { return }
        switch action {
        case .none:
            break
        case .sendHeader:
            self.writeFrame(.header(machine.outgoingHeader), context: context)
        case .send(let element):
            self.writeFrame(.element(element), context: context)
        case .startTLS:
            self.startTLS(context: context)
        case .authenticate(let features):
            self.authenticate(features: features, context: context)
        case .forwardToSASL(let element):
            self.forwardToSASL(element, context: context)
        case .restartAndSendHeader:
            context.triggerUserOutboundEvent(XMLStreamHandler.Restart.carryingOverPendingInput, promise: nil)
            self.writeFrame(.header(machine.outgoingHeader), context: context)
        case .negotiated(let features):
            context.triggerUserOutboundEvent(XMLStreamHandler.Authenticated(), promise: nil)
            self.finish(
                .success(
                    .negotiated(
                        NegotiatedStream(
                            componentProtocol: .xep0225, streamID: machine.streamID, features: features,
                            tls: self.tlsSession, sasl: self.saslOutcome))))
        case .fallBackToLegacy(let reason):
            self.finish(.success(.fallBackToLegacy(reason: reason)))
            context.close(promise: nil)
        case .fail(let error):
            self.failAndClose(error, context: context)
        }
    }

    private func perform(_ action: LegacyComponentNegotiationStateMachine.Action, context: ChannelHandlerContext) {
        guard case .legacy(let machine) = self.machine else { return }
        switch action {
        case .none:
            break
        case .sendHeader:
            self.writeFrame(.header(machine.outgoingHeader), context: context)
        case .send(let element):
            self.writeFrame(.element(element), context: context)
        case .negotiated:
            context.triggerUserOutboundEvent(XMLStreamHandler.Authenticated(), promise: nil)
            self.finish(
                .success(
                    .negotiated(
                        NegotiatedStream(
                            componentProtocol: .xep0114, streamID: machine.streamID, features: nil,
                            tls: self.tlsSession, sasl: nil))))
        case .fail(let error):
            self.failAndClose(error, context: context)
        }
    }

    private func startTLS(context: ChannelHandlerContext) {
        guard let tlsContext = self.tlsContext else {
            self.failAndClose(
                NegotiationError(.tlsRefusedByServer, "STARTTLS was negotiated but no TLS context is configured"),
                context: context)
            return
        }
        // No cleartext may follow <proceed/>: bytes already read after it are an injection attempt.
        let restart = context.eventLoop.makePromise(of: Void.self)
        context.triggerUserOutboundEvent(XMLStreamHandler.Restart.rejectingPendingInput, promise: restart)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        restart.futureResult.whenFailure { error in
            let (handler, context) = bound.value
            handler.failAndClose(
                NegotiationError(
                    .unexpectedElement(QualifiedName(Namespace.tls, "proceed")),
                    "the server sent cleartext after <proceed/> (possible STARTTLS command injection)",
                    underlying: SendableErrorBox(error)),
                context: context)
        }
        do {
            let handler = OpenSSLHandler(context: tlsContext, serverName: self.tlsServerName)
            try context.pipeline.syncOperations.addHandler(handler, position: .first)
        } catch {
            self.failAndClose(
                NegotiationError(.tlsRefusedByServer, "could not start TLS", underlying: SendableErrorBox(error)),
                context: context)
        }
    }

    private func authenticate(features: Element, context: ChannelHandlerContext) {
        guard let configuration = self.saslConfiguration else { return }
        let transport = Self.transportSecurity(self.tlsSession)
        do {
            let client = try SASLClient(configuration: configuration, transport: transport)
            self.saslClient = client
            let auth = try client.start(features: features)
            self.writeFrame(.element(auth), context: context)
        } catch {
            self.saslFailed(error, context: context)
        }
    }

    private func forwardToSASL(_ element: Element, context: ChannelHandlerContext) {
        guard let client = self.saslClient, case .modern(var machine) = self.machine else { return }
        do {
            switch try client.receive(element) {
            case .send(let response):
                self.writeFrame(.element(response), context: context)
            case .succeeded(let outcome):
                self.saslOutcome = outcome
                self.saslClient = nil
                let action = machine.authenticationSucceeded()
                self.machine = .modern(machine)
                self.perform(action, context: context)
            }
        } catch {
            self.saslFailed(error, context: context)
        }
    }

    private func saslFailed(_ error: SASLError, context: ChannelHandlerContext) {
        guard case .modern(var machine) = self.machine else { return }
        self.saslClient = nil
        let action = machine.authenticationFailed(error)
        self.machine = .modern(machine)
        self.perform(action, context: context)
    }

    static func transportSecurity(_ session: TLSSessionInfo?) -> SASLTransportSecurity {
        guard let session else { return .plaintext }
        var bindings: [SASLChannelBindingType: [UInt8]] = [:]
        if let exporter = session.tlsExporter { bindings[.tlsExporter] = exporter }
        if let endPoint = session.tlsServerEndPoint { bindings[.tlsServerEndPoint] = endPoint }
        if let unique = session.tlsUnique { bindings[.tlsUnique] = unique }
        return SASLTransportSecurity(isTLSActive: true, isTLS13: session.version == .v1_3, channelBindings: bindings)
    }

    // MARK: Plumbing

    private func writeFrame(_ frame: XMLStreamFrame, context: ChannelHandlerContext) {
        context.writeAndFlush(self.wrapOutboundOut(frame), promise: nil)
    }

    private func failAndClose(_ error: NegotiationError, context: ChannelHandlerContext) {
        guard !self.finished else { return }
        self.finish(.failure(error))
        context.writeAndFlush(self.wrapOutboundOut(.close), promise: nil)
        context.close(promise: nil)
    }

    private func finish(_ result: Result<NegotiationOutcome, any Error>) {
        guard !self.finished else { return }
        self.finished = true
        self.saslClient = nil
        self.outcomePromise.completeWith(result)
    }

    /// Fails the outcome if the handler leaves the pipeline before negotiation ended.
    public func handlerRemoved(context: ChannelHandlerContext) {
        self.finish(.failure(NegotiationError(.closedDuringNegotiation, "the negotiation handler was removed")))
    }
}

/// Carries a non-Sendable error's description across isolation domains.
public struct SendableErrorBox: Error, Sendable, CustomStringConvertible {
    /// The wrapped error's description.
    public let description: String

    /// Wraps an error by its description.
    /// - Parameter error: The error.
    public init(_ error: any Error) {
        self.description = String(describing: error)
    }
}
