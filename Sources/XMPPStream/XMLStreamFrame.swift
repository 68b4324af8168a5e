public import XMPPCore

/// What a handler writes to ``XMLStreamHandler``: the pieces of an outgoing stream.
public enum XMLStreamFrame: Hashable, Sendable {
    /// `<?xml version='1.0'?><stream:stream …>`; its content namespace becomes the
    /// default namespace for the elements that follow.
    case header(StreamHeader)
    /// A top-level element (stanza, `<stream:features/>`, `<handshake/>`…).
    case element(Element)
    /// `</stream:stream>`.
    case close
    /// A single space: a whitespace keepalive (RFC 6120 §4.6.1).
    case whitespace
}
