/// A stream error (RFC 6120 §4.9): the condition that ends an XML stream.
///
/// Serialised as `<stream:error>` with one condition element in
/// ``Namespace/streams``, an optional `<text/>` and an optional application-specific child.
public struct StreamError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The defined stream error conditions (RFC 6120 §4.9.3).
    public enum Condition: String, Hashable, Sendable, CaseIterable {
        /// §4.9.3.1
        case badFormat = "bad-format"
        /// §4.9.3.2
        case badNamespacePrefix = "bad-namespace-prefix"
        /// §4.9.3.3
        case conflict
        /// §4.9.3.4
        case connectionTimeout = "connection-timeout"
        /// §4.9.3.5
        case hostGone = "host-gone"
        /// §4.9.3.6
        case hostUnknown = "host-unknown"
        /// §4.9.3.7
        case improperAddressing = "improper-addressing"
        /// §4.9.3.8
        case internalServerError = "internal-server-error"
        /// §4.9.3.9
        case invalidFrom = "invalid-from"
        /// §4.9.3.10
        case invalidNamespace = "invalid-namespace"
        /// §4.9.3.11
        case invalidXML = "invalid-xml"
        /// §4.9.3.12
        case notAuthorized = "not-authorized"
        /// §4.9.3.13
        case notWellFormed = "not-well-formed"
        /// §4.9.3.14
        case policyViolation = "policy-violation"
        /// §4.9.3.15
        case remoteConnectionFailed = "remote-connection-failed"
        /// §4.9.3.16
        case reset
        /// §4.9.3.17
        case resourceConstraint = "resource-constraint"
        /// §4.9.3.18
        case restrictedXML = "restricted-xml"
        /// §4.9.3.19: the element's text names the host (and port) to connect to instead.
        case seeOtherHost = "see-other-host"
        /// §4.9.3.20
        case systemShutdown = "system-shutdown"
        /// §4.9.3.21
        case undefinedCondition = "undefined-condition"
        /// §4.9.3.22
        case unsupportedEncoding = "unsupported-encoding"
        /// §4.9.3.23
        case unsupportedFeature = "unsupported-feature"
        /// §4.9.3.24
        case unsupportedStanzaType = "unsupported-stanza-type"
        /// §4.9.3.25
        case unsupportedVersion = "unsupported-version"
    }

    /// The condition.
    public var condition: Condition
    /// Human-readable text, if any (never shown to peers as anything but text).
    public var text: String?
    /// For ``Condition/seeOtherHost``: the host (and optional port) to connect to.
    public var seeOtherHost: String?
    /// An application-specific condition element, if any.
    public var applicationCondition: Element?

    /// Creates a stream error.
    /// - Parameters:
    ///   - condition: The defined condition.
    ///   - text: Optional descriptive text.
    ///   - seeOtherHost: The alternative host, for ``Condition/seeOtherHost``.
    ///   - applicationCondition: An optional application-specific element.
    public init(
        _ condition: Condition,
        text: String? = nil,
        seeOtherHost: String? = nil,
        applicationCondition: Element? = nil
    ) {
        self.condition = condition
        self.text = text
        self.seeOtherHost = seeOtherHost
        self.applicationCondition = applicationCondition
    }

    /// Parses a `<stream:error>` element.
    ///
    /// An unknown or missing condition becomes ``Condition/undefinedCondition``
    /// (RFC 6120 §4.9.3.21), so a peer's error is never lost.
    /// - Parameter element: The `error` element in ``Namespace/stream``.
    /// - Returns: `nil` if `element` is not a stream error.
    public init?(element: Element) {
        guard element.name == QualifiedName(Namespace.stream, "error") else { return nil }
        var condition = Condition.undefinedCondition
        var text: String?
        var seeOtherHost: String?
        var applicationCondition: Element?
        for child in element.elements {
            if child.name.namespace == Namespace.streams {
                if child.name.localName == "text" {
                    text = child.text
                } else if let known = Condition(rawValue: child.name.localName) {
                    condition = known
                    if known == .seeOtherHost {
                        let host = child.text
                        seeOtherHost = host.isEmpty ? nil : host
                    }
                }
            } else if applicationCondition == nil {
                applicationCondition = child
            }
        }
        self.init(condition, text: text, seeOtherHost: seeOtherHost, applicationCondition: applicationCondition)
    }

    /// The `<stream:error>` element.
    public var element: Element {
        var error = Element("error", namespace: Namespace.stream)
        error.append(
            Element(self.condition.rawValue, namespace: Namespace.streams, text: self.seeOtherHost)
        )
        if let text = self.text {
            error.append(Element("text", namespace: Namespace.streams, text: text))
        }
        if let applicationCondition = self.applicationCondition {
            error.append(applicationCondition)
        }
        return error
    }

    /// `stream error <condition>: <text>`.
    public var description: String {
        var result = "stream error <\(self.condition.rawValue)>"
        if let host = self.seeOtherHost { result += " (\(host))" }
        if let text = self.text, !text.isEmpty { result += ": \(text)" }
        return result
    }
}
