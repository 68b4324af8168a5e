import Testing
import XMPPCore
import XMPPStream

@Suite("XMLStreamParser: events")
struct XMLStreamParserTests {
    static let stream = """
        <?xml version='1.0' encoding='UTF-8'?>
        <stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
        to='example.com' from='juliet@example.com' version='1.0' xml:lang='en' id='s-1'>
          <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
        <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>
        <message from='juliet@example.com/balcony' to='romeo@example.net' type='chat' id='m1' xml:lang='fr'>\
        <body>caf&#233; &amp; &lt;tea&gt; &quot;x&apos; — 😀 日本</body>\
        <x xmlns='jabber:x:data' xmlns:e='urn:example:ext' e:flag='yes' type='form'><field var='a'><value>1</value></field></x>\
        </message>
        <iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>
        <message id='m2'><body>before <![CDATA[<raw> & ]]]]><![CDATA[>stuff]]> after</body></message>
        </stream:stream>
        """

    static var expected: [XMLStreamEvent] {
        let header = StreamHeader(
            contentNamespace: Namespace.client,
            attributes: [
                .init(QualifiedName(unqualified: "to"), "example.com"),
                .init(QualifiedName(unqualified: "from"), "juliet@example.com"),
                .init(QualifiedName(unqualified: "version"), "1.0"),
                .init(QualifiedName(Namespace.xml, "lang"), "en"),
                .init(QualifiedName(unqualified: "id"), "s-1"),
            ]
        )
        let features = Element(
            "features",
            namespace: Namespace.stream,
            children: [
                Element("starttls", namespace: Namespace.tls, children: [Element("required", namespace: Namespace.tls)]),
                Element(
                    "mechanisms",
                    namespace: Namespace.sasl,
                    children: [Element("mechanism", namespace: Namespace.sasl, text: "SCRAM-SHA-1")]
                ),
            ]
        )
        var x = Element(
            "x",
            namespace: "jabber:x:data",
            attributes: ["type": "form"],
            children: [
                Element(
                    "field",
                    namespace: "jabber:x:data",
                    attributes: ["var": "a"],
                    children: [Element("value", namespace: "jabber:x:data", text: "1")]
                )
            ]
        )
        x.setAttribute(QualifiedName("urn:example:ext", "flag"), "yes")
        var message = Element(
            "message",
            namespace: Namespace.client,
            attributes: ["from": "juliet@example.com/balcony", "to": "romeo@example.net", "type": "chat", "id": "m1"],
            children: [
                Element("body", namespace: Namespace.client, text: "café & <tea> \"x' — 😀 日本"),
                x,
            ]
        )
        message.setAttribute(QualifiedName(Namespace.xml, "lang"), "fr")
        let iq = Element(
            "iq",
            namespace: Namespace.client,
            attributes: ["type": "get", "id": "p1"],
            children: [Element("ping", namespace: Namespace.ping)]
        )
        let message2 = Element(
            "message",
            namespace: Namespace.client,
            attributes: ["id": "m2"],
            children: [Element("body", namespace: Namespace.client, text: "before <raw> & ]]>stuff after")]
        )
        return [
            .streamOpened(header), .element(features), .element(message), .element(iq), .element(message2),
            .streamClosed,
        ]
    }

    @Test func wholeStream() {
        let result = parse(Self.stream)
        #expect(result.error == nil)
        #expect(result.events == Self.expected)
    }

    @Test func headerFields() throws {
        let result = parse(Self.stream)
        guard case .streamOpened(let header) = result.events.first else {
            Issue.record("no header: \(result.events)")
            return
        }
        #expect(header.contentNamespace == "jabber:client")
        #expect(header.to == "example.com")
        #expect(header.from == "juliet@example.com")
        #expect(header.id == "s-1")
        #expect(header.version == "1.0")
        #expect(header.language == "en")
        #expect(header.attributes.count == 5)
    }

    @Test func byteByByte() {
        let bytes = Array(Self.stream.utf8)
        let result = parse(bytes.map { [$0] })
        #expect(result.error == nil)
        #expect(result.events == Self.expected)
    }

    @Test(arguments: 0..<200)
    func randomSplits(seed: Int) {
        let bytes = Array(Self.stream.utf8)
        let result = parse(randomSplit(bytes, seed: UInt64(seed), maxChunk: 1 + seed % 60))
        #expect(result.error == nil)
        #expect(result.events == Self.expected)
    }

    @Test func eventsArriveAsSoonAsTheirBytesDo() throws {
        let parser = XMLStreamParser()
        parser.feed(Array(header().utf8))
        #expect(try parser.nextEvent() != nil)
        #expect(try parser.nextEvent() == nil)
        parser.feed(Array("<presence/".utf8))
        #expect(try parser.nextEvent() == nil)
        parser.feed(Array(">".utf8))
        #expect(try parser.nextEvent() == .element(Element("presence", namespace: Namespace.client)))
        #expect(try parser.nextEvent() == nil)
    }

    @Test func componentAcceptStanzasEqualClientStanzas() {
        let stanzas = "<message to='a@b' id='1'><body>hi</body></message><iq type='result' id='2'/>"
        let accept = parse(header(Namespace.componentAccept) + stanzas)
        let client = parse(header(Namespace.client) + stanzas)
        #expect(accept.error == nil)
        #expect(accept.events.count == 3)
        #expect(Array(accept.events.dropFirst()) == Array(client.events.dropFirst()))
        guard case .streamOpened(let acceptHeader) = accept.events.first,
            case .element(let message) = accept.events.dropFirst().first
        else {
            Issue.record("unexpected events \(accept.events)")
            return
        }
        #expect(acceptHeader.contentNamespace == Namespace.componentAccept)
        #expect(message.name == QualifiedName(Namespace.client, "message"))
        #expect(message.elements.first?.name == QualifiedName(Namespace.client, "body"))
    }

    @Test func whitespaceBetweenStanzasIsIgnored() {
        let result = parse(header() + "\n  \t\r\n<presence/>\n \n</stream:stream>")
        #expect(result.error == nil)
        #expect(result.events.count == 3)
        #expect(result.events[1] == .element(Element("presence", namespace: Namespace.client)))
        #expect(result.events[2] == .streamClosed)
    }

    @Test func textIsKeptWithWhitespaceInsideStanzas() {
        let result = parse(header() + "<message><body>  a\n b  </body></message>")
        #expect(
            result.events.last
                == .element(
                    Element(
                        "message",
                        namespace: Namespace.client,
                        children: [Element("body", namespace: Namespace.client, text: "  a\n b  ")]
                    )
                )
        )
    }
}
