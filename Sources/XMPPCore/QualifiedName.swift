/// The name of an XML element or attribute: a namespace URI and a local name.
///
/// Unqualified attributes (the usual case: `to`, `from`, `id`, `type`) have an
/// empty ``namespace``. Prefixes are a serialisation detail and are not part of
/// the name: `<stream:features>` and `<features xmlns='http://etherx.jabber.org/streams'>`
/// have the same ``QualifiedName``.
public struct QualifiedName: Hashable, Sendable, CustomStringConvertible {
    /// The namespace URI, or the empty string for no namespace.
    public var namespace: String
    /// The local part of the name, e.g. `message`.
    public var localName: String

    /// Creates a name in a namespace.
    /// - Parameters:
    ///   - namespace: The namespace URI (empty for none).
    ///   - localName: The local name.
    public init(_ namespace: String, _ localName: String) {
        self.namespace = namespace
        self.localName = localName
    }

    /// Creates a name in no namespace (the form of ordinary attributes).
    /// - Parameter localName: The local name.
    public init(unqualified localName: String) {
        self.namespace = ""
        self.localName = localName
    }

    /// Clark notation: `{namespace}localName`, or just `localName` without a namespace.
    public var description: String {
        self.namespace.isEmpty ? self.localName : "{\(self.namespace)}\(self.localName)"
    }
}
