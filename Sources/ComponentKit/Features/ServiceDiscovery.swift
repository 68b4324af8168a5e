public import XMPPCore

/// XEP-0030 Service Discovery: what a hostname is and which features it offers.
///
/// Each handler declares its ``DiscoInfo``; the built-in disco#info answer
/// (``ServiceDiscoveryFeature``) merges it with what every ``ComponentFeature`` installed
/// on the hostname advertises (XEP-0030 itself, XEP-0199 ping, XEP-0092 version, the
/// handler's own features, a router's IQ routes).
public struct DiscoInfo: Hashable, Sendable {
    /// A XEP-0030 identity (`<identity category='…' type='…' name='…'/>`).
    public struct Identity: Hashable, Sendable {
        /// The category, e.g. `component`, `gateway`, `conference`.
        public var category: String
        /// The type within the category, e.g. `generic`, `irc`, `text`.
        public var type: String
        /// A human-readable name.
        public var name: String?

        /// Creates an identity.
        /// - Parameters:
        ///   - category: The category.
        ///   - type: The type.
        ///   - name: A human-readable name.
        public init(category: String, type: String, name: String? = nil) {
            self.category = category
            self.type = type
            self.name = name
        }
    }

    /// The identities (at least one is advertised; a generic component one by default).
    public var identities: [Identity]
    /// The feature namespaces the handler implements.
    public var features: [String]

    /// Creates discovery information.
    /// - Parameters:
    ///   - identities: The identities; defaults to `component/generic`.
    ///   - features: The feature namespaces the handler implements.
    public init(identities: [Identity] = [Identity(category: "component", type: "generic")], features: [String] = []) {
        self.identities = identities
        self.features = features
    }
}

/// XEP-0030 Service Discovery: answers disco#info and disco#items queries addressed to a
/// bound hostname itself (not to an address under it), without a `node`.
///
/// The disco#info answer lists what is actually installed on the hostname
/// (``ComponentContext/discoInfo``): the handler's identities and features and every
/// installed ``ComponentFeature``'s. disco#items is empty. Built into every bound
/// hostname; advertises `http://jabber.org/protocol/disco#info` and `#items`.
public struct ServiceDiscoveryFeature: ComponentFeature {
    /// Creates the feature.
    public init() {}

    /// disco#info and disco#items.
    public var discoFeatures: [String] { [Namespace.discoInfo, Namespace.discoItems] }

    /// The hostname's disco#info or (empty) disco#items; `nil` for anything else, for a
    /// query with a `node`, or for a query to an address under the hostname.
    /// - Parameters:
    ///   - iq: The request.
    ///   - context: The hostname's context, whose ``ComponentContext/discoInfo`` is listed.
    public func answer(_ iq: IQ, in context: ComponentContext) async throws -> IQ? {
        guard Self.isAddressedToHostname(iq, hostname: context.hostname) else { return nil }
        return Self.answer(iq, info: context.discoInfo)
    }

    /// Whether `iq` is addressed to the hostname itself rather than to a user or resource under it.
    static func isAddressedToHostname(_ iq: IQ, hostname: String) -> Bool {
        let to = iq.element["to"] ?? ""
        return !to.contains("@") && !to.contains("/") || to == hostname
    }

    /// The answer, or `nil` when the IQ is not a disco query this feature answers.
    static func answer(_ iq: IQ, info: DiscoInfo) -> IQ? {
        guard iq.type == .get, let query = iq.payload, query.name.localName == "query",
            query["node"] == nil
        else { return nil }
        switch query.name.namespace {
        case Namespace.discoInfo:
            return iq.result(self.infoQuery(info))
        case Namespace.discoItems:
            return iq.result(Element("query", namespace: Namespace.discoItems))
        default:
            return nil
        }
    }

    static func infoQuery(_ info: DiscoInfo) -> Element {
        var query = Element("query", namespace: Namespace.discoInfo)
        let identities = info.identities.isEmpty ? DiscoInfo().identities : info.identities
        for identity in identities {
            var element = Element(
                "identity", namespace: Namespace.discoInfo,
                attributes: ["category": identity.category, "type": identity.type])
            element["name"] = identity.name
            query.append(element)
        }
        var seen = Set<String>()
        for feature in info.features where seen.insert(feature).inserted {
            query.append(Element("feature", namespace: Namespace.discoInfo, attributes: ["var": feature]))
        }
        return query
    }
}
