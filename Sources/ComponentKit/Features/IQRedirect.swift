public import XMPPCore

/// IQ redirect (the "IQ Redirect" document beside XEP-0051): an `<iq type='error'>`
/// whose `<error code='302'>` carries the redirected query, to be sent again to a new
/// address with the same id.
///
/// A redirect is followed only when it is valid: the original query is a `get`, the
/// redirected one is a `get`, and its envelope keeps every attribute of the original
/// except `to`. At most ``maximumRedirects`` consecutive redirects are followed.
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
            throw ComponentError(.invalidRedirect, "only an IQ get may be redirected; '\(original.requestID)' was a \(original.element["type"] ?? "?")")
        }
        guard redirected.element["type"] == "get" else {
            throw ComponentError(
                .invalidRedirect,
                "the redirected query for '\(original.requestID)' is of type \(redirected.element["type"] ?? "none"), not get")
        }
        let toName = QualifiedName(unqualified: "to")
        let originalEnvelope = Self.envelope(original.element, excluding: toName)
        let redirectedEnvelope = Self.envelope(redirected.element, excluding: toName)
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
