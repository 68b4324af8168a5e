import ComponentKit
import ComponentKitTesting
import EchoComponent
import Testing
import XMPPCore

/// The echo example, tested as a plugin author would: through `ComponentKitTesting` only.
@Suite("Echo component")
struct EchoComponentTests {
    @Test(.timeLimit(.minutes(1)))
    func echoesTheBodyWithThePrefixToTheSender() async throws {
        let test = TestContext(hostname: "echo.example.com")
        let message = Message(
            type: .chat, from: try JID("juliet@example.com/balcony"), to: try JID("echo.example.com"), id: "m1",
            body: "hello")
        await test.deliver(.message(message), to: EchoComponent(prefix: "echo: "))
        let reply = try #require(test.sentMessages.first)
        #expect(test.sent.count == 1)
        #expect(reply.body == "echo: hello")
        #expect(reply.to == (try JID("juliet@example.com/balcony")))
        #expect(reply.from == (try JID("echo.example.com")))
        #expect(reply.type == .chat)
    }

    @Test(.timeLimit(.minutes(1)))
    func neverAnswersAnErrorNorAMessageWithoutBody() async throws {
        let test = TestContext(hostname: "echo.example.com")
        var error = Message(type: .error, from: try JID("juliet@example.com"), to: try JID("echo.example.com"), body: "x")
        error.element["id"] = "e1"
        await test.deliver(.message(error), to: EchoComponent())
        await test.deliver(
            .message(Message(type: .chat, from: try JID("juliet@example.com"), to: try JID("echo.example.com"))),
            to: EchoComponent())
        #expect(test.sent.isEmpty)
    }

    @Test(.timeLimit(.minutes(1)))
    func describesItselfAndAnswersUnknownQueriesWithServiceUnavailable() async throws {
        let test = TestContext(hostname: "echo.example.com")
        let disco = IQ(
            type: .get, from: try JID("juliet@example.com/balcony"), to: try JID("echo.example.com"), id: "d1",
            payload: Element("query", namespace: Namespace.discoInfo))
        let info = try #require(await test.answer(to: disco, from: EchoComponent()))
        #expect(info.type == .result)
        let identity = try #require(info.payload?.firstChild("identity", namespace: Namespace.discoInfo))
        #expect(identity["name"] == "Echo")

        let unknown = IQ(
            type: .get, from: try JID("juliet@example.com/balcony"), to: try JID("echo.example.com"), id: "u1",
            payload: Element("query", namespace: "urn:example:unknown"))
        let refused = try #require(await test.answer(to: unknown, from: EchoComponent()))
        #expect(refused.type == .error)
        #expect(refused.error?.condition == .serviceUnavailable)
        // Exactly one answer each.
        #expect(test.sentIQs.map(\.requestID) == ["d1", "u1"])
    }
}
