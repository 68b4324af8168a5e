public import XMPPCore

/// XEP-0199 XMPP Ping: answers `<ping xmlns='urn:xmpp:ping'/>` with an empty result, for
/// the hostname and any address under it; also builds the ping the connection sends
/// toward the server to check liveness.
///
/// Built into every bound hostname; advertises `urn:xmpp:ping`.
public struct PingFeature: ComponentFeature {
    /// Creates the feature.
    public init() {}

    /// `urn:xmpp:ping`.
    public var discoFeatures: [String] { [Namespace.ping] }

    /// An empty result to a ping `get`; `nil` for anything else.
    /// - Parameters:
    ///   - iq: The request.
    ///   - context: The hostname's context (unused).
    public func answer(_ iq: IQ, in context: ComponentContext) async throws -> IQ? {
        Self.answer(iq)
    }

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
