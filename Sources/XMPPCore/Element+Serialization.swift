extension Element {
    /// Serialises the element as XML text.
    ///
    /// - Parameter streamNamespace: The default namespace in scope where the element is
    ///   written: the stream's content namespace (`jabber:client` or
    ///   `jabber:component:accept`) for a top-level stanza, `nil` for a stand-alone document.
    /// - Returns: The XML text.
    public func serialized(streamNamespace: String? = nil) -> String {
        var output = ""
        self.serialize(into: &output, streamNamespace: streamNamespace)
        return output
    }

    /// Appends the element, serialised as XML text, to `output`.
    ///
    /// The serialiser emits the namespace declarations needed and no more: an element
    /// declares `xmlns='…'` only when its namespace differs from the one in scope, and a
    /// namespaced attribute other than `xml:…` gets one prefix declaration on the element
    /// that carries it; an element in the XML namespace is written with the `xml:` prefix,
    /// which may not be declared. `jabber:client` and `jabber:component:accept` count as the same
    /// namespace, so a stanza is written without a declaration on either kind of stream.
    ///
    /// Text escapes `&`, `<`, `>` and carriage return (as `&#13;`, which XML end-of-line
    /// handling would otherwise turn into a line feed); attribute values (single-quoted) escape `&`, `<`, `'`,
    /// `"` and tab, line feed and carriage return as character references. Characters XML 1.0
    /// cannot carry (C0 controls other than tab, LF and CR; U+FFFE, U+FFFF) are replaced by
    /// U+FFFD; ``validateCharacters()`` reports them before sending. No comment, processing
    /// instruction or DOCTYPE is ever written.
    ///
    /// - Parameters:
    ///   - output: The string to append to.
    ///   - streamNamespace: The default namespace in scope (see ``serialized(streamNamespace:)``).
    public func serialize(into output: inout String, streamNamespace: String? = nil) {
        var prefixes = XMLPrefixScope()
        self.write(into: &output, inScopeDefault: streamNamespace ?? "", streamPrefix: false, prefixes: &prefixes)
    }

    /// Appends the element as it is written inside an XMPP stream whose header declares
    /// `xmlns:stream='http://etherx.jabber.org/streams'`.
    ///
    /// The same as ``serialize(into:streamNamespace:)``, except that elements in
    /// ``Namespace/stream`` are written with the `stream:` prefix and no declaration
    /// (`<stream:features>`, `<stream:error>`), as RFC 6120 §4.8.5 recommends.
    ///
    /// - Parameters:
    ///   - output: The string to append to.
    ///   - streamNamespace: The stream's content namespace (the default namespace in scope).
    ///   - streamPrefixInScope: Whether the `stream` prefix is bound to ``Namespace/stream``.
    public func serialize(into output: inout String, streamNamespace: String, streamPrefixInScope: Bool) {
        var prefixes = XMLPrefixScope()
        self.write(into: &output, inScopeDefault: streamNamespace, streamPrefix: streamPrefixInScope, prefixes: &prefixes)
    }

    private func write(
        into output: inout String,
        inScopeDefault: String,
        streamPrefix: Bool,
        prefixes: inout XMLPrefixScope
    ) {
        output.append("<")
        let namespace = self.name.namespace
        // `stream:` where the stream header binds it; `xml:` always, since the XML
        // namespace is bound to that prefix and may not be declared as a default namespace.
        let prefix: String? =
            streamPrefix && namespace == Namespace.stream ? "stream:" : namespace == Namespace.xml ? "xml:" : nil
        if let prefix {
            output.append(prefix)
        }
        output.append(self.name.localName)
        var childDefault = inScopeDefault
        if prefix == nil && !Self.sameDefaultNamespace(namespace, inScopeDefault) {
            output.append(" xmlns='")
            XMLEscaping.appendAttributeValue(namespace, to: &output)
            output.append("'")
            childDefault = namespace
        }
        let mark = prefixes.mark()
        for attribute in self.attributes {
            let attributeNamespace = attribute.name.namespace
            if attributeNamespace == Namespace.xmlns
                || (attributeNamespace.isEmpty && attribute.name.localName == "xmlns")
            {
                continue  // declarations are the serialiser's job
            }
            output.append(" ")
            if attributeNamespace.isEmpty {
                // unqualified
            } else if attributeNamespace == Namespace.xml {
                output.append("xml:")
            } else {
                let (prefix, isNew) = prefixes.prefix(for: attributeNamespace)
                if isNew {
                    output.append("xmlns:\(prefix)='")
                    XMLEscaping.appendAttributeValue(attributeNamespace, to: &output)
                    output.append("' ")
                }
                output.append(prefix)
                output.append(":")
            }
            output.append(attribute.name.localName)
            output.append("='")
            XMLEscaping.appendAttributeValue(attribute.value, to: &output)
            output.append("'")
        }
        if self.children.isEmpty {
            output.append("/>")
        } else {
            output.append(">")
            for child in self.children {
                switch child {
                case .element(let element):
                    element.write(
                        into: &output,
                        inScopeDefault: childDefault,
                        streamPrefix: streamPrefix,
                        prefixes: &prefixes
                    )
                case .text(let text):
                    XMLEscaping.appendText(text, to: &output)
                }
            }
            output.append("</")
            if let prefix {
                output.append(prefix)
            }
            output.append(self.name.localName)
            output.append(">")
        }
        prefixes.reset(to: mark)
    }

    /// Whether two default namespaces are interchangeable for serialisation.
    static func sameDefaultNamespace(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        let stanzaNamespaces = [Namespace.client, Namespace.componentAccept]
        return stanzaNamespaces.contains(a) && stanzaNamespaces.contains(b)
    }

    /// Checks that every name, attribute value and text node can be carried by XML 1.0.
    ///
    /// - Throws: ``XMLCharacterError`` naming the first offending character and where it is.
    public func validateCharacters() throws(XMLCharacterError) {
        if let scalar = XMLEscaping.firstInvalidScalar(in: self.name.localName) {
            throw XMLCharacterError(scalar: scalar, location: "name of <\(self.name.localName)>")
        }
        for attribute in self.attributes {
            if let scalar = XMLEscaping.firstInvalidScalar(in: attribute.value) {
                throw XMLCharacterError(
                    scalar: scalar,
                    location: "attribute '\(attribute.name.localName)' of <\(self.name.localName)>"
                )
            }
        }
        for child in self.children {
            switch child {
            case .element(let element):
                try element.validateCharacters()
            case .text(let text):
                if let scalar = XMLEscaping.firstInvalidScalar(in: text) {
                    throw XMLCharacterError(scalar: scalar, location: "text of <\(self.name.localName)>")
                }
            }
        }
    }
}

