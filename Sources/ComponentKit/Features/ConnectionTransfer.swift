import Logging
import Synchronization
import XMPPCore

/// XEP-0051 Connection Transfer: the server asks the component to reconnect to another
/// server (`<iq type='set'><query xmlns='urn:xmpp:cxfr'><server>host:port</server></query></iq>`).
///
/// Unlike the other features this is not a ``ComponentFeature``: the request comes from
/// the server to the connection, not from an entity to a bound hostname, and it changes
/// the connection's state, so the connection answers it as it reads it, before routing to
/// hostnames and in stream order. Nothing is advertised in disco#info: clients have no
/// use for it.
enum ConnectionTransfer {
    /// The transfer query of `iq`, or `nil` when it is not a transfer request.
    static func query(in iq: IQ) -> Element? {
        guard iq.type == .set, let query = iq.payload, query.name.localName == "query",
            query.name.namespace == Namespace.connectionTransfer
                || query.name.namespace == Namespace.connectionTransferVariant
        else { return nil }
        return query
    }
}

extension ComponentConnection {
    /// XEP-0051: the server orders the connection to another server. Only the server we
    /// are connected to may do so (`from` absent or the server's domain), and only over TLS.
    func handleTransferRequest(_ iq: IQ, query: Element, reply: (Element) -> Void) {
        func answer(_ response: IQ) {
            var response = response
            if response.element["from"] == nil {
                response.element["from"] =
                    self.state.withLock { state in
                        state.machine.hostnames.values.compactMap(\.boundHostname).min()
                    } ?? self.configuration.identity
            }
            reply(response.element)
        }
        let serverDomain = try? JID(self.currentStream?.serverDomain ?? self.configuration.serverDomain)
        if let from = iq.element["from"], (try? JID(from)) != serverDomain {
            self.logger.warning("refusing a connection transfer not sent by the server", metadata: ["stanza.from": "\(from)"])
            answer(iq.errorResult(StanzaError(.forbidden, text: "only the server may transfer this connection")))
            return
        }
        let serverText = query.firstChild("server", namespace: query.name.namespace)?.text ?? ""
        guard var target = ConnectTarget.parse(serverText, defaultPort: self.configuration.port) else {
            answer(iq.errorResult(StanzaError(.badRequest, text: "no usable <server/> in the transfer request")))
            return
        }
        if let domainText = query.firstChild("domain", namespace: query.name.namespace)?.text.trimmingWhitespace(),
            !domainText.isEmpty
        {
            guard let domain = try? JID(domainText), domain.localpart == nil, domain.resourcepart == nil else {
                answer(iq.errorResult(StanzaError(.badRequest, text: "<domain/> is not a domain: '\(domainText)'")))
                return
            }
            target.domain = domain.description
        }
        switch self.state.withLock({ $0.machine.transfer(to: target) }) {
        case .refusedLegacy:
            answer(iq.errorResult(StanzaError(.featureNotImplemented, text: "transfer of XEP-0114 streams is not supported")))
        case .refusedWithoutTLS:
            self.logger.warning("refusing a connection transfer on a stream without TLS", metadata: ["target": "\(target)"])
            answer(
                iq.errorResult(StanzaError(.notAcceptable, text: "a transfer is followed only from a stream protected by TLS")))
        case .accept(let target):
            answer(iq.result())
            self.requestTransfer(to: target)
        }
    }
}
