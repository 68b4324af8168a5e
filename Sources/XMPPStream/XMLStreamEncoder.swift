import XMPPCore

/// Writes the pieces of an outgoing XMPP stream as XML text; no I/O.
///
/// ```swift
/// var encoder = XMLStreamEncoder(contentNamespace: Namespace.componentAccept)
/// var text = ""
/// encoder.encode(.header(StreamHeader(contentNamespace: Namespace.componentAccept, to: "echo.example.com")), into: &text)
/// encoder.encode(.element(Element("handshake", namespace: Namespace.componentAccept, text: digest)), into: &text)
/// ```
///
/// The header declares the content namespace as the default namespace and binds the
/// `stream` prefix; elements are then written through
/// ``/XMPPCore/Element/serialize(into:streamNamespace:streamPrefixInScope:)``, so stanzas
/// carry no namespace declaration and `<stream:features>`/`<stream:error>` use the prefix.
public struct XMLStreamEncoder: Sendable {
    /// The default namespace of the stream being written (taken from the last header).
    public private(set) var contentNamespace: String
    /// Whether a stream header has been written since creation or the last ``reset()``.
    public private(set) var headerSent = false

    /// Creates an encoder.
    /// - Parameter contentNamespace: The content namespace to assume until a header is written.
    public init(contentNamespace: String) {
        self.contentNamespace = contentNamespace
    }

    /// Forgets the written header, for a stream restart.
    public mutating func reset() {
        self.headerSent = false
    }

    /// Appends a frame's XML text to `output`.
    /// - Parameters:
    ///   - frame: The frame to write.
    ///   - output: The string to append to.
    public mutating func encode(_ frame: XMLStreamFrame, into output: inout String) {
        switch frame {
        case .header(let header):
            self.contentNamespace = header.contentNamespace
            self.headerSent = true
            Self.appendHeader(header, to: &output)
        case .element(let element):
            element.serialize(into: &output, streamNamespace: self.contentNamespace, streamPrefixInScope: true)
        case .close:
            output.append("</stream:stream>")
        case .whitespace:
            output.append(" ")
        }
    }

    private static func appendHeader(_ header: StreamHeader, to output: inout String) {
        output.append("<?xml version='1.0'?><stream:stream")
        if !header.contentNamespace.isEmpty {
            output.append(" xmlns='")
            XMLEscaping.appendAttributeValue(header.contentNamespace, to: &output)
            output.append("'")
        }
        output.append(" xmlns:stream='")
        output.append(Namespace.stream)
        output.append("'")
        var declared = 0
        for attribute in header.attributes {
            let namespace = attribute.name.namespace
            if namespace == Namespace.xmlns || (namespace.isEmpty && attribute.name.localName == "xmlns") {
                continue
            }
            output.append(" ")
            if namespace == Namespace.xml {
                output.append("xml:")
            } else if !namespace.isEmpty {
                declared += 1
                output.append("xmlns:h\(declared)='")
                XMLEscaping.appendAttributeValue(namespace, to: &output)
                output.append("' h\(declared):")
            }
            output.append(attribute.name.localName)
            output.append("='")
            XMLEscaping.appendAttributeValue(attribute.value, to: &output)
            output.append("'")
        }
        output.append(">")
    }
}
