import ComponentKit
import Logging
import NIOCore
import Synchronization
import XMPPCore
import XMPPStream

/// One local component's XEP-0114 stream on an external listener: the handshake, then
/// stanzas both ways. Upstream, each stanza is sent in the order read (waiting while the
/// upstream is down); a stanza that cannot be carried is answered to the component with
/// an error stanza. A stanza whose `from` is not under the session's hostname ends this
/// stream (`invalid-from`), and only this one.
final class ExternalSession: Sendable {
    typealias Channel = NIOAsyncChannel<XMLStreamEvent, XMLStreamFrame>

    private let channel: Channel
    private let writer = Mutex<NIOAsyncChannelOutboundWriter<XMLStreamFrame>?>(nil)
    private let closed = Atomic<Bool>(false)

    init(channel: Channel) {
        self.channel = channel
    }

    /// Writes a stanza from upstream to the component; waits while the component is not
    /// reading (the socket is not writable).
    func deliver(_ element: Element) async throws {
        guard !self.closed.load(ordering: .relaxed), let writer = self.writer.withLock({ $0 }) else {
            throw ChannelError.ioOnClosedChannel
        }
        try await writer.write(.element(element))
    }

    /// Ends the stream with an error.
    func close(_ error: StreamError) async {
        guard !self.closed.exchange(true, ordering: .relaxed), let writer = self.writer.withLock({ $0 }) else {
            self.channel.channel.close(promise: nil)
            return
        }
        try? await writer.write(contentsOf: [.element(error.element), .close])
        self.channel.channel.close(promise: nil)
    }

    /// Serves the stream until it ends.
    /// - Parameters:
    ///   - gateway: Finds the hostnames served on this listener.
    ///   - address: The listener's address.
    ///   - logger: The gateway's logger.
    ///   - authenticated: Called once the handshake succeeded.
    func serve(
        gateway: ExternalGateway, address: ListenAddress, logger: Logger, authenticated: @Sendable () -> Void = {}
    ) async {
        var logger = logger
        let timeout = self.channel.channel.eventLoop.scheduleTask(in: .seconds(10)) { [channel = self.channel.channel] in
            channel.close(promise: nil)
        }
        var link: ExternalLink?
        do {
            try await self.channel.executeThenClose { inbound, outbound in
                self.writer.withLock { $0 = outbound }
                var machine = ExternalAcceptStateMachine(secrets: { gateway.handler(for: $0, on: address)?.secret })
                var handler: ExternalHandler?
                for try await event in inbound {
                    if let handler, let link {
                        switch event {
                        case .element(let element):
                            guard try await self.forward(element, handler: handler, outbound: outbound, logger: logger) else {
                                return
                            }
                        case .streamClosed:
                            self.closed.store(true, ordering: .relaxed)
                            await link.detach(self)
                            try? await outbound.write(.close)
                            return
                        case .streamOpened:
                            await self.fail(StreamError(.invalidXML, text: "unexpected stream header"), outbound: outbound)
                            return
                        }
                        continue
                    }
                    let action: ExternalAcceptStateMachine.Action
                    switch event {
                    case .streamOpened(let header): action = machine.streamOpened(header)
                    case .element(let element): action = machine.received(element)
                    case .streamClosed: return
                    }
                    switch action {
                    case .none:
                        break
                    case .sendHeader(let header):
                        try await outbound.write(.header(header))
                    case .fail(let error, let header):
                        if let header { try? await outbound.write(.header(header)) }
                        logger.info("local component refused", metadata: ["stream.error": "\(error.condition.rawValue)"])
                        await self.fail(error, outbound: outbound)
                        return
                    case .claim(let hostname):
                        guard let found = gateway.handler(for: hostname, on: address) else {
                            await self.fail(StreamError(.hostUnknown, text: "no longer served"), outbound: outbound)
                            return
                        }
                        switch await found.link.attach(self) {
                        case .accepted:
                            timeout.cancel()
                            authenticated()
                            handler = found
                            link = found.link
                            logger = found.logger
                            try await self.channel.channel.triggerUserOutboundEvent(XMLStreamHandler.Authenticated())
                            if let success = machine.claimed() {
                                try await outbound.write(.element(success))
                            }
                            await found.link.activate(self)
                        case .conflict:
                            logger.info(
                                "local component refused: hostname already connected",
                                metadata: ["component.hostname": "\(hostname)"])
                            if case .fail(let error, _) = machine.conflicted() {
                                await self.fail(error, outbound: outbound)
                            }
                            return
                        case .stopped:
                            await self.fail(StreamError(.hostUnknown, text: "no longer served"), outbound: outbound)
                            return
                        case .failed(let reason):
                            logger.warning("could not bind the hostname upstream", metadata: ["reason": "\(reason)"])
                            await self.fail(
                                StreamError(.internalServerError, text: "the host could not bind \(hostname)"), outbound: outbound
                            )
                            return
                        }
                    }
                }
            }
        } catch {
            logger.info("local component stream ended", metadata: ["error": "\(error)"])
        }
        timeout.cancel()
        self.closed.store(true, ordering: .relaxed)
        self.writer.withLock { $0 = nil }
        await link?.detach(self)
    }

