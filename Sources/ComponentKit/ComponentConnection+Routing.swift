import CoreMetrics
import Logging
import NIOCore
import Synchronization
import XMPPCore

// Inbound: what the server sends, routed on the event loop in the order it arrived, and
// each hostname's handler loop.
extension ComponentConnection: StanzaRouting {
    /// Routes an element read from a stream, on the connection's event loop.
    ///
    /// IQ answers complete pending requests (a bind result changes the binding state here,
    /// before the next element is routed); stanzas to a hostname served here go to its
    /// mailbox, within its budget; what cannot be delivered is answered when an answer
    /// is due (IQ requests, messages) and counted otherwise.
    ///
    /// `handled` (acknowledgements on) travels with a stanza into its mailbox and is
    /// marked done by the handler loop; on every other path it is dropped here, which
    /// marks the stanza handled when this returns.
    func route(_ element: Element, size: Int, handled: HandledToken?, reply: (Element) -> Void) {
        guard element.name.namespace == Namespace.client else {
            self.logger.debug("ignoring a non-stanza element", metadata: ["element": "\(element.name)"])
            return
        }
        let localName = element.name.localName
        let type = element["type"]
        if localName == "iq", type == "result" || type == "error", let iq = IQ(element) {
            if self.pending.complete(with: iq) { return }
            if self.pending.isOwnID(iq.requestID) {
                // A late answer to one of our own requests (a keepalive ping that timed out
                // while reading was paused, a request given up): no handler asked for it.
                self.metrics.dropped.increment()
                self.logger.debug("dropping a late answer to our own request", metadata: ["stanza.id": "\(iq.requestID)"])
                return
            }
        }
        if localName == "iq", type == "set", let iq = IQ(element), let query = ConnectionTransfer.query(in: iq) {
            self.handleTransferRequest(iq, query: query, reply: reply)
            return
        }
        guard let to = element["to"], let key = HostnameKey(address: to) else {
            self.metrics.dropped.increment()
            self.logger.debug("dropping a stanza without a usable 'to'", metadata: ["stanza.to": "\(element["to"] ?? "-")"])
            return
        }
        let (decision, binding) = self.state.withLock { state -> (ConnectionStateMachine.RouteDecision, Binding?) in
            let decision = state.machine.route(key, from: element["from"])
            guard case .deliver(let owner, _) = decision else { return (decision, nil) }
            return (decision, state.bindings[owner])
        }
        guard case .deliver(_, let mayAnswer) = decision, let binding else {
            // Not bound here (e.g. routed by the server while our unbind was in flight, and
            // written after its result). An answer would have to come from that hostname,
            // and the server would end the whole stream with invalid-from: count it instead.
            self.metrics.dropped.increment()
            self.logger.debug(
                "dropping a stanza for a hostname not bound here",
                metadata: ["stanza.to": "\(to)", "stanza.id": "\(element["id"] ?? "-")"])
            return
        }
        binding.countIn()
        switch binding.mailbox.offer(element, size: size, handled: handled) {
        case .accepted:
            self.budget.add(size)
        case .overBudget:
            // This hostname's handler is behind: answer its excess instead of pausing the
            // stream that every other hostname shares.
            binding.metrics.overBudget.increment()
            guard mayAnswer else {
                self.metrics.dropped.increment()
                return
            }
            self.answer(
                element,
                with: StanzaError(.resourceConstraint, type: .wait, text: "\(binding.requested) is busy; try again later"),
                reply: reply)
        case .closed:
            self.metrics.dropped.increment()
        }
    }

    func acknowledgementsNegotiated(enabled: Bool) {
        if enabled {
            self.logger.info("stream management enabled: handled stanzas are acknowledged (XEP-0198)")
        } else {
            self.logger.warning("the server refused to enable stream management (XEP-0198); no acknowledgements")
        }
    }

    func protocolViolation(_ description: String) {
        self.logger.warning("the server broke the stream's protocol; closing it", metadata: ["reason": "\(description)"])
        self.recordError(description)
    }

    func streamErrorReceived(_ error: StreamError) {
        self.logger.warning("the server sent a stream error", metadata: ["error": "\(error)"])
        self.recordError("\(error)")
    }

    /// Answers a stanza that no handler will see: IQ requests and messages get `error`
    /// (from the address they were sent to); presences, results and errors are dropped and
    /// counted (never answer an error with an error).
    private func answer(_ original: Element, with error: StanzaError, reply: (Element) -> Void) {
        let type = original["type"]
        // The error carries the envelope, not the payload: a refused 1 MiB stanza is not
        // sent back whole.
        var element = original
        element.children.removeAll()
        switch element.name.localName {
        case "iq" where type == "get" || type == "set":
            if let iq = IQ(element) {
                self.metrics.bounced.increment()
                reply(iq.errorResult(error).element)
                return
            }
        case "message" where type != "error":
            if let message = Message(element) {
                self.metrics.bounced.increment()
                reply(message.errorReply(error).element)
                return
            }
        default:
            break
        }
        self.metrics.dropped.increment()
    }

    // MARK: Handler execution

    /// Runs one hostname's handler over its mailbox, in order, a batch at a time. Runs on
    /// the connection's event loop (see ``EventLoopTaskExecutor``).
    func work(_ binding: Binding) async {
        // The hostname and its logger change only when it is bound (again): made once
        // then, not per stanza (a logger with new metadata costs a render per stanza).
        var hostname = binding.requested
        var logger = self.handlerLogger(hostname)
        while let batch = await binding.mailbox.next() {
            for item in batch {
                switch item {
                case .stanza(let element, let size, let handled):
                    await self.process(element, binding: binding, hostname: hostname, logger: logger)
                    binding.mailbox.consumed(size: size)
                    handled?.done()
                case .bound(let bound):
                    if bound != hostname {
                        hostname = bound
                        logger = self.handlerLogger(bound)
                    }
                    let context = binding.dispatcher.context(hostname: hostname, logger: logger, transport: self)
                    await binding.handler.hostnameBound(hostname, in: context)
                case .unbound(let hostname):
                    await binding.handler.hostnameUnbound(hostname)
                }
            }
        }
    }

    private func process(_ element: Element, binding: Binding, hostname: String, logger: Logger) async {
        guard let stanza = Stanza(element) else {
            if element.name.localName == "iq", let iq = IQ(element) ?? Self.lenientIQ(element) {
                try? await self.send(element: iq.errorResult(StanzaError(.badRequest)).element)
            }
            return
        }
        let outcome = await binding.dispatcher.dispatch(stanza, hostname: hostname, logger: logger, transport: self)
        if outcome.handlerError != nil {
            self.metrics.handlerErrors.increment()
        }
    }

    private static func lenientIQ(_ element: Element) -> IQ? {
        guard element["id"] != nil else { return nil }
        var copy = element
        copy["type"] = "get"
        return IQ(copy)
    }
}

extension ComponentConnection {
    var readBudget: ConnectionBudget { self.budget }

    func readingPaused() {
        self.metrics.readPauses.increment()
        self.logger.notice(
            "reading paused: the handlers are behind by the connection's whole budget",
            metadata: ["budget.bytes": "\(self.budget.limit)"])
    }
}
