public import XMPPCore

/// What ``XMLStreamParser`` (and ``XMLStreamHandler``) report while reading a stream.
public enum XMLStreamEvent: Hashable, Sendable {
    /// The peer's `<stream:stream>` opening tag was read.
    case streamOpened(StreamHeader)
    /// A complete top-level element (depth 1): a stanza, `<stream:features/>`,
    /// `<proceed/>`, `<handshake/>`, `<stream:error/>`…
    ///
    /// Elements in `jabber:component:accept` are reported in the canonical
    /// ``/XMPPCore/Namespace/client`` (see ``/XMPPCore/Element``).
    case element(Element)
    /// The peer closed the stream with `</stream:stream>`.
    case streamClosed
}
