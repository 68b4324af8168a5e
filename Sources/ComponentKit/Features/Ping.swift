import XMPPCore

/// XEP-0199 XMPP Ping: answers `<ping xmlns='urn:xmpp:ping'/>` with an empty result, and
/// builds the ping the connection sends toward the server to check liveness.
enum PingFeature {
    /// The answer, or `nil` when the IQ is not a ping.
    static func answer(_ iq: IQ) -> IQ? {
        guard iq.type == .get, let payload = iq.payload,
            payload.name == QualifiedName(Namespace.ping, "ping")
        else { return nil }
        return iq.result()
    }

    /// A ping request.
    static func request(from: JID?, to: JID?, id: String) -> IQ {
        IQ(type: .get, from: from, to: to, id: id, payload: Element("ping", namespace: Namespace.ping))
    }
}
