import Logging
import NIOCore
import XMPPCore
import XMPPStream

/// Drives a ``ServerLegacyComponentNegotiationStateMachine`` on one XEP-0114 connection
/// and, after the handshake, hands stanzas to the ``ComponentRouter``.
final class ServerLegacyComponentStreamHandler: ChannelInboundHandler {
    typealias InboundIn = XMLStreamEvent
    typealias OutboundOut = XMLStreamFrame

    private var machine: ServerLegacyComponentNegotiationStateMachine
    private let router: ComponentRouter
    private let authenticationTimeout: TimeAmount
    private var logger: Logger
    private var sessionID: ComponentRouter.SessionID?
    private var timer: Scheduled<Void>?
    private var closing = false

    init(
        machine: ServerLegacyComponentNegotiationStateMachine,
        router: ComponentRouter,
        authenticationTimeout: TimeAmount,
        logger: Logger
    ) {
        self.machine = machine
        self.router = router
        self.authenticationTimeout = authenticationTimeout
        self.logger = logger
    }

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
        if let id = self.sessionID {
            self.sessionID = nil
            self.router.connectionClosed(id)
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let action: ServerLegacyComponentNegotiationStateMachine.Action
        switch Self.unwrapInboundIn(data) {
        case .streamOpened(let header): action = self.machine.streamOpened(header)
        case .element(let element): action = self.machine.received(element)
        case .streamClosed: action = self.machine.streamClosed()
        }
        self.perform(action, context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("legacy stream failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private func activate(context: ChannelHandlerContext) {
        guard self.sessionID == nil else { return }
        self.sessionID = self.router.connectionOpened(context.channel)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.authenticationTimeout) {
            let (handler, context) = bound.value
            guard handler.machine.hostname == nil else { return }
            handler.fail(StreamError(.connectionTimeout, text: "no handshake in time"), header: nil, context: context)
        }
    }

    private func perform(_ action: ServerLegacyComponentNegotiationStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .sendHeader(let header):
            context.writeAndFlush(Self.wrapOutboundOut(.header(header)), promise: nil)
        case .authenticate(let hostname):
            guard let id = self.sessionID else { return }
            if self.router.bindLegacy(id, channel: context.channel, hostname: hostname) {
                self.timer?.cancel()
                self.logger.debug("XEP-0114 handshake accepted", metadata: ["component.hostname": "\(hostname)"])
                context.triggerUserOutboundEvent(XMLStreamHandler.Authenticated(), promise: nil)
                self.perform(self.machine.bindingSucceeded(), context: context)
            } else {
                self.perform(self.machine.bindingConflicted(), context: context)
            }
        case .send(let element):
            context.writeAndFlush(Self.wrapOutboundOut(.element(element)), promise: nil)
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

    private func fail(_ error: StreamError, header: StreamHeader?, context: ChannelHandlerContext) {
        guard !self.closing else { return }
        self.closing = true
        self.logger.debug("closing the legacy stream with an error", metadata: ["stream.error": "\(error)"])
        if let header { context.write(Self.wrapOutboundOut(.header(header)), promise: nil) }
        context.write(Self.wrapOutboundOut(.element(error.element)), promise: nil)
        let channel = context.channel
        context.writeAndFlush(Self.wrapOutboundOut(.close)).whenComplete { _ in channel.close(promise: nil) }
    }
}
