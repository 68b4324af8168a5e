/// An `<iq/>` stanza (RFC 6120 §8.2.3): a request (`get`/`set`) and its single answer
/// (`result`/`error`), matched by `id`.
public struct IQ: StanzaView {
    /// IQ types.
    public enum IQType: String, Hashable, Sendable, CaseIterable {
        /// A request for information.
        case get
        /// A request that changes something.
        case set
        /// A successful answer.
        case result
        /// An error answer.
        case error

        /// Whether this type is a request that must be answered.
        public var isRequest: Bool { self == .get || self == .set }
    }

    /// The underlying element.
    public var element: Element

    /// Wraps an `iq` element.
    /// - Parameter element: The element.
    /// - Returns: `nil` unless the element is `{jabber:client}iq` with an `id` and a valid type.
    public init?(_ element: Element) {
        guard element.name == QualifiedName(Namespace.client, "iq"),
            element["id"] != nil,
            element["type"].flatMap(IQType.init(rawValue:)) != nil
        else { return nil }
        self.element = element
    }

    /// Creates an IQ.
    /// - Parameters:
    ///   - type: The IQ type.
    ///   - from: The sender.
    ///   - to: The recipient.
    ///   - id: The id that matches request and answer.
    ///   - payload: The child element (required for `get` and `set`).
    public init(type: IQType, from: JID? = nil, to: JID? = nil, id: String, payload: Element? = nil) {
        var element = Element("iq", namespace: Namespace.client, attributes: ["type": type.rawValue, "id": id])
        element["from"] = from?.description
        element["to"] = to?.description
        if let payload {
            element.append(payload)
        }
        self.element = element
    }

    /// The IQ type.
    public var type: IQType {
        get { self.element["type"].flatMap(IQType.init(rawValue:)) ?? .error }
        set { self.element["type"] = newValue.rawValue }
    }

    /// The `id`, which every IQ has.
    public var requestID: String {
        self.element["id"] ?? ""
    }

    /// The first child element that is not `<error/>`: the query of a request or the content of a result.
    public var payload: Element? {
        for element in self.element.elements
        where !(element.name.localName == "error" && element.name.namespace == Namespace.client) {
            return element
        }
        return nil
    }

    /// A `result` answer to this request: `to`/`from` swapped, the same `id`.
    /// - Parameter payload: The result's content, if any.
    public func result(_ payload: Element? = nil) -> IQ {
        var result = IQ(type: .result, id: self.requestID, payload: payload)
        result.element["to"] = self.element["from"]
        result.element["from"] = self.element["to"]
        return result
    }

    /// An `error` answer to this request: `to`/`from` swapped, the same `id`, the original
    /// query kept (RFC 6120 §8.3.1) and the error appended.
    /// - Parameter error: The error to report.
    public func errorResult(_ error: StanzaError) -> IQ {
        self.errorReply(error)
    }
}
