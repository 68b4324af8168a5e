import XMPPCore

/// XEP-0030 Service Discovery: what a hostname is and which features it offers.
///
/// Each handler declares its ``DiscoInfo``; the built-in disco#info answer merges it with
/// the features of the built-ins (XEP-0030 itself, XEP-0199 ping, XEP-0092 version).
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

/// The built-in answer to disco#info and disco#items queries addressed to a bound hostname.
enum ServiceDiscoveryFeature {
    /// Features every hostname offers through the built-ins.
    static let builtInFeatures = [Namespace.discoInfo, Namespace.discoItems, Namespace.ping, Namespace.version]

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
        for feature in (self.builtInFeatures + info.features) where seen.insert(feature).inserted {
            query.append(Element("feature", namespace: Namespace.discoInfo, attributes: ["var": feature]))
        }
        return query
    }
}
