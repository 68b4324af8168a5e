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

/// The echo example over a whole connection, against the in-memory server.
@Suite("Echo component over a connection")
struct EchoComponentConnectionTests {
    @Test(.timeLimit(.minutes(1)))
    func echoesOverAConnectionAndAnswersPing() async throws {
        let server = InMemoryServer()
        let connection = server.makeConnection()
        try connection.register("echo.example.com", handler: EchoComponent(prefix: "> "))
        try await server.run(connection) {
            let stream = try await server.stream(for: "echo.example.com")
            let user = try JID("romeo@example.com/orchard")
            try await stream.send(.message(Message(type: .chat, from: user, to: try JID("echo.example.com"), body: "hello")))
            try await stream.send(
                .iq(
                    IQ(
                        type: .get, from: user, to: try JID("echo.example.com"), id: "p1",
                        payload: Element("ping", namespace: Namespace.ping))))
            let first = await stream.nextStanza()
            let second = await stream.nextStanza()
            guard case .message(let reply) = first, case .iq(let pong) = second else {
                Issue.record("expected a message then an IQ, got \(String(describing: first)), \(String(describing: second))")
                return
            }
            #expect(reply.body == "> hello")
            #expect(reply.to == user)
            #expect(pong.type == .result)
            #expect(pong.requestID == "p1")
        }
    }
}
