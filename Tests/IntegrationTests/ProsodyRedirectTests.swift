import ComponentKit
import Foundation
import Testing
import XMPPCore
import XMPPTestSupport

/// An IQ 302 from a handler (``ComponentContext/redirect(_:to:)``), as a real c2s user of a
/// real server (Prosody 0.12, the component on XEP-0114) receives it, and follows it.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProsodyRedirectTests {
    @Test func aUserReceivesAValid302AndFollowsIt() async throws {
        let prosody = try await ProsodyFixture.start(
            .init(
                domain: "localhost",
                components: [
                    .init(hostname: "front.localhost", secret: "front-secret"),
                    .init(hostname: "count.localhost", secret: "count-secret"),
                ],
                accounts: [.init(username: "alice", password: "alice-pass")]))
        defer { prosody.stop() }
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: prosody.componentPort, serverDomain: "localhost",
            identity: "front.localhost", password: Secret("front-secret"))
        configuration.protocolMode = .xep0114
        configuration.tlsMode = .none
        configuration.legacySecret = Secret("front-secret")
        configuration.secrets["count.localhost"] = Secret("count-secret")
        configuration.requestTimeout = .seconds(10)
        let connection = ComponentConnection(configuration: configuration, logger: testLogger("prosody-redirect"))
        let events = EventRecorder(connection)
        // front.localhost sends every counting query to count.localhost, which owns the state.
        try connection.register(
            "front.localhost",
            handler: ClosureHandler { stanza, context in
                guard case .iq(let iq) = stanza, iq.type == .get else { return }
                try await context.redirect(iq, to: try JID("count.localhost"))
            })
        try connection.register("count.localhost", handler: CountingService())

        try await withRunningConnection(connection) { _ in
            try await events.waitBound(["front.localhost", "count.localhost"])
            let alice = try await C2SClient.connect(
                .init(
                    port: prosody.c2sPort, domain: "localhost", username: "alice", password: "alice-pass",
                    caFile: prosody.caCertificatePath))
            let query = IQ(
                type: .get, from: alice.jid, to: try JID("front.localhost"), id: "r1",
                payload: Element("query", namespace: CountingService.namespace))
            try await alice.send(query.element)
            let answer = try #require(IQ(try await alice.next { $0.name.localName == "iq" && $0["id"] == "r1" }))
            #expect(answer.type == .error)
            #expect(answer.error?.condition == .redirect)
            #expect(answer.error?.legacyCode == 302)
            #expect(answer.error?.redirectURI == "xmpp:count.localhost")
            let redirected = try #require(IQRedirect.redirectedQuery(in: answer), "no embedded query in \(answer.element)")
            // Prosody stamps its default xml:lang='en' on alice's stanza (RFC 6120 §8.1.5) and
            // the redirect echoes the envelope the component received: valid against the query
            // as alice sent it (no xml:lang) and as the component received it; a language
            // that differs from the original's is still a change.
            #expect(redirected.element.attribute(QualifiedName(Namespace.xml, "lang")) == "en")
            try IQRedirect.validate(original: query, redirected: redirected)
            var received = query
            received.element.setAttribute(QualifiedName(Namespace.xml, "lang"), "en")
            try IQRedirect.validate(original: received, redirected: redirected)
            var french = query
            french.element.setAttribute(QualifiedName(Namespace.xml, "lang"), "fr")
            #expect(throws: ComponentError.self) { try IQRedirect.validate(original: french, redirected: redirected) }
            #expect(redirected.element["to"] == "count.localhost")
            // The user follows it: same id, new address, the owner's answer.
            try await alice.send(redirected.element)
            let final = try #require(IQ(try await alice.next { $0.name.localName == "iq" && $0["id"] == "r1" }))
            #expect(final.type == .result)
            #expect(final.element["from"] == "count.localhost")
            #expect(final.payload?.name.namespace == CountingService.namespace)
            await alice.close()
        }
    }
}
