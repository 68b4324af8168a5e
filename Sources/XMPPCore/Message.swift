/// A `<message/>` stanza (RFC 6120 §8.2.1, RFC 6121 §5).
public struct Message: StanzaView {
    /// Message types (RFC 6121 §5.2.2). An absent or unknown type is ``normal``.
    public enum MessageType: String, Hashable, Sendable, CaseIterable {
        /// One-to-one conversation.
        case chat
        /// An error reply.
        case error
        /// Multi-user chat.
        case groupchat
        /// An alert or notification with no reply expected.
        case headline
        /// A stand-alone message (the default).
        case normal
    }

    /// The underlying element.
    public var element: Element

    /// Wraps a `message` element.
    /// - Parameter element: The element.
    /// - Returns: `nil` unless the element is `{jabber:client}message`.
    public init?(_ element: Element) {
        guard element.name == QualifiedName(Namespace.client, "message") else { return nil }
        self.element = element
    }

    init(uncheckedElement element: Element) {
        self.element = element
    }

    /// Creates a message.
    /// - Parameters:
    ///   - type: The message type (``MessageType/normal`` is written as no attribute).
    ///   - from: The sender.
    ///   - to: The recipient.
    ///   - id: The stanza id.
    ///   - body: The `<body/>` text, if any.
    public init(type: MessageType = .normal, from: JID? = nil, to: JID? = nil, id: String? = nil, body: String? = nil) {
        var element = Element("message", namespace: Namespace.client)
        element["from"] = from?.description
        element["to"] = to?.description
        element["id"] = id
        if type != .normal {
            element["type"] = type.rawValue
        }
        if let body {
            element.append(Element("body", namespace: Namespace.client, text: body))
        }
        self.element = element
    }

    /// The message type; setting ``MessageType/normal`` removes the attribute.
    public var type: MessageType {
        get { self.element["type"].flatMap(MessageType.init(rawValue:)) ?? .normal }
        set { self.element["type"] = newValue == .normal ? nil : newValue.rawValue }
    }

    /// The text of the first `<body/>`, or `nil`; setting replaces every body.
    public var body: String? {
        get { self.element.firstChild("body", namespace: Namespace.client)?.text }
        set { self.replaceChild("body", text: newValue) }
    }

    /// The text of `<subject/>`, or `nil`.
    public var subject: String? {
        get { self.element.firstChild("subject", namespace: Namespace.client)?.text }
        set { self.replaceChild("subject", text: newValue) }
    }

    /// The text of `<thread/>`, or `nil`.
    public var thread: String? {
        get { self.element.firstChild("thread", namespace: Namespace.client)?.text }
        set { self.replaceChild("thread", text: newValue) }
    }

    /// A reply: `to` and `from` swapped, the same `id`, type and thread, and a new body.
    /// - Parameter body: The reply's body text.
    public func reply(body: String) -> Message {
        var reply = Message(type: self.type, id: self.id, body: body)
        reply.element["to"] = self.element["from"]
        reply.element["from"] = self.element["to"]
        if let thread = self.thread {
            reply.thread = thread
        }
        return reply
    }

    private mutating func replaceChild(_ name: String, text: String?) {
        self.element.removeChildren(name, namespace: Namespace.client)
        if let text {
            self.element.append(Element(name, namespace: Namespace.client, text: text))
        }
    }
}
