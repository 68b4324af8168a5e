public import XMPPCore

extension IQRedirect {
    /// The 302 answer that redirects a request to another address: an `<iq type='error'>`
    /// whose `<error type='modify' code='302'>` carries `<redirect/>` (RFC 6120 §8.3.3.14,
    /// with the `xmpp:` URI of the new address) and the redirected query — the original
    /// envelope with only `to` changed, the same id, and the original payload.
    ///
    /// Requesters that follow redirects (this SDK's ``ComponentContext/request(_:timeout:redirects:)``
    /// among them) send the embedded query again to the new address.
    /// - Parameters:
    ///   - request: The request being answered; only a `get` may be redirected.
    ///   - address: Where to ask instead (e.g. the instance that owns the requester's state).
    /// - Returns: The answer to send.
    /// - Throws: ``ComponentError`` of kind ``ComponentError/Kind/invalidRedirect`` for a
    ///   request that is not a `get`, or a redirect to the address it was sent to.
    public static func answer(redirecting request: IQ, to address: JID) throws(ComponentError) -> IQ {
        guard request.element["type"] == "get" else {
            throw ComponentError(
                .invalidRedirect,
                "only an IQ get may be redirected; '\(request.requestID)' is a \(request.element["type"] ?? "?")")
        }
        if let to = request.element["to"], (try? JID(to)) == address {
            throw ComponentError(.invalidRedirect, "'\(request.requestID)' is already addressed to \(address)")
        }
        var redirected = request.element
        redirected["to"] = address.description
        var error = StanzaError(.redirect, type: .modify, redirectURI: "xmpp:\(address)")
        error.legacyCode = 302
        error.otherChildren = [redirected]
        var answer = request.errorResult(error)
        // The answer carries the error, not the original payload twice.
        answer.element.children.removeAll { node in
            if case .element(let child) = node { return child.name.localName != "error" }
            return false
        }
        return answer
    }
}
