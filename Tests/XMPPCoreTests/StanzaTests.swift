import Testing
import XMPPCore

@Suite("Stanzas")
struct StanzaTests {
    @Test func messageReplySwapsAddressesAndKeepsIDAndThread() throws {
        var message = Message(
            type: .chat, from: try JID("juliet@example.com/balcony"), to: try JID("echo.example.com"),
            id: "m1", body: "hello")
        message.thread = "t1"
        let reply = message.reply(body: "hello back")
        #expect(reply.to == (try JID("juliet@example.com/balcony")))
        #expect(reply.from == (try JID("echo.example.com")))
        #expect(reply.id == "m1")
        #expect(reply.type == .chat)
        #expect(reply.thread == "t1")
        #expect(reply.body == "hello back")
    }

    @Test func messageTypeDefaultsToNormalAndUnknownReadsAsNormal() {
        var message = Message()
        #expect(message.type == .normal)
        #expect(message.element["type"] == nil)
        message.element["type"] = "bogus"
        #expect(message.type == .normal)
        message.type = .headline
        #expect(message.element["type"] == "headline")
    }

    @Test func stanzaClassification() throws {
        let iq = IQ(type: .get, to: try JID("example.com"), id: "1", payload: Element("ping", namespace: Namespace.ping))
        #expect(Stanza(iq.element) == .iq(iq))
        #expect(Stanza(Message(body: "x").element) == .message(Message(body: "x")))
        #expect(Stanza(Element("message", namespace: Namespace.componentAccept)) == nil)
        #expect(Stanza(Element("features", namespace: Namespace.stream)) == nil)
        // An IQ without an id or with an unknown type is not a valid stanza view.
        #expect(Stanza(Element("iq", namespace: Namespace.client, attributes: ["type": "get"])) == nil)
        #expect(Stanza(Element("iq", namespace: Namespace.client, attributes: ["type": "fetch", "id": "1"])) == nil)
    }

    @Test func iqResultAndErrorAnswer() throws {
        let request = IQ(
            type: .get, from: try JID("user@example.com/r"), to: try JID("svc.example.com"), id: "q1",
            payload: Element("query", namespace: Namespace.version))
        let result = request.result(Element("query", namespace: Namespace.version))
        #expect(result.type == .result)
        #expect(result.requestID == "q1")
        #expect(result.to == (try JID("user@example.com/r")))
        #expect(result.from == (try JID("svc.example.com")))

        let error = request.errorResult(StanzaError(.serviceUnavailable))
        #expect(error.type == .error)
        #expect(error.requestID == "q1")
        #expect(error.payload?.name == QualifiedName(Namespace.version, "query"))
        #expect(error.error?.condition == .serviceUnavailable)
        #expect(error.error?.type == .cancel)
        #expect(
            error.element.serialized(streamNamespace: Namespace.client)
                == "<iq id='q1' type='error' from='svc.example.com' to='user@example.com/r'>"
                + "<query xmlns='jabber:iq:version'/><error type='cancel'>"
                + "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    }

    @Test func presenceViews() {
        var element = Presence().element
        element.append(Element("show", namespace: Namespace.client, text: "dnd"))
        element.append(Element("priority", namespace: Namespace.client, text: "-5"))
        element.append(Element("status", namespace: Namespace.client, text: "busy"))
        let presence = Presence(element)!
        #expect(presence.type == nil)
        #expect(presence.show == .dnd)
        #expect(presence.priority == -5)
        #expect(presence.status == "busy")
        var unknown = presence
        unknown.element["type"] = "weird"
        #expect(unknown.type == .error)
    }
}
