public import XMPPCore

/// IQ redirect (the "IQ Redirect" document beside XEP-0051): an `<iq type='error'>`
/// whose `<error code='302'>` carries the redirected query, to be sent again to a new
/// address with the same id.
///
/// A redirect is followed only when it is valid: the original query is a `get`, the
/// redirected one is a `get`, and its envelope keeps every attribute of the original
/// except `to` (an `xml:lang` the original did not have, stamped by a server on the way,
/// is not a change). At most ``maximumRedirects`` consecutive redirects are followed.
public enum IQRedirect {
    /// Three consecutive redirects (four tries in all), as the document recommends.
    public static let maximumRedirects = 3

    /// The redirected query an answer carries, or `nil` when the answer is not a redirect.
    /// - Parameter answer: An IQ answer.
    public static func redirectedQuery(in answer: IQ) -> IQ? {
        guard answer.type == .error,
            let error = answer.element.firstChild("error", namespace: Namespace.client),
            error["code"] == "302"
        else { return nil }
        guard let embedded = error.firstChild("iq", namespace: Namespace.client) else { return nil }
        return IQ(embedded) ?? IQ(uncheckedRedirect: embedded)
    }

    /// Checks the three validity conditions.
    /// - Parameters:
    ///   - original: The query as first sent.
    ///   - redirected: The redirected query from the answer.
    /// - Throws: ``ComponentError`` of kind ``ComponentError/Kind/invalidRedirect`` saying which condition failed.
    public static func validate(original: IQ, redirected: IQ) throws(ComponentError) {
        guard original.element["type"] == "get" else {
            throw ComponentError(
                .invalidRedirect,
                "only an IQ get may be redirected; '\(original.requestID)' was a \(original.element["type"] ?? "?")")
        }
        guard redirected.element["type"] == "get" else {
            throw ComponentError(
                .invalidRedirect,
                "the redirected query for '\(original.requestID)' is of type \(redirected.element["type"] ?? "none"), not get")
        }
        let toName = QualifiedName(unqualified: "to")
        let originalEnvelope = Self.envelope(original.element, excluding: toName)
        var redirectedEnvelope = Self.envelope(redirected.element, excluding: toName)
        // A server may stamp its default xml:lang on a stanza that had none (RFC 6120
        // §8.1.5; Prosody does), and the redirect echoes the envelope as it was received.
        // The language says nothing about what is asked or by whom: one added on the way is
        // not a change. One that differs from the original's still is.
        let lang = QualifiedName(Namespace.xml, "lang")
        if originalEnvelope[lang] == nil {
            redirectedEnvelope[lang] = nil
        }
        guard originalEnvelope == redirectedEnvelope else {
            throw ComponentError(
                .invalidRedirect,
                "the redirected query for '\(original.requestID)' changes more than 'to' in its envelope")
        }
        guard redirected.element["to"] != nil else {
            throw ComponentError(.invalidRedirect, "the redirected query for '\(original.requestID)' has no 'to'")
        }
    }

    private static func envelope(_ element: Element, excluding name: QualifiedName) -> [QualifiedName: String] {
        var result: [QualifiedName: String] = [:]
        for attribute in element.attributes where attribute.name != name {
            result[attribute.name] = attribute.value
        }
        return result
    }
}

extension IQ {
    /// Wraps an embedded query whose type may be invalid, so that validation can report it.
    fileprivate init?(uncheckedRedirect element: Element) {
        var copy = element
        guard copy["id"] != nil else { return nil }
        let type = copy["type"]
        copy["type"] = "get"
        guard var iq = IQ(copy) else { return nil }
        iq.element["type"] = type
        self = iq
    }
}

/// Which IQ redirects ``ComponentConnection/request(_:timeout:redirects:)`` follows.
///
/// Following a redirect re-sends a query, in the component's name, to an address the
/// redirecting party chose. Unchecked, that makes the component a confused deputy: any
/// peer it queries could have it send a query to anyone. The default follows only a
/// redirect to the same domain carrying the same query.
public struct IQRedirectPolicy: Hashable, Sendable {
    private enum Kind: Hashable, Sendable {
        case never
        case sameDomain
        case anyAddress
    }

    private let kind: Kind

    /// Never follow: a redirect is returned as the answer (an error with code 302).
    public static let never = IQRedirectPolicy(kind: .never)
    /// Follow a redirect whose new `to` is in the same domain as the original `to`, with
    /// the same query (the default).
    public static let sameDomain = IQRedirectPolicy(kind: .sameDomain)
    /// Follow a redirect to any address, with the same query. Opt in only when every
    /// peer the component queries is trusted.
    public static let anyAddress = IQRedirectPolicy(kind: .anyAddress)

    /// Whether this policy follows `redirected` as a redirect of `original`.
    /// - Parameters:
    ///   - original: The query as first sent.
    ///   - redirected: The redirected query from the answer.
    public func allows(original: IQ, redirected: IQ) -> Bool {
        guard original.element.children == redirected.element.children else { return false }
        switch self.kind {
        case .never:
            return false
        case .anyAddress:
            return true
        case .sameDomain:
            guard let from = original.element["to"].flatMap({ try? JID($0) }),
                let to = redirected.element["to"].flatMap({ try? JID($0) })
            else { return false }
            return from.domainpart == to.domainpart
        }
    }
}
