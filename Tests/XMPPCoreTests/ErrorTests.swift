import Testing
import XMPPCore

@Suite("Stanza and stream errors")
struct ErrorTests {
    @Test(arguments: StanzaError.Condition.allCases)
    func stanzaErrorRoundTrip(condition: StanzaError.Condition) {
        let error = StanzaError(condition, text: "why", by: "example.com")
        let parsed = StanzaError(element: error.element)
        #expect(parsed == error)
        #expect(parsed?.type == condition.defaultType)
    }

    @Test func stanzaErrorDefaultTypesFollowRFC6120() {
        #expect(StanzaError.Condition.badRequest.defaultType == .modify)
        #expect(StanzaError.Condition.conflict.defaultType == .cancel)
        #expect(StanzaError.Condition.notAuthorized.defaultType == .auth)
        #expect(StanzaError.Condition.resourceConstraint.defaultType == .wait)
        #expect(StanzaError.Condition.allCases.count == 22)
    }

    @Test func stanzaErrorWithApplicationConditionLegacyCodeAndRedirect() {
        var element = Element("error", namespace: Namespace.client, attributes: ["type": "modify", "code": "302"])
        element.append(Element("redirect", namespace: Namespace.stanzas, text: "xmpp:other.example.com"))
        element.append(Element("too-many", namespace: "urn:example:app"))
        element.append(
            Element("query", namespace: "urn:example:q", children: [Element("item", namespace: "urn:example:q")]))
        let parsed = StanzaError(element: element)
        #expect(parsed?.condition == .redirect)
        #expect(parsed?.redirectURI == "xmpp:other.example.com")
        #expect(parsed?.legacyCode == 302)
        #expect(parsed?.applicationCondition?.name == QualifiedName("urn:example:app", "too-many"))
        #expect(parsed?.otherChildren.first?.name == QualifiedName("urn:example:q", "query"))
    }

    @Test func unknownStanzaConditionBecomesUndefined() {
        let element = Element(
            "error", namespace: Namespace.client, attributes: ["type": "cancel"],
            children: [Element("made-up", namespace: Namespace.stanzas)])
        #expect(StanzaError(element: element)?.condition == .undefinedCondition)
    }

    @Test(arguments: StreamError.Condition.allCases)
    func streamErrorRoundTrip(condition: StreamError.Condition) {
        let error = StreamError(condition, text: "because")
        #expect(StreamError(element: error.element) == error)
    }

    @Test func seeOtherHostCarriesTheHost() {
        let error = StreamError(.seeOtherHost, seeOtherHost: "[2001:db8::1]:5270")
        #expect(
            error.element.serialized()
                == "<error xmlns='http://etherx.jabber.org/streams'><see-other-host "
                + "xmlns='urn:ietf:params:xml:ns:xmpp-streams'>[2001:db8::1]:5270</see-other-host></error>")
        #expect(StreamError(element: error.element)?.seeOtherHost == "[2001:db8::1]:5270")
        #expect(error.description == "stream error <see-other-host> ([2001:db8::1]:5270)")
        #expect(StreamError.Condition.allCases.count == 25)
    }
}
