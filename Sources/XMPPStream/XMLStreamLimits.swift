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

    /// Creates limits.
    /// - Parameters:
    ///   - maxStanzaSize: See ``maxStanzaSize``.
    ///   - maxDepth: See ``maxDepth``.
    ///   - maxAttributes: See ``maxAttributes``.
    ///   - maxHeaderSize: See ``maxHeaderSize``.
    public init(
        maxStanzaSize: Int = 1 << 20,
        maxDepth: Int = 64,
        maxAttributes: Int = 64,
        maxHeaderSize: Int = 16 << 10
    ) {
        self.maxStanzaSize = maxStanzaSize
        self.maxDepth = maxDepth
        self.maxAttributes = maxAttributes
        self.maxHeaderSize = maxHeaderSize
    }

    /// The defaults: 1 MiB stanzas, depth 64, 64 attributes, 16 KiB headers.
    public static let `default` = XMLStreamLimits()
}
