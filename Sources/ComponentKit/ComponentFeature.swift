public import XMPPCore

/// A protocol feature a hostname offers: the service-discovery features and identities it
/// advertises (XEP-0030), and the IQ requests it answers.
///
/// Every bound hostname gets the built-in features (``ServiceDiscoveryFeature``,
/// ``PingFeature``, ``SoftwareVersionFeature``); a handler adds its own with
/// ``ComponentHandler/features``. A hostname's disco#info answer is built from the
/// features actually installed on it, plus the handler's ``ComponentHandler/discoInfo``
/// (which a ``StanzaRouter`` fills from its IQ routes).
///
/// An IQ request reaches the handler first. When the handler returns without answering,
/// each feature in turn (the handler's, then the built-ins) may answer it; the first
/// non-`nil` answer is sent, and a request no one answers gets `service-unavailable`.
///
/// ```swift
/// struct TimeFeature: ComponentFeature {
///     var discoFeatures: [String] { ["urn:xmpp:time"] }
///     func answer(_ iq: IQ, in context: ComponentContext) async throws -> IQ? {
///         guard iq.type == .get, iq.payload?.name == QualifiedName("urn:xmpp:time", "time") else { return nil }
///         return iq.result(Element("time", namespace: "urn:xmpp:time", children: [/* … */]))
///     }
/// }
/// ```
public protocol ComponentFeature: Sendable {
    /// The feature namespaces to advertise in disco#info (`var` attributes).
    var discoFeatures: [String] { get }

    /// The identities to advertise in disco#info, beside the handler's; none by default.
    var discoIdentities: [DiscoInfo.Identity] { get }

    /// Answers an IQ request (`get` or `set`) the handler left unanswered.
    /// - Parameters:
    ///   - iq: The request.
    ///   - context: The hostname's context (its ``ComponentContext/discoInfo`` lists every
    ///     installed feature).
    /// - Returns: The answer (`iq.result(…)` or `iq.errorResult(…)`), or `nil` when this
    ///   feature does not handle the request.
    /// - Throws: A ``/XMPPCore/StanzaError`` to answer with that error.
    func answer(_ iq: IQ, in context: ComponentContext) async throws -> IQ?
}

extension ComponentFeature {
    /// No identities.
    public var discoIdentities: [DiscoInfo.Identity] { [] }
}

/// The features installed on a hostname: the handler's, then the connection's built-ins.
/// Made once per binding; the handler's features are read when asked (a host's handler
/// can be replaced while bound).
final class InstalledFeatures: Sendable {
    let handler: any ComponentHandler
    let builtIns: [any ComponentFeature]

    init(handler: any ComponentHandler, builtIns: [any ComponentFeature]) {
        self.handler = handler
        self.builtIns = builtIns
    }

    /// The handler's own features, then the built-ins, in the order they are asked.
    var features: [any ComponentFeature] {
        let own = self.handler.features
        return own.isEmpty ? self.builtIns : own + self.builtIns
    }

    /// The disco#info of the hostname: the handler's identities (or the features', or a
    /// generic component one), the built-ins' features first, then the handler's and its
    /// features', without duplicates.
    var discoInfo: DiscoInfo {
        let handlerInfo = self.handler.discoInfo
        var identities = handlerInfo.identities
        var seenIdentities = Set(identities)
        for feature in self.handler.features + self.builtIns {
            for identity in feature.discoIdentities where seenIdentities.insert(identity).inserted {
                identities.append(identity)
            }
        }
        if identities.isEmpty {
            identities = DiscoInfo().identities
        }
        // Built-ins last when asked, first in the listing: the order disco answers had.
        let builtIns = self.builtIns.flatMap(\.discoFeatures)
        let own = self.handler.features.flatMap(\.discoFeatures)
        var seen = Set<String>()
        var namespaces: [String] = []
        for namespace in builtIns + handlerInfo.features + own where seen.insert(namespace).inserted {
            namespaces.append(namespace)
        }
        return DiscoInfo(identities: identities, features: namespaces)
    }
}
