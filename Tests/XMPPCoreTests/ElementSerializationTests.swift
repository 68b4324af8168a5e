import Testing
import XMPPCore

@Suite("Element serialisation")
struct ElementSerializationTests {
    @Test func stanzaOnClientStreamHasNoNamespaceDeclaration() {
        let message = Element(
            "message", namespace: Namespace.client, attributes: ["to": "a@b", "id": "1"],
            children: [Element("body", namespace: Namespace.client, text: "hi")])
        #expect(message.serialized(streamNamespace: Namespace.client) == "<message id='1' to='a@b'><body>hi</body></message>")
    }

    @Test func canonicalStanzaOnComponentStreamHasNoNamespaceDeclaration() {
        let message = Element("message", namespace: Namespace.client, attributes: ["to": "a@b"])
        #expect(message.serialized(streamNamespace: Namespace.componentAccept) == "<message to='a@b'/>")
    }

    @Test func standaloneElementDeclaresItsNamespaceOnce() {
        let iq = Element(
            "iq", namespace: Namespace.client, attributes: ["type": "get", "id": "p"],
            children: [Element("ping", namespace: Namespace.ping)])
        #expect(
            iq.serialized() == "<iq xmlns='jabber:client' id='p' type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
    }

    @Test func childrenInheritTheirParentsNamespace() {
        let query = Element(
            "query", namespace: Namespace.discoInfo,
            children: [
                Element("identity", namespace: Namespace.discoInfo, attributes: ["category": "component"]),
                Element("feature", namespace: Namespace.discoInfo, attributes: ["var": Namespace.ping]),
            ])
        #expect(
            query.serialized(streamNamespace: Namespace.client)
                == "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='component'/>"
                + "<feature var='urn:xmpp:ping'/></query>")
    }

    @Test func nestedClientStanzaInsideForeignPayloadDeclaresClientNamespace() {
        let forwarded = Element(
            "forwarded", namespace: "urn:xmpp:forward:0",
            children: [Element("message", namespace: Namespace.client, attributes: ["to": "x@y"])])
        let outer = Element("message", namespace: Namespace.client, children: [forwarded])
        #expect(
            outer.serialized(streamNamespace: Namespace.client)
                == "<message><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' to='x@y'/>"
                + "</forwarded></message>")
    }

    @Test func textEscaping() {
        let body = Element("body", namespace: Namespace.client, text: "a & b < c > d ' \" ]]>")
        #expect(
            body.serialized(streamNamespace: Namespace.client)
                == "<body>a &amp; b &lt; c &gt; d ' \" ]]&gt;</body>")
    }

    @Test func attributeEscaping() {
        var element = Element("x", namespace: Namespace.client)
        element["v"] = "a&b<c>d'e\"f\tg\nh\ri"
        #expect(
            element.serialized(streamNamespace: Namespace.client)
                == "<x v='a&amp;b&lt;c&gt;d&apos;e&quot;f&#9;g&#10;h&#13;i'/>")
    }

    @Test func xmlLangUsesReservedPrefix() {
        var message = Message(body: "bonjour")
        message.language = "fr"
        #expect(
            message.element.serialized(streamNamespace: Namespace.client)
                == "<message xml:lang='fr'><body>bonjour</body></message>")
    }

    @Test func namespacedAttributeGetsOnePrefixDeclaration() {
        var element = Element("item", namespace: "urn:example")
        element.setAttribute(QualifiedName("urn:attr", "a"), "1")
        element.setAttribute(QualifiedName("urn:attr", "b"), "2")
        #expect(
            element.serialized()
                == "<item xmlns='urn:example' xmlns:ns1='urn:attr' ns1:a='1' ns1:b='2'/>")
    }

    @Test func xmlnsAttributesAreNeverCopied() {
        var element = Element("x", namespace: "urn:a")
        element.attributes.append(.init(QualifiedName(unqualified: "xmlns"), "urn:evil"))
        #expect(element.serialized() == "<x xmlns='urn:a'/>")
    }

    @Test func forbiddenCharactersAreReplacedAndReported() throws {
        let body = Element("body", namespace: Namespace.client, text: "a\u{0}b\u{1B}c\u{FFFE}d")
        #expect(body.serialized(streamNamespace: Namespace.client) == "<body>a\u{FFFD}b\u{FFFD}c\u{FFFD}d</body>")
        let error = #expect(throws: XMLCharacterError.self) { try body.validateCharacters() }
        #expect(error?.scalar == "\u{0}")
        #expect(error?.description == "U+0000 is not allowed in XML 1.0 (text of <body>)")
    }

    @Test func multiByteTextIsKept() throws {
        let body = Element("body", namespace: Namespace.client, text: "héllo 😀 日本")
        #expect(body.serialized(streamNamespace: Namespace.client) == "<body>héllo 😀 日本</body>")
        try body.validateCharacters()
    }

    @Test func equalityIgnoresAttributeOrder() {
        let a = Element(
            name: QualifiedName(Namespace.client, "x"),
            attributes: [
                .init(QualifiedName(unqualified: "a"), "1"), .init(QualifiedName(unqualified: "b"), "2"),
            ])
        let b = Element(
            name: QualifiedName(Namespace.client, "x"),
            attributes: [
                .init(QualifiedName(unqualified: "b"), "2"), .init(QualifiedName(unqualified: "a"), "1"),
            ])
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        var c = b
        c["a"] = "3"
        #expect(a != c)
    }

    @Test func appendTextMergesAdjacentRuns() {
        var element = Element("body", namespace: Namespace.client)
        element.append(text: "a")
        element.append(text: "b")
        element.append(text: "")
        #expect(element.children == [.text("ab")])
        #expect(element.text == "ab")
    }
}