    private func fail(_ error: StreamError, outbound: NIOAsyncChannelOutboundWriter<XMLStreamFrame>) async {
        self.closed.store(true, ordering: .relaxed)
        try? await outbound.write(contentsOf: [.element(error.element), .close])
    }

    /// Sends one element from the component upstream. Returns `false` when the stream must end.
    private func forward(
        _ element: Element, handler: ExternalHandler, outbound: NIOAsyncChannelOutboundWriter<XMLStreamFrame>,
        logger: Logger
    ) async throws -> Bool {
        guard element.name.namespace == Namespace.client,
            ["message", "presence", "iq"].contains(element.name.localName)
        else {
            await self.fail(StreamError(.unsupportedStanzaType, text: "only stanzas after the handshake"), outbound: outbound)
            return false
        }
        var element = element
        let own = HostnameKey(handler.hostname)
        if let from = element["from"] {
            guard let key = HostnameKey(address: from), key.domainKey == own?.domainKey else {
                logger.warning("local component sent a stanza from another address", metadata: ["stanza.from": "\(from)"])
                await self.fail(StreamError(.invalidFrom, text: "'\(from)' is not under \(handler.hostname)"), outbound: outbound)
                return false
            }
        } else {
            element["from"] = handler.hostname
        }
        guard let stanza = Stanza(element) else {
            try await self.refuse(element, StanzaError(.badRequest, text: "not a valid stanza"), outbound: outbound)
            return true
        }
        if element.name.localName == "iq", element.elements.contains(where: { $0.name.namespace == Namespace.component }) {
            // XEP-0225 binding belongs to the host's own upstream stream: relayed, it would
            // bind or unbind hostnames there behind the host's back. A component's request
            // to stop routing to it (the SDK sends one before closing a XEP-0114 stream) is
            // refused like any server that does not know it: closing its stream is what
            // releases the hostname here (what arrives meanwhile waits for the grace).
            logger.debug("refusing a XEP-0225 binding request from a local component")
            try await self.refuse(
                element,
                StanzaError(
                    .featureNotImplemented,
                    text: "binding is the host's: close the stream to leave (the hostname waits for the grace)"),
                outbound: outbound)
            return true
        }
        do {
            try await handler.send(stanza)
        } catch let error as ComponentError {
            logger.debug("could not send upstream", metadata: ["error": "\(error)"])
            try await self.refuse(element, Self.stanzaError(for: error), outbound: outbound)
        } catch {
            try await self.refuse(element, StanzaError(.internalServerError, text: "\(error)"), outbound: outbound)
        }
        return true
    }

    /// Answers the component's own stanza with an error (IQ requests and messages only).
    private func refuse(_ element: Element, _ error: StanzaError, outbound: NIOAsyncChannelOutboundWriter<XMLStreamFrame>)
        async throws
    {
        let type = element["type"]
        let answerable =
            (element.name.localName == "iq" && (type == "get" || type == "set"))
            || (element.name.localName == "message" && type != "error")
        guard answerable else { return }
        var reply = element
        reply.children.removeAll()
        reply["to"] = element["from"]
        reply["from"] = element["to"]
        reply["type"] = "error"
        reply.append(error.element)
        try await outbound.write(.element(reply))
    }

    static func stanzaError(for error: ComponentError) -> StanzaError {
        switch error.kind {
        case .queueFull: StanzaError(.resourceConstraint, type: .wait, text: "the upstream is down and the queue is full")
        case .expired: StanzaError(.remoteServerTimeout, text: "the upstream stayed down longer than the queue keeps stanzas")
        case .invalidStanza: StanzaError(.badRequest, text: error.message)
        default: StanzaError(.serviceUnavailable, text: error.message)
        }
    }
}
