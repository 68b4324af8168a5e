import Testing
import XMPPCore
import XMPPStream

@Suite("Encoder → parser round trips")
struct XMLStreamRoundTripTests {
    func roundTrip(_ elements: [Element], namespace: String = Namespace.componentAccept) -> [XMLStreamEvent] {
        var encoder = XMLStreamEncoder(contentNamespace: namespace)
        var text = ""
        let header = StreamHeader(contentNamespace: namespace, to: "a'b\"c", from: "x&y", id: "<id>", language: "en")
        encoder.encode(.header(header), into: &text)
        for element in elements {
            encoder.encode(.element(element), into: &text)
        }
        encoder.encode(.close, into: &text)
        let result = parse(randomSplit(Array(text.utf8), seed: 3, maxChunk: 17))
        #expect(result.error == nil, "\(text)")
        return result.events
    }

    @Test func escapingAndWhitespaceInAttributes() {
        var message = Element(
            "message",
            namespace: Namespace.client,
            attributes: ["to": "a&b<c>d'e\"f", "id": "tab\there\nlf\rcr  two"],
            text: "& < > ' \" ]]> \t\n text 😀"
        )
        message.setAttribute(QualifiedName(Namespace.xml, "lang"), "de")
        message.setAttribute(QualifiedName("urn:example:a", "x"), "1")
        var payload = Element("data", namespace: "urn:example:b", attributes: ["k": "v"])
        payload.setAttribute(QualifiedName("urn:example:a", "y"), "2")
        message.append(payload)
        let features = Element(
            "features",
            namespace: Namespace.stream,
            children: [Element("bind", namespace: Namespace.component)]
        )
        let error = StreamError(.notWellFormed, text: "bad & worse").element
        let events = roundTrip([message, features, error])
        #expect(events.count == 5)
        guard events.count == 5, case .streamOpened(let header) = events[0] else { return }
        #expect(header.to == "a'b\"c")
        #expect(header.from == "x&y")
        #expect(header.id == "<id>")
        #expect(header.language == "en")
        #expect(header.contentNamespace == Namespace.componentAccept)
        #expect(events[1] == .element(message))
        #expect(events[2] == .element(features))
        #expect(events[3] == .element(error))
        #expect(events[4] == .streamClosed)
        if case .element(let parsed) = events[3] {
            #expect(StreamError(element: parsed) == StreamError(.notWellFormed, text: "bad & worse"))
        }
    }

    @Test func streamNamespaceElementsUseThePrefix() {
        var encoder = XMLStreamEncoder(contentNamespace: Namespace.client)
        var text = ""
        encoder.encode(.header(StreamHeader(contentNamespace: Namespace.client, to: "example.com")), into: &text)
        #expect(
            text
                == "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
        )
        text = ""
        encoder.encode(.element(StreamError(.conflict).element), into: &text)
        encoder.encode(.element(Element("presence", namespace: Namespace.client)), into: &text)
        encoder.encode(.whitespace, into: &text)
        encoder.encode(.close, into: &text)
        #expect(
            text
                == "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error><presence/> </stream:stream>"
        )
    }

    @Test func componentStanzasAreWrittenWithoutDeclaration() {
        var encoder = XMLStreamEncoder(contentNamespace: Namespace.componentAccept)
        var text = ""
        encoder.encode(.element(Element("message", namespace: Namespace.client, attributes: ["to": "x"])), into: &text)
        #expect(text == "<message to='x'/>")
    }
}
