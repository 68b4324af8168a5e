/// Bounds on what a peer may send, enforced by ``XMLStreamParser``.
///
/// Exceeding a limit is a `policy-violation` stream error whose text names the
/// limit and its value. Together with the bounded chunk size handed to expat,
/// the limits bound the memory one stream can use whatever the peer sends.
public struct XMLStreamLimits: Hashable, Sendable {
    /// The largest top-level element, in bytes of input, counted from its `<` (or from
    /// the end of the previous element, for whitespace between elements) and including
    /// bytes expat holds unparsed (an unterminated tag or attribute value).
    /// Default 1 MiB.
    public var maxStanzaSize: Int
    /// The deepest nesting of elements inside the stream; a stanza is depth 1,
    /// its children depth 2. Default 64.
    public var maxDepth: Int
    /// The most attributes on one element (namespace declarations excluded). Default 64.
    public var maxAttributes: Int
    /// The largest stream header in bytes, counted from the start of the document
    /// (XML declaration included) to the end of the `<stream:stream>` tag. Default 16 KiB.
    public var maxHeaderSize: Int
    /// The largest single XML token expat may hold unfinished: a start tag with its
    /// attributes, an element or attribute name, an attribute value. Default 64 KiB.
    ///
    /// Expat scans an unfinished token again from its start on every read (its reparse
    /// deferral, the CVE-2023-52425 fix, is switched off so that small reads deliver their
    /// events), so an unbounded token sent in small segments costs time quadratic in its
    /// size. Character data is not a token here: a large body passes in any split.
    public var maxTokenSize: Int
    /// The largest top-level element before the stream is authenticated (SASL or the
    /// XEP-0114 handshake), when the parser was created unauthenticated. Default 64 KiB
    /// (never more than ``maxStanzaSize``).
    public var maxStanzaSizeBeforeAuthentication: Int

    /// Creates limits.
    /// - Parameters:
    ///   - maxStanzaSize: See ``maxStanzaSize``.
    ///   - maxDepth: See ``maxDepth``.
    ///   - maxAttributes: See ``maxAttributes``.
    ///   - maxHeaderSize: See ``maxHeaderSize``.
    ///   - maxTokenSize: See ``maxTokenSize``.
    ///   - maxStanzaSizeBeforeAuthentication: See ``maxStanzaSizeBeforeAuthentication``.
    public init(
        maxStanzaSize: Int = 1 << 20,
        maxDepth: Int = 64,
        maxAttributes: Int = 64,
        maxHeaderSize: Int = 16 << 10,
        maxTokenSize: Int = 64 << 10,
        maxStanzaSizeBeforeAuthentication: Int = 64 << 10
    ) {
        self.maxStanzaSize = maxStanzaSize
        self.maxDepth = maxDepth
        self.maxAttributes = maxAttributes
        self.maxHeaderSize = maxHeaderSize
        self.maxTokenSize = maxTokenSize
        self.maxStanzaSizeBeforeAuthentication = maxStanzaSizeBeforeAuthentication
    }

    /// The defaults: 1 MiB stanzas (64 KiB before authentication), depth 64, 64 attributes,
    /// 16 KiB headers, 64 KiB tokens.
    public static let `default` = XMLStreamLimits()
}
