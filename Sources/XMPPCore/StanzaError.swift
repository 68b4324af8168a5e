/// A stanza error (RFC 6120 §8.3): the `<error/>` child of a stanza of type `error`.
public struct StanzaError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The error types (RFC 6120 §8.3.2).
    public enum ErrorType: String, Hashable, Sendable, CaseIterable {
        /// Do not retry (the error cannot be remedied).
        case cancel
        /// Proceed (the condition was only a warning).
        case `continue`
        /// Retry after changing the data sent.
        case modify
        /// Retry after providing credentials.
        case auth
        /// Retry after waiting (the error is temporary).
        case wait
    }

    /// The defined conditions (RFC 6120 §8.3.3).
    public enum Condition: String, Hashable, Sendable, CaseIterable {
        /// §8.3.3.1
        case badRequest = "bad-request"
        /// §8.3.3.2
        case conflict
        /// §8.3.3.3
        case featureNotImplemented = "feature-not-implemented"
        /// §8.3.3.4
        case forbidden
        /// §8.3.3.5: the element may carry a new address (see ``StanzaError/redirectURI``).
        case gone
        /// §8.3.3.6
        case internalServerError = "internal-server-error"
        /// §8.3.3.7
        case itemNotFound = "item-not-found"
        /// §8.3.3.8
        case jidMalformed = "jid-malformed"
        /// §8.3.3.9
        case notAcceptable = "not-acceptable"
        /// §8.3.3.10
        case notAllowed = "not-allowed"
        /// §8.3.3.11
        case notAuthorized = "not-authorized"
        /// §8.3.3.12
        case policyViolation = "policy-violation"
        /// §8.3.3.13
        case recipientUnavailable = "recipient-unavailable"
        /// §8.3.3.14: the element carries the alternative address (see ``StanzaError/redirectURI``).
        case redirect
        /// §8.3.3.15
        case registrationRequired = "registration-required"
        /// §8.3.3.16
        case remoteServerNotFound = "remote-server-not-found"
        /// §8.3.3.17
        case remoteServerTimeout = "remote-server-timeout"
        /// §8.3.3.18
        case resourceConstraint = "resource-constraint"
        /// §8.3.3.19
        case serviceUnavailable = "service-unavailable"
        /// §8.3.3.20
        case subscriptionRequired = "subscription-required"
        /// §8.3.3.21
        case undefinedCondition = "undefined-condition"
        /// §8.3.3.22
        case unexpectedRequest = "unexpected-request"

        /// The error type RFC 6120 §8.3.3 lists for the condition.
        public var defaultType: ErrorType {
            switch self {
            case .badRequest, .jidMalformed, .notAcceptable, .policyViolation, .redirect, .gone:
                return .modify
            case .conflict, .featureNotImplemented, .internalServerError, .itemNotFound, .notAllowed,
                .remoteServerNotFound, .serviceUnavailable, .undefinedCondition:
                return .cancel
            case .forbidden, .notAuthorized, .registrationRequired, .subscriptionRequired:
                return .auth
            case .recipientUnavailable, .remoteServerTimeout, .resourceConstraint, .unexpectedRequest:
                return .wait
            }
        }
    }

    /// The error type.
    public var type: ErrorType
    /// The defined condition.
    public var condition: Condition
    /// Descriptive text, if any.
    public var text: String?
    /// For ``Condition/gone`` and ``Condition/redirect``: the address carried by the condition element.
    public var redirectURI: String?
    /// An application-specific condition element, if any.
    public var applicationCondition: Element?
    /// The entity that generated the error (`by` attribute), if given.
    public var by: String?
    /// The legacy numeric `code` attribute (pre-RFC 3920), if present, e.g. `302` for redirects.
    public var legacyCode: Int?
    /// Other children of `<error/>` that are neither conditions nor text (e.g. a redirected query).
    public var otherChildren: [Element]

    /// Creates a stanza error.
    /// - Parameters:
    ///   - condition: The defined condition.
    ///   - type: The error type; defaults to the one RFC 6120 lists for the condition.
    ///   - text: Optional descriptive text.
    ///   - redirectURI: The address for ``Condition/gone`` or ``Condition/redirect``.
    ///   - applicationCondition: An optional application-specific element.
    ///   - by: The entity that generated the error.
    public init(
        _ condition: Condition,
        type: ErrorType? = nil,
        text: String? = nil,
        redirectURI: String? = nil,
        applicationCondition: Element? = nil,
        by: String? = nil
    ) {
        self.condition = condition
        self.type = type ?? condition.defaultType
        self.text = text
        self.redirectURI = redirectURI
        self.applicationCondition = applicationCondition
        self.by = by
        self.legacyCode = nil
        self.otherChildren = []
    }

    /// Parses an `<error/>` element (in any namespace: the stanza's own).
    ///
    /// A missing type becomes the condition's default type; a missing or unknown condition
    /// becomes ``Condition/undefinedCondition``.
    /// - Parameter element: The `error` child of a stanza.
    /// - Returns: `nil` if the element is not named `error`.
    public init?(element: Element) {
        guard element.name.localName == "error" else { return nil }
        var condition: Condition?
        var text: String?
        var redirectURI: String?
        var applicationCondition: Element?
        var others: [Element] = []
        for child in element.elements {
            if child.name.namespace == Namespace.stanzas {
                if child.name.localName == "text" {
                    text = child.text
                } else if condition == nil, let known = Condition(rawValue: child.name.localName) {
                    condition = known
                    if known == .gone || known == .redirect {
                        let uri = child.text
                        redirectURI = uri.isEmpty ? nil : uri
                    }
                }
            } else if applicationCondition == nil && child.elements.isEmpty && child.children.count <= 1 {
                applicationCondition = child
            } else {
                others.append(child)
            }
        }
        let resolved = condition ?? .undefinedCondition
        self.init(
            resolved,
            type: element["type"].flatMap(ErrorType.init(rawValue:)),
            text: text,
            redirectURI: redirectURI,
            applicationCondition: applicationCondition,
            by: element["by"]
        )
        self.legacyCode = element["code"].flatMap { Int($0) }
        self.otherChildren = others
    }

    /// The `<error/>` element in the canonical stanza namespace (``Namespace/client``).
    public var element: Element {
        var error = Element("error", namespace: Namespace.client, attributes: ["type": self.type.rawValue])
        if let by = self.by { error["by"] = by }
        if let code = self.legacyCode { error["code"] = String(code) }
        error.append(Element(self.condition.rawValue, namespace: Namespace.stanzas, text: self.redirectURI))
        if let text = self.text {
            error.append(Element("text", namespace: Namespace.stanzas, text: text))
        }
        if let applicationCondition = self.applicationCondition {
            error.append(applicationCondition)
        }
        for other in self.otherChildren {
            error.append(other)
        }
        return error
    }

    /// `<type>/<condition>: <text>`.
    public var description: String {
        var result = "\(self.type.rawValue)/\(self.condition.rawValue)"
        if let text = self.text, !text.isEmpty { result += ": \(text)" }
        return result
    }
}