/// A character that XML 1.0 cannot carry, found by ``Element/validateCharacters()``.
public struct XMLCharacterError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The offending character.
    public var scalar: Unicode.Scalar
    /// Where it was found, e.g. "text of <body>".
    public var location: String

    /// Creates the error.
    public init(scalar: Unicode.Scalar, location: String) {
        self.scalar = scalar
        self.location = location
    }

    /// A sentence naming the character (as U+XXXX) and where it was found.
    public var description: String {
        let hex = String(self.scalar.value, radix: 16, uppercase: true)
        let padded = String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        return "U+\(padded) is not allowed in XML 1.0 (\(self.location))"
    }
}

/// Prefixes declared for namespaced attributes while serialising one tree.
struct XMLPrefixScope {
    private var bindings: [(namespace: String, prefix: String)] = []
    private var counter = 0

    func mark() -> Int { self.bindings.count }

    mutating func reset(to mark: Int) {
        self.bindings.removeSubrange(mark...)
    }

    mutating func prefix(for namespace: String) -> (String, Bool) {
        if let existing = self.bindings.last(where: { $0.namespace == namespace }) {
            return (existing.prefix, false)
        }
        self.counter += 1
        let prefix = "ns\(self.counter)"
        self.bindings.append((namespace, prefix))
        return (prefix, true)
    }
}

