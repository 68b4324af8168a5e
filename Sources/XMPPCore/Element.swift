/// An XML element: the tree every stanza, stream feature and negotiation element is made of.
///
/// `Element` is a value type. Names are ``QualifiedName``s (namespace URI plus local
/// name), so the prefixes a peer happened to use are not part of an element's identity.
///
/// Stanzas are stored in the canonical namespace ``Namespace/client`` whatever stream
/// they travelled on: the stream decoder maps `jabber:component:accept` to
/// `jabber:client`, and the serialiser maps it back when writing to a XEP-0114 stream
/// (see ``serialize(into:streamNamespace:)``).
///
/// ```swift
/// let ping = Element("ping", namespace: Namespace.ping)
/// var iq = Element("iq", namespace: Namespace.client,
///                  attributes: ["type": "get", "id": "p1", "to": "example.com"],
///                  children: [ping])
/// iq["from"] = "echo.example.com"
/// ```
public struct Element: Sendable {
    /// A child of an element: another element or a run of character data.
    public enum Node: Hashable, Sendable {
        /// A child element.
        case element(Element)
        /// Character data (already unescaped).
        case text(String)
    }

    /// An attribute: a qualified name and its (unescaped) value.
    public struct Attribute: Hashable, Sendable {
        /// The attribute's name; ordinary attributes have an empty namespace.
        public var name: QualifiedName
        /// The attribute's value, unescaped.
        public var value: String

        /// Creates an attribute.
        public init(_ name: QualifiedName, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// The element's qualified name.
    public var name: QualifiedName
    /// The attributes, in document order.
    public var attributes: [Attribute]
    /// The children, in document order. Adjacent text is kept merged by the mutating helpers.
    public var children: [Node]

    /// Creates an element.
    /// - Parameters:
    ///   - name: The qualified name.
    ///   - attributes: The attributes, in order.
    ///   - children: The children, in order.
    public init(name: QualifiedName, attributes: [Attribute] = [], children: [Node] = []) {
        self.name = name
        self.attributes = attributes
        self.children = children
    }

    /// Creates an element from a local name and namespace, with unqualified attributes
    /// and child elements.
    /// - Parameters:
    ///   - localName: The element's local name, e.g. `"message"`.
    ///   - namespace: The element's namespace URI.
    ///   - attributes: Unqualified attributes; written in key order, so output is stable.
    ///   - children: Child elements.
    ///   - text: Character data appended after the child elements, if any.
    public init(
        _ localName: String,
        namespace: String,
        attributes: [String: String] = [:],
        children: [Element] = [],
        text: String? = nil
    ) {
        self.name = QualifiedName(namespace, localName)
        self.attributes = attributes.sorted { $0.key < $1.key }.map {
            Attribute(QualifiedName(unqualified: $0.key), $0.value)
        }
        self.children = children.map { .element($0) }
        if let text, !text.isEmpty {
            self.children.append(.text(text))
        }
    }

    // MARK: Attributes

    /// The value of an unqualified attribute, or `nil`; setting `nil` removes it.
    public subscript(localName: String) -> String? {
        get { self.attribute(QualifiedName(unqualified: localName)) }
        set { self.setAttribute(QualifiedName(unqualified: localName), newValue) }
    }

    /// The value of an attribute with a qualified name, or `nil`.
    /// - Parameter name: The attribute's qualified name.
    public func attribute(_ name: QualifiedName) -> String? {
        for attribute in self.attributes where attribute.name == name {
            return attribute.value
        }
        return nil
    }

    /// Sets, replaces or (with `nil`) removes an attribute.
    /// - Parameters:
    ///   - name: The attribute's qualified name.
    ///   - value: The new value, or `nil` to remove the attribute.
    public mutating func setAttribute(_ name: QualifiedName, _ value: String?) {
        if let index = self.attributes.firstIndex(where: { $0.name == name }) {
            if let value {
                self.attributes[index].value = value
            } else {
                self.attributes.remove(at: index)
            }
        } else if let value {
            self.attributes.append(Attribute(name, value))
        }
    }

    // MARK: Children

    /// The child elements, in order (text children skipped).
    public var elements: [Element] {
        self.children.compactMap {
            if case .element(let element) = $0 { return element }
            return nil
        }
    }

    /// The concatenated character data of the direct text children.
    public var text: String {
        var result = ""
        for case .text(let text) in self.children {
            result += text
        }
        return result
    }

    /// The first child element with this local name and namespace, or `nil`.
    /// - Parameters:
    ///   - localName: The local name to look for.
    ///   - namespace: The namespace to look for.
    public func firstChild(_ localName: String, namespace: String) -> Element? {
        for case .element(let element) in self.children
        where element.name.localName == localName && element.name.namespace == namespace {
            return element
        }
        return nil
    }

    /// The first child element in a namespace, whatever its name (a payload), or `nil`.
    /// - Parameter namespace: The namespace to look for.
    public func firstChild(inNamespace namespace: String) -> Element? {
        for case .element(let element) in self.children where element.name.namespace == namespace {
            return element
        }
        return nil
    }

    /// All child elements with this local name and namespace.
    /// - Parameters:
    ///   - localName: The local name to look for.
    ///   - namespace: The namespace to look for.
    public func children(_ localName: String, namespace: String) -> [Element] {
        self.elements.filter { $0.name.localName == localName && $0.name.namespace == namespace }
    }

    /// Appends a child element.
    /// - Parameter element: The element to append.
    public mutating func append(_ element: Element) {
        self.children.append(.element(element))
    }

    /// Appends character data, merging it with a preceding text child.
    /// - Parameter text: The text to append (unescaped).
    public mutating func append(text: String) {
        guard !text.isEmpty else { return }
        if case .text(let previous) = self.children.last {
            self.children[self.children.count - 1] = .text(previous + text)
        } else {
            self.children.append(.text(text))
        }
    }

    /// Removes every child element with this local name and namespace.
    /// - Parameters:
    ///   - localName: The local name to remove.
    ///   - namespace: The namespace to remove.
    public mutating func removeChildren(_ localName: String, namespace: String) {
        self.children.removeAll {
            if case .element(let element) = $0 {
                return element.name.localName == localName && element.name.namespace == namespace
            }
            return false
        }
    }
}

extension Element: Hashable {
    /// Two elements are equal when their names, attributes (in any order) and children are equal.
    public static func == (lhs: Element, rhs: Element) -> Bool {
        guard lhs.name == rhs.name, lhs.attributes.count == rhs.attributes.count,
            lhs.children == rhs.children
        else { return false }
        for attribute in lhs.attributes where rhs.attribute(attribute.name) != attribute.value {
            return false
        }
        return true
    }

    /// Hashes the name, the attributes regardless of order, and the children.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.name)
        var attributesHash = 0
        for attribute in self.attributes {
            attributesHash ^= attribute.hashValue
        }
        hasher.combine(attributesHash)
        hasher.combine(self.children)
    }
}

extension Element: CustomStringConvertible {
    /// The element serialised as XML (with its own namespace declarations).
    public var description: String {
        self.serialized()
    }
}
