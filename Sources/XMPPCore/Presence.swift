/// A `<presence/>` stanza (RFC 6120 §8.2.2, RFC 6121 §4).
public struct Presence: StanzaView {
    /// Presence types (RFC 6121 §4.7.1). Available presence has no type (`nil`).
    public enum PresenceType: String, Hashable, Sendable, CaseIterable {
        /// An error reply.
        case error
        /// A request for the recipient's current presence.
        case probe
        /// A subscription request.
        case subscribe
        /// A subscription approval.
        case subscribed
        /// The sender is no longer available.
        case unavailable
        /// A request to cancel a subscription.
        case unsubscribe
        /// A subscription denial or cancellation.
        case unsubscribed
    }

    /// Availability sub-states (RFC 6121 §4.7.2.1).
    public enum Show: String, Hashable, Sendable, CaseIterable {
        /// Free for chat.
        case chat
        /// Away.
        case away
        /// Extended away.
        case xa
        /// Do not disturb.
        case dnd
    }

    /// The underlying element.
    public var element: Element

    /// Wraps a `presence` element.
    /// - Parameter element: The element.
    /// - Returns: `nil` unless the element is `{jabber:client}presence`.
    public init?(_ element: Element) {
        guard element.name == QualifiedName(Namespace.client, "presence") else { return nil }
        self.element = element
    }

    init(uncheckedElement element: Element) {
        self.element = element
    }

    /// Creates a presence.
    /// - Parameters:
    ///   - type: The type, or `nil` for available presence.
    ///   - from: The sender.
    ///   - to: The recipient (`nil` for a broadcast).
    ///   - id: The stanza id.
    public init(type: PresenceType? = nil, from: JID? = nil, to: JID? = nil, id: String? = nil) {
        var element = Element("presence", namespace: Namespace.client)
        element["from"] = from?.description
        element["to"] = to?.description
        element["id"] = id
        element["type"] = type?.rawValue
        self.element = element
    }

    /// The type, `nil` for available presence. An unknown type reads as ``PresenceType/error``
    /// so that it is never mistaken for availability.
    public var type: PresenceType? {
        get {
            guard let raw = self.element["type"] else { return nil }
            return PresenceType(rawValue: raw) ?? .error
        }
        set { self.element["type"] = newValue?.rawValue }
    }

    /// The `<show/>` value, if any.
    public var show: Show? {
        self.element.firstChild("show", namespace: Namespace.client).flatMap { Show(rawValue: $0.text) }
    }

    /// The text of the first `<status/>`, if any.
    public var status: String? {
        self.element.firstChild("status", namespace: Namespace.client)?.text
    }

    /// The `<priority/>` value (−128…127), 0 when absent or invalid.
    public var priority: Int8 {
        self.element.firstChild("priority", namespace: Namespace.client).flatMap { Int8($0.text) } ?? 0
    }
}
