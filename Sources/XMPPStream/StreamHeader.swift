public import XMPPCore

/// The attributes of a `<stream:stream>` opening tag (RFC 6120 §4.7).
///
/// The header keeps every attribute the peer sent, in order, in ``attributes``;
/// ``to``, ``from``, ``id``, ``version`` and ``language`` are views of that list.
/// The default namespace declared on the header (`xmlns='jabber:client'`,
/// `xmlns='jabber:component:accept'`…) is the stream's ``contentNamespace``.
public struct StreamHeader: Hashable, Sendable {
    /// The default content namespace declared on the header, or `""` if none was declared.
    public var contentNamespace: String
    /// Every attribute of the header, in document order (namespace declarations excluded).
    public var attributes: [Element.Attribute]

    /// Creates a header.
    /// - Parameters:
    ///   - contentNamespace: The default namespace, e.g. ``/XMPPCore/Namespace/componentAccept``.
    ///   - to: The `to` attribute.
    ///   - from: The `from` attribute.
    ///   - id: The stream id (`id` attribute).
    ///   - version: The `version` attribute; `"1.0"` for RFC 6120 streams, `nil` for XEP-0114.
    ///   - language: The `xml:lang` attribute.
    public init(
        contentNamespace: String,
        to: String? = nil,
        from: String? = nil,
        id: String? = nil,
        version: String? = "1.0",
        language: String? = nil
    ) {
        self.contentNamespace = contentNamespace
        self.attributes = []
        self.to = to
        self.from = from
        self.id = id
        self.version = version
        self.language = language
    }

    /// Creates a header from a content namespace and a complete attribute list.
    /// - Parameters:
    ///   - contentNamespace: The default namespace declared on the header.
    ///   - attributes: The attributes, in order.
    public init(contentNamespace: String, attributes: [Element.Attribute]) {
        self.contentNamespace = contentNamespace
        self.attributes = attributes
    }

    /// The `to` attribute.
    public var to: String? {
        get { self[QualifiedName(unqualified: "to")] }
        set { self[QualifiedName(unqualified: "to")] = newValue }
    }

    /// The `from` attribute.
    public var from: String? {
        get { self[QualifiedName(unqualified: "from")] }
        set { self[QualifiedName(unqualified: "from")] = newValue }
    }

    /// The `id` attribute (the stream id).
    public var id: String? {
        get { self[QualifiedName(unqualified: "id")] }
        set { self[QualifiedName(unqualified: "id")] = newValue }
    }

    /// The `version` attribute.
    public var version: String? {
        get { self[QualifiedName(unqualified: "version")] }
        set { self[QualifiedName(unqualified: "version")] = newValue }
    }

    /// The `xml:lang` attribute.
    public var language: String? {
        get { self[QualifiedName(Namespace.xml, "lang")] }
        set { self[QualifiedName(Namespace.xml, "lang")] = newValue }
    }

    /// The value of any attribute, or `nil`; setting `nil` removes it.
    /// - Parameter name: The attribute's qualified name.
    public subscript(name: QualifiedName) -> String? {
        get {
            for attribute in self.attributes where attribute.name == name {
                return attribute.value
            }
            return nil
        }
        set {
            if let index = self.attributes.firstIndex(where: { $0.name == name }) {
                if let newValue {
                    self.attributes[index].value = newValue
                } else {
                    self.attributes.remove(at: index)
                }
            } else if let newValue {
                self.attributes.append(Element.Attribute(name, newValue))
            }
        }
    }
}
