import NIOCore
import XMPPCore
import XMPPStream

/// The last handler of a negotiated component stream: hands every stanza to the
/// connection's router, answers the server's stream close, and pauses reading while a
/// hostname's mailbox is full.
final class StanzaRouterHandler: ChannelDuplexHandler {
    typealias InboundIn = XMLStreamEvent
    typealias OutboundIn = Never
    typealias OutboundOut = XMLStreamFrame

    private let router: any StanzaRouting
    private let activity: StreamActivity
    private let box: StanzaRouterHandlerBox
    private var blocked: Set<String> = []
    private var readPending = false
    private var context: ChannelHandlerContext?
    private(set) var closedByServer = false
    private(set) var lastStreamError: StreamError?

    init(router: any StanzaRouting, activity: StreamActivity, box: StanzaRouterHandlerBox) {
        self.router = router
        self.activity = activity
        self.box = box
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.activity.touch()
        switch self.unwrapInboundIn(data) {
        case .element(let element):
            if element.name == QualifiedName(Namespace.stream, "error") {
                let error = StreamError(element: element) ?? StreamError(.undefinedCondition)
                self.lastStreamError = error
                self.box.lastStreamError = error
                self.router.streamErrorReceived(error)
                return
            }
            self.router.route(element, reply: { [weak self] reply in self?.write(reply) }, pause: { [weak self] key in
                self?.block(key) ?? {}
            })
        case .streamClosed:
            self.closedByServer = true
            context.writeAndFlush(self.wrapOutboundOut(.close), promise: nil)
            context.close(promise: nil)
        case .streamOpened:
            // A second header after negotiation is a protocol violation.
            context.close(promise: nil)
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.blocked.isEmpty {
            context.read()
        } else {
            self.readPending = true
        }
    }

    /// Pauses reading until the returned closure runs (from any thread).
    private func block(_ key: String) -> @Sendable () -> Void {
        self.blocked.insert(key)
        guard let eventLoop = self.context?.eventLoop else { return {} }
        let box = NIOLoopBound(self, eventLoop: eventLoop)
        return {
            eventLoop.execute {
                box.value.unblock(key)
            }
        }
    }

    private func unblock(_ key: String) {
        self.blocked.remove(key)
        if self.blocked.isEmpty, self.readPending, let context = self.context {
            self.readPending = false
            context.read()
        }
    }

    private func write(_ element: Element) {
        guard let context = self.context else { return }
        context.writeAndFlush(self.wrapOutboundOut(.element(element)), promise: nil)
    }
}

/// Where a stream's router handler sends what it reads.
protocol StanzaRouting: Sendable {
    /// Routes an element read from the server. `reply` writes an element back on the same
    /// stream (on the event loop); `pause` stops reading for a routing key and returns the
    /// closure that resumes it.
    func route(
        _ element: Element,
        reply: (Element) -> Void,
        pause: (String) -> @Sendable () -> Void
    )

    /// The server sent a stream error.
    func streamErrorReceived(_ error: StreamError)
}