/// XML escaping of text and attribute values, shared by the element serialiser and the
/// stream encoder (stream headers).
///
/// Characters XML 1.0 cannot carry are replaced by U+FFFD (see
/// ``Element/validateCharacters()`` to report them instead).
public enum XMLEscaping {
    /// Whether a scalar may appear in an XML 1.0 document.
    @inline(__always)
    static func isValidXMLScalar(_ value: UInt32) -> Bool {
        switch value {
        case 0x9, 0xA, 0xD: return true
        case 0x20...0xD7FF: return true
        case 0xE000...0xFFFD: return true
        case 0x10000...0x10FFFF: return true
        default: return false
        }
    }

    static func firstInvalidScalar(in string: String) -> Unicode.Scalar? {
        // Fast path (every outgoing stanza): in valid UTF-8 only a C0 control other than
        // tab/LF/CR, or U+FFFE/U+FFFF (which start with 0xEF), can be invalid in XML 1.0.
        var copy = string
        let suspicious = copy.withUTF8 { bytes in
            bytes.contains { byte in
                byte == 0xEF || (byte < 0x20 && byte != 0x09 && byte != 0x0A && byte != 0x0D)
            }
        }
        guard suspicious else { return nil }
        for scalar in string.unicodeScalars where !isValidXMLScalar(scalar.value) {
            return scalar
        }
        return nil
    }

    /// Whether the UTF-8 of `string` contains a byte that needs attention: one of the
    /// escaped ASCII characters (CR in text too), a C0 control, or 0xEF (which starts
    /// U+FFFE/U+FFFF).
    @inline(__always)
    private static func needsWork(_ string: String, attribute: Bool) -> Bool {
        var string = string
        return string.withUTF8 { bytes in
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "&"), UInt8(ascii: "<"), UInt8(ascii: ">"), 0xEF, 0x0D:
                    return true
                case UInt8(ascii: "'"), UInt8(ascii: "\""), 0x09, 0x0A:
                    if attribute { return true }
                case 0x00..<0x20:
                    return true
                default:
                    continue
                }
            }
            return false
        }
    }

    /// Appends character data, escaping `&`, `<`, `>` and carriage return.
    /// - Parameters:
    ///   - text: The unescaped text.
    ///   - output: Where to append.
    public static func appendText(_ text: String, to output: inout String) {
        guard needsWork(text, attribute: false) else {
            output.append(text)
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": output.append("&amp;")
            case "<": output.append("&lt;")
            case ">": output.append("&gt;")
            // A literal CR would reach the peer as LF (XML 1.0 §2.11 end-of-line handling).
            case "\r": output.append("&#13;")
            default:
                if isValidXMLScalar(scalar.value) {
                    output.unicodeScalars.append(scalar)
                } else {
                    output.append("\u{FFFD}")
                }
            }
        }
    }

    /// Appends an attribute value for single quotes, escaping `&`, `<`, `>`, `'`, `"` and
    /// tab, line feed and carriage return as character references.
    /// - Parameters:
    ///   - value: The unescaped value.
    ///   - output: Where to append.
    public static func appendAttributeValue(_ value: String, to output: inout String) {
        guard needsWork(value, attribute: true) else {
            output.append(value)
            return
        }
        for scalar in value.unicodeScalars {
            switch scalar {
            case "&": output.append("&amp;")
            case "<": output.append("&lt;")
            case ">": output.append("&gt;")
            case "'": output.append("&apos;")
            case "\"": output.append("&quot;")
            case "\t": output.append("&#9;")
            case "\n": output.append("&#10;")
            case "\r": output.append("&#13;")
            default:
                if isValidXMLScalar(scalar.value) {
                    output.unicodeScalars.append(scalar)
                } else {
                    output.append("\u{FFFD}")
                }
            }
        }
    }
}
