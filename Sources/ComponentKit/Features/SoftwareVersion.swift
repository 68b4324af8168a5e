public import XMPPCore

/// XEP-0092 Software Version: what the built-in answers `jabber:iq:version` queries with.
public struct SoftwareVersion: Hashable, Sendable {
    /// The software name.
    public var name: String
    /// The software version.
    public var version: String
    /// The operating system, or `nil` to leave it out (the default: it helps attackers more than users).
    public var os: String?

    /// Creates a software version.
    /// - Parameters:
    ///   - name: The software name.
    ///   - version: The version.
    ///   - os: The operating system, if it should be disclosed.
    public init(name: String, version: String, os: String? = nil) {
        self.name = name
        self.version = version
        self.os = os
    }

    /// This SDK's own name and version.
    public static let sdk = SoftwareVersion(name: "swift-xmpp-component", version: "0.1.0")

    /// The answer, or `nil` when the IQ is not a version query.
    func answer(_ iq: IQ) -> IQ? {
        guard iq.type == .get, let payload = iq.payload,
            payload.name == QualifiedName(Namespace.version, "query")
        else { return nil }
        var query = Element("query", namespace: Namespace.version)
        query.append(Element("name", namespace: Namespace.version, text: self.name))
        query.append(Element("version", namespace: Namespace.version, text: self.version))
        if let os = self.os {
            query.append(Element("os", namespace: Namespace.version, text: os))
        }
        return iq.result(query)
    }
}

/// XEP-0092 Software Version: answers `jabber:iq:version` queries addressed to a bound
/// hostname itself with a ``SoftwareVersion``.
///
/// Built into every bound hostname with ``ComponentConfiguration/softwareVersion``;
/// advertises `jabber:iq:version`.
public struct SoftwareVersionFeature: ComponentFeature {
    /// What is disclosed.
    public var version: SoftwareVersion

    /// Creates the feature.
    /// - Parameter version: What to answer with.
    public init(_ version: SoftwareVersion) {
        self.version = version
    }

    /// `jabber:iq:version`.
    public var discoFeatures: [String] { [Namespace.version] }

    /// The version, for a query to the hostname itself; `nil` otherwise.
    /// - Parameters:
    ///   - iq: The request.
    ///   - context: The hostname's context.
    public func answer(_ iq: IQ, in context: ComponentContext) async throws -> IQ? {
        guard ServiceDiscoveryFeature.isAddressedToHostname(iq, hostname: context.hostname) else { return nil }
        return self.version.answer(iq)
    }
}
