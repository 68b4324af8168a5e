/// One of the three XMPP stanzas (RFC 6120 §8): a message, a presence or an IQ.
///
/// Each case is a typed view over an ``Element`` in the canonical namespace
/// ``Namespace/client``, whatever stream the stanza travelled on.
public enum Stanza: Hashable, Sendable {
    /// A `<message/>`.
    case message(Message)
    /// A `<presence/>`.
    case presence(Presence)
    /// An `<iq/>`.
    case iq(IQ)

    /// Wraps an element if it is a stanza.
    /// - Parameter element: A top-level element read from a stream.
    /// - Returns: `nil` when the element is not a `message`, `presence` or `iq` in
    ///   ``Namespace/client``, or is an IQ without an `id`.
    public init?(_ element: Element) {
        guard element.name.namespace == Namespace.client else { return nil }
        switch element.name.localName {
        case "message":
            self = .message(Message(uncheckedElement: element))
        case "presence":
            self = .presence(Presence(uncheckedElement: element))
        case "iq":
            guard let iq = IQ(element) else { return nil }
            self = .iq(iq)
        default:
            return nil
        }
    }

    /// The underlying element.
    public var element: Element {
        switch self {
        case .message(let message): return message.element
        case .presence(let presence): return presence.element
        case .iq(let iq): return iq.element
        }
    }

    /// The `to` address, if present and valid.
    public var to: JID? { StanzaAddressing.jid(self.element["to"]) }
    /// The `from` address, if present and valid.
    public var from: JID? { StanzaAddressing.jid(self.element["from"]) }
    /// The `id` attribute, if present.
    public var id: String? { self.element["id"] }
    /// Whether the stanza has type `error`.
    public var isError: Bool { self.element["type"] == "error" }
}

/// Reading and writing `to`/`from` as JIDs.
enum StanzaAddressing {
    static func jid(_ string: String?) -> JID? {
        guard let string else { return nil }
        return try? JID(string)
    }
}

/// The shared shape of ``Message``, ``Presence`` and ``IQ``: addressing and errors.
public protocol StanzaView: Hashable, Sendable {
    /// The underlying element.
    var element: Element { get set }
}

extension StanzaView {
    /// The `to` address; `nil` when absent or not a valid JID. Setting `nil` removes it.
    public var to: JID? {
        get { StanzaAddressing.jid(self.element["to"]) }
        set { self.element["to"] = newValue?.description }
    }

    /// The `from` address; `nil` when absent or not a valid JID. Setting `nil` removes it.
    public var from: JID? {
        get { StanzaAddressing.jid(self.element["from"]) }
        set { self.element["from"] = newValue?.description }
    }

    /// The `id` attribute.
    public var id: String? {
        get { self.element["id"] }
        set { self.element["id"] = newValue }
    }

    /// The `xml:lang` attribute.
    public var language: String? {
        get { self.element.attribute(QualifiedName(Namespace.xml, "lang")) }
        set { self.element.setAttribute(QualifiedName(Namespace.xml, "lang"), newValue) }
    }

    /// The stanza error, when the stanza has type `error`.
    public var error: StanzaError? {
        guard self.element["type"] == "error",
            let errorElement = self.element.firstChild("error", namespace: Namespace.client)
        else { return nil }
        return StanzaError(element: errorElement)
    }

    /// The stanza turned into an error reply (RFC 6120 §8.3.1): `to` and `from` swapped,
    /// the same `id`, type `error`, the original children kept, and the `<error/>` appended.
    /// - Parameter error: The error to report.
    public func errorReply(_ error: StanzaError) -> Self {
        var reply = self
        reply.element["to"] = self.element["from"]
        reply.element["from"] = self.element["to"]
        reply.element["type"] = "error"
        reply.element.removeChildren("error", namespace: Namespace.client)
        reply.element.append(error.element)
        return reply
    }
}
