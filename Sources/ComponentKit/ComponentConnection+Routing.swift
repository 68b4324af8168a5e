import CoreMetrics
import Logging
import NIOCore
import Synchronization
import XMPPCore

extension ComponentConnection: StanzaRouting {
    /// Routes an element read from the server, on the stream's event loop.
    ///
    /// IQ answers complete pending requests; stanzas to a bound hostname go to that
    /// hostname's mailbox (pausing the stream's reads when it is full); stanzas for a
    /// hostname that is not bound are bounced with `service-unavailable` when the bounce
    /// can legally be sent, and logged otherwise.
    func route(
        _ element: Element,
        reply: (Element) -> Void,
        pause: (String) -> @Sendable () -> Void
    ) {
        guard element.name.namespace == Namespace.client else {
            self.logger.debug("ignoring a non-stanza element", metadata: ["element": "\(element.name)"])
            return
        }
        let localName = element.name.localName
        let type = element["type"]
        if localName == "iq", type == "result" || type == "error", let iq = IQ(element), self.pending.complete(with: iq) {
            return
        }
        if localName == "iq", type == "set", let iq = IQ(element), let query = iq.payload,
            query.name.localName == "query",
            query.name.namespace == Namespace.connectionTransfer || query.name.namespace == Namespace.connectionTransferVariant
        {
            self.handleTransferRequest(iq, query: query, reply: reply)
            return
        }
        guard let to = element["to"], let key = Self.routingKey(to), let binding = self.lookup(key) else {
            self.logger.debug("dropping a stanza for a hostname not bound here", metadata: ["stanza.to": "\(element["to"] ?? "-")"])
            return
        }
        guard binding.boundHostname != nil || binding.currentState == .unbinding else {
            self.metrics.bounced.increment()
            self.bounce(element, reply: reply)
            return
        }
        binding.countIn()
        switch binding.mailbox.offer(element) {
        case .accepted:
            break
        case .acceptedAndFull:
            binding.mailbox.whenDrained(pause(key))
        case .closed:
            self.metrics.bounced.increment()
            self.bounce(element, reply: reply)
        }
    }

    /// XEP-0051: the server orders the connection to another server. Only the server we
    /// are connected to may do so (`from` absent or the server's domain).
    private func handleTransferRequest(_ iq: IQ, query: Element, reply: (Element) -> Void) {
        func answer(_ response: IQ) {
            var response = response
            if response.element["from"] == nil {
                response.element["from"] = self.allBindings().compactMap(\.boundHostname).first ?? self.configuration.identity
            }
            reply(response.element)
        }
        let serverDomain = try? JID(self.configuration.serverDomain)
        if let from = iq.element["from"], (try? JID(from)) != serverDomain {
            self.logger.warning("refusing a connection transfer not sent by the server", metadata: ["stanza.from": "\(from)"])
            answer(iq.errorResult(StanzaError(.forbidden, text: "only the server may transfer this connection")))
            return
        }
        guard !self.isLegacy else {
            answer(iq.errorResult(StanzaError(.featureNotImplemented, text: "transfer of XEP-0114 streams is not supported")))
            return
        }
        let serverText = query.firstChild("server", namespace: query.name.namespace)?.text ?? ""
        guard let target = ConnectTarget.parse(serverText, defaultPort: self.configuration.port) else {
            answer(iq.errorResult(StanzaError(.badRequest, text: "no usable <server/> in the transfer request")))
            return
        }
        answer(iq.result())
        self.requestTransfer(to: target)
    }

    func streamErrorReceived(_ error: StreamError) {
        self.logger.warning("the server sent a stream error", metadata: ["error": "\(error)"])
        self.recordStreamError(error)
    }

    /// Answers a stanza that no handler will see: IQ requests and messages get
    /// `service-unavailable`; presences, results and errors are dropped (never answer an
    /// error with an error).
    private func bounce(_ element: Element, reply: (Element) -> Void) {
        let type = element["type"]
        guard type != "error", type != "result" else { return }
        switch element.name.localName {
        case "iq" where type == "get" || type == "set":
            if let iq = IQ(element) {
                reply(iq.errorResult(StanzaError(.serviceUnavailable)).element)
            }
        case "message":
            if let message = Message(element) {
                reply(message.errorReply(StanzaError(.serviceUnavailable)).element)
            }
        default:
            break
        }
    }

    // MARK: Handler execution

    /// Runs one hostname's handler over its mailbox, one stanza at a time, in order.
    func work(_ binding: Binding) async {
        for await element in binding.mailbox.sequence {
            await self.process(element, binding: binding)
        }
    }

    private func process(_ element: Element, binding: Binding) async {
        guard let stanza = Stanza(element) else {
            if element.name.localName == "iq", let iq = IQ(element) ?? Self.lenientIQ(element) {
                try? await self.send(element: iq.errorResult(StanzaError(.badRequest)).element)
            }
            return
        }
        let hostname = binding.boundHostname ?? binding.requested
        var request: IQ?
        if case .iq(let iq) = stanza, iq.type.isRequest {
            request = iq
        }
        let tracker = request.map { IQReplyTracker(requestID: $0.requestID) }
        let logger = self.handlerLogger(hostname)
        let context = ComponentContext(hostname: hostname, logger: logger, connection: self, replyTracker: tracker)
        do {
            try await binding.handler.handle(stanza, in: context)
        } catch let error as StanzaError {
            if let request, let tracker, tracker.markAnswered() {
                await self.answer(request.errorResult(error), logger: logger)
            }
        } catch {
            self.metrics.handlerErrors.increment()
            logger.error(
                "handler threw", metadata: ["error": "\(error)", "stanza.id": "\(stanza.id ?? "-")"])
            if let request, let tracker, tracker.markAnswered() {
                await self.answer(
                    request.errorResult(StanzaError(.internalServerError)), logger: logger)
            }
        }
        guard let request, let tracker, !tracker.isAnswered else { return }
        let answer = self.builtInAnswer(to: request, binding: binding) ?? request.errorResult(StanzaError(.serviceUnavailable))
        if tracker.markAnswered() {
            await self.answer(answer, logger: logger)
        }
    }

    private func answer(_ iq: IQ, logger: Logger) async {
        do {
            try await self.send(element: iq.element)
        } catch {
            logger.warning("could not send an IQ answer", metadata: ["error": "\(error)", "stanza.id": "\(iq.requestID)"])
        }
    }

    /// The built-in features' answer to an unanswered request: XEP-0030 and XEP-0092 for
    /// the hostname itself, XEP-0199 for anything under it.
    private func builtInAnswer(to iq: IQ, binding: Binding) -> IQ? {
        if let ping = PingFeature.answer(iq) {
            return ping
        }
        let to = iq.element["to"] ?? ""
        let addressedToHostname = !to.contains("@") && !to.contains("/")
            || to == (binding.boundHostname ?? binding.requested)
        guard addressedToHostname else { return nil }
        if let disco = ServiceDiscoveryFeature.answer(iq, info: binding.handler.discoInfo) {
            return disco
        }
        return self.configuration.softwareVersion.answer(iq)
    }

    private static func lenientIQ(_ element: Element) -> IQ? {
        guard element["id"] != nil else { return nil }
        var copy = element
        copy["type"] = "get"
        return IQ(copy)
    }
}
