/// Every XML namespace the project uses, each with the specification that defines it.
///
/// Keep new constants here, so that a namespace is spelled once in the code base.
public enum Namespace {
    /// RFC 6120 §4.8.2: the stream namespace (`stream:` prefix).
    public static let stream = "http://etherx.jabber.org/streams"
    /// RFC 6120 §4.8.3: the default content namespace of client streams, and
    /// the canonical namespace of stanzas in this package (see ``Element``).
    public static let client = "jabber:client"
    /// RFC 6120 §4.8.3: the default content namespace of server-to-server streams.
    public static let server = "jabber:server"
    /// XEP-0114 Jabber Component Protocol: the default namespace of component streams.
    public static let componentAccept = "jabber:component:accept"
    /// XEP-0225 Component Connections: hostname binding (`<bind/>`, `<unbind/>`).
    public static let component = "urn:xmpp:component:0"
    /// RFC 6120 §4.9.3: stream error conditions.
    public static let streams = "urn:ietf:params:xml:ns:xmpp-streams"
    /// RFC 6120 §8.3: stanza error conditions.
    public static let stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
    /// RFC 6120 §5: STARTTLS negotiation.
    public static let tls = "urn:ietf:params:xml:ns:xmpp-tls"
    /// RFC 6120 §6: SASL negotiation.
    public static let sasl = "urn:ietf:params:xml:ns:xmpp-sasl"
    /// RFC 6120 §7: resource binding (client streams).
    public static let bind = "urn:ietf:params:xml:ns:xmpp-bind"
    /// XEP-0440 SASL Channel-Binding Type Capability.
    public static let saslChannelBinding = "urn:xmpp:sasl-cb:0"
    /// XML 1.0 / Namespaces in XML: the namespace bound to the reserved `xml` prefix (`xml:lang`).
    public static let xml = "http://www.w3.org/XML/1998/namespace"
    /// Namespaces in XML: the namespace of `xmlns` declarations themselves.
    public static let xmlns = "http://www.w3.org/2000/xmlns/"
    /// XEP-0030 Service Discovery: information.
    public static let discoInfo = "http://jabber.org/protocol/disco#info"
    /// XEP-0030 Service Discovery: items.
    public static let discoItems = "http://jabber.org/protocol/disco#items"
    /// XEP-0199 XMPP Ping.
    public static let ping = "urn:xmpp:ping"
    /// XEP-0092 Software Version.
    public static let version = "jabber:iq:version"
    /// XEP-0051 Connection Transfer.
    public static let connectionTransfer = "urn:xmpp:cxf"
    /// XEP-0051 Connection Transfer, the variant spelled in two listings of the document.
    public static let connectionTransferVariant = "urn:xmpp:cxfr"
    /// XEP-0354 Customizable Message Routing: the feature, `<query/>` and `<cmr/>`.
    public static let customizableMessageRouting = "urn:xmpp:cmr:0"
    /// This project's balancing extension of XEP-0225: the `weight` attribute of a bind
    /// request's `<hostname/>` (`<hostname xmlns:b='urn:xmpp:component:balancing:0'
    /// b:weight='3'>search.example.com/eu-1</hostname>`), an integer 1…1000, default 1.
    public static let componentBalancing = "urn:xmpp:component:balancing:0"
    /// XEP-0198 Stream Management (`<enable/>`, `<enabled/>`, `<r/>`, `<a/>`); used on
    /// XEP-0225 component streams for acknowledgements only, without resumption.
    public static let streamManagement = "urn:xmpp:sm:3"
}
