import NIOCore
import XMPPCore
import XMPPStream

/// The last handler of a negotiated component stream: hands every stanza to the
/// connection's router (on the event loop, in the order read), answers the server's
/// stream close, and stops reading while the connection's budget is spent.
final class StanzaRouterHandler: ChannelDuplexHandler {
    typealias InboundIn = XMLStreamEvent
    typealias OutboundIn = Never
    typealias OutboundOut = XMLStreamFrame

    private let router: any StanzaRouting
    private let activity: StreamActivity
    private let box: StanzaRouterHandlerBox
    private let acknowledgements: StreamAcknowledgements?
    private var paused = false
    private var readPending = false
    private var needsFlush = false
    private var context: ChannelHandlerContext?

    init(
        router: any StanzaRouting, activity: StreamActivity, box: StanzaRouterHandlerBox,
        acknowledgements: StreamAcknowledgements? = nil
    ) {
        self.router = router
        self.activity = activity
        self.box = box
        self.acknowledgements = acknowledgements
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
                self.box.lastStreamError = error
                self.router.streamErrorReceived(error)
                return
            }
            if element.name.namespace == Namespace.streamManagement, let acknowledgements = self.acknowledgements {
                let before = acknowledgements.phase
                defer {
                    let after = acknowledgements.phase
                    if after != before, after == .enabled || after == .failed {
                        self.router.acknowledgementsNegotiated(enabled: after == .enabled)
                    }
                }
                if let violation = acknowledgements.received(element) {
                    self.router.protocolViolation(violation)
                    var error = StreamError(.unsupportedStanzaType)
                    error.text = violation
                    context.writeAndFlush(self.wrapOutboundOut(.element(error.element)), promise: nil)
                    context.writeAndFlush(self.wrapOutboundOut(.close), promise: nil)
                    context.close(promise: nil)
                }
                return
            }
            // Counted (XEP-0198) when the server enabled acknowledgements: handled when the
            // handler is done, or here when no handler will see it.
            let isStanza = element.name.namespace == Namespace.client || element.name.namespace == Namespace.componentAccept
            let counted = isStanza ? self.acknowledgements?.receive() : nil
            if let counted, !counted.deliver, !Self.isAnswer(element) {
                // Shutting down: left unacknowledged for the server to route again.
                counted.token.hold()
                return
            }
            self.router.route(element, size: element.approximateSize, handled: counted?.token) { reply in
                context.write(self.wrapOutboundOut(.element(reply)), promise: nil)
                self.needsFlush = true
            }
        case .streamClosed:
            context.writeAndFlush(self.wrapOutboundOut(.close), promise: nil)
            context.close(promise: nil)
        case .streamOpened:
            // A second header after negotiation is a protocol violation.
            context.close(promise: nil)
        }
    }

    /// An IQ result or error: it completes one of our requests, whatever the stream's state.
    private static func isAnswer(_ element: Element) -> Bool {
        guard element.name.localName == "iq" else { return false }
        let type = element["type"]
        return type == "result" || type == "error"
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.needsFlush {
            self.needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        guard !self.paused else {
            self.readPending = true
            return
        }
        let budget = self.router.readBudget
        guard budget.isSpent else {
            context.read()
            return
        }
        // Every mailbox together holds the connection's budget: stop reading (TCP pushes
        // back on the server) until the handlers have taken half of it.
        self.paused = true
        self.readPending = true
        self.activity.isPaused = true
        self.router.readingPaused()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        budget.whenAvailable {
            eventLoop.execute { loopBound.value.resume() }
        }
    }

    private func resume() {
        guard self.paused else { return }
        self.paused = false
        self.activity.isPaused = false
        self.activity.touch()
        if self.readPending, let context = self.context {
            self.readPending = false
            context.read()
        }
    }
}

/// Where a stream's router handler sends what it reads.
protocol StanzaRouting: Sendable {
    /// Routes an element of about `size` bytes read from the server, on the event loop.
    /// `reply` writes an element back on the same stream (flushed at the end of the read).
    /// `handled`, when acknowledgements are on, goes with the stanza to its handler and is
    /// marked done when the handler is (or dropped here when no handler will see it).
    func route(_ element: Element, size: Int, handled: HandledToken?, reply: (Element) -> Void)

    /// The server broke a protocol rule the router handler checks (it ends the stream).
    func protocolViolation(_ description: String)

    /// The server answered `<enable/>`: acknowledgements are on, or it refused them.
    func acknowledgementsNegotiated(enabled: Bool)

    /// The server sent a stream error.
    func streamErrorReceived(_ error: StreamError)

    /// The budget whose exhaustion pauses reading.
    var readBudget: ConnectionBudget { get }

    /// Reading paused because ``readBudget`` is spent (for metrics).
    func readingPaused()
}

extension Element {
    /// About how many bytes the element took on the wire (names, attributes, text; no
    /// escaping or namespace declarations), for budgets. Cheap: string lengths are O(1).
    var approximateSize: Int {
        var size = self.name.localName.utf8.count * 2 + 5
        for attribute in self.attributes {
            size += attribute.name.localName.utf8.count + attribute.value.utf8.count + 4
        }
        for child in self.children {
            switch child {
            case .element(let element): size += element.approximateSize
            case .text(let text): size += text.utf8.count
            }
        }
        return size
    }
}
