import ComponentKit
import ComponentKitTesting
import Testing
import XMPPCore
import XMPPStream

/// Whole connections against the in-memory server: negotiation, routing, answers, binding,
/// reconnection, with no socket.
@Suite("In-memory server", .timeLimit(.minutes(1)))
struct InMemoryServerTests {
    static func router() -> StanzaRouter {
        var router = StanzaRouter(identity: .init(category: "component", type: "generic", name: "Test"))
        router.message { message, context in
            try await context.send(message.reply(body: "echo: \(message.body ?? "")"))
        }
        router.iq(.get, "urn:example:time", "time") { _, _ in
            Element("time", namespace: "urn:example:time", text: "noon")
        }
        return router
    }

    @Test func aStanzaGoesThroughTheWholeConnectionAndIsAnswered() async throws {
        let server = InMemoryServer()
        let connection = server.makeConnection()
        try connection.register("svc.example.com", handler: Self.router())
        try await server.run(connection) {
            let stream = try await server.stream(for: "svc.example.com")
            let from = try JID("juliet@example.com/balcony")
            let to = try JID("svc.example.com")
            try await stream.send(.message(Message(type: .chat, from: from, to: to, id: "m1", body: "hi")))
            guard case .message(let reply) = try #require(await stream.nextStanza()) else {
                Issue.record("expected a message")
                return
            }
            #expect(reply.body == "echo: hi")
            #expect(reply.to == from)
            #expect(reply.from == to)

            try await stream.send(
                .iq(IQ(type: .get, from: from, to: to, id: "t1", payload: Element("time", namespace: "urn:example:time"))))
            try await stream.send(
                .iq(IQ(type: .get, from: from, to: to, id: "u1", payload: Element("query", namespace: "urn:example:none"))))
            try await stream.send(
                .iq(IQ(type: .get, from: from, to: to, id: "d1", payload: Element("query", namespace: Namespace.discoInfo))))
            var answers: [String: IQ] = [:]
            for _ in 0..<3 {
                guard case .iq(let iq) = try #require(await stream.nextStanza()) else { continue }
                answers[iq.requestID] = iq
            }
            #expect(answers["t1"]?.payload?.text == "noon")
            #expect(answers["u1"]?.error?.condition == .serviceUnavailable)
            let features = answers["d1"]?.payload?.children("feature", namespace: Namespace.discoInfo).compactMap { $0["var"] }
            #expect(features?.contains("urn:example:time") == true)
            #expect(features?.contains(Namespace.ping) == true)
        }
    }

    @Test func bindingAtRunTimeOpensAStreamAndARefusalIsAnError() async throws {
        let server = InMemoryServer()
        server.refuse("nope.example.com")
        let connection = server.makeConnection()
        try connection.register("svc.example.com", handler: Self.router())
        try await server.run(connection) {
            _ = try await server.stream(for: "svc.example.com")
            let bound = try await connection.bind("more.example.com", handler: Self.router())
            #expect(bound == "more.example.com")
            let stream = try await server.stream(for: "more.example.com")
            try await stream.send(
                .message(Message(type: .chat, from: try JID("a@example.com"), to: try JID("more.example.com"), body: "x")))
            guard case .message(let reply) = try #require(await stream.nextStanza()) else {
                Issue.record("expected a message")
                return
            }
            #expect(reply.from == (try JID("more.example.com")))
            let error = await #expect(throws: NegotiationError.self) {
                _ = try await connection.bind("nope.example.com", handler: Self.router())
            }
            #expect(error?.kind == .streamError(.hostUnknown))
        }
    }

    @Test func aWrongSecretIsRefused() async throws {
        let server = InMemoryServer(secret: "right")
        var configuration = server.configuration()
        configuration.password = Secret("wrong")
        let connection = server.makeConnection(configuration: configuration)
        try await server.run(connection) {
            let error = await #expect(throws: NegotiationError.self) {
                _ = try await connection.bind("svc.example.com", handler: Self.router())
            }
            #expect(error?.kind == .handshakeRejected)
        }
    }

    @Test func theConnectionComesBackAfterTheServerClosesTheStream() async throws {
        let server = InMemoryServer()
        var configuration = server.configuration()
        configuration.reconnectPolicy.initialDelay = .milliseconds(10)
        let connection = server.makeConnection(configuration: configuration)
        try connection.register("svc.example.com", handler: Self.router())
        try await server.run(connection) {
            let first = try await server.stream(for: "svc.example.com")
            await first.close()
            #expect(await first.nextStanza() == nil)
            var second = try await server.stream(for: "svc.example.com")
            while second === first {
                try await Task.sleep(for: .milliseconds(5))
                second = try await server.stream(for: "svc.example.com")
            }
            #expect(server.connectionCount == 2)
            try await second.send(
                .message(Message(type: .chat, from: try JID("a@example.com"), to: try JID("svc.example.com"), body: "back")))
            guard case .message(let reply) = try #require(await second.nextStanza()) else {
                Issue.record("expected a message")
                return
            }
            #expect(reply.body == "echo: back")
        }
    }
}

/// A graceful shutdown over XEP-0114 first asks the server to stop routing the hostname
/// (XEP-0225's `<unbind/>` as an IQ to the server's domain), and keeps the stream up until
/// what the server had already routed is answered.
@Suite("XEP-0114 shutdown asks the server to stop routing", .timeLimit(.minutes(1)))
struct LegacyShutdownUnbindTests {
    @Test func theUnbindRequestComesFirstAndWhatFollowsItIsStillAnswered() async throws {
        let server = InMemoryServer()
        let connection = server.makeConnection()
        try connection.register("svc.example.com", handler: InMemoryServerTests.router())
        try await server.run(connection) {
            let stream = try await server.stream(for: "svc.example.com")
            let from = try JID("juliet@example.com/balcony")
            let to = try JID("svc.example.com")
            connection.shutdown()
            guard case .iq(let request) = try #require(await stream.nextStanza()) else {
                Issue.record("expected the unbind request first")
                return
            }
            #expect(request.type == .set)
            #expect(request.from == to)
            #expect(request.to == (try JID("example.com")))
            let unbind = try #require(request.payload)
            #expect(unbind.name == QualifiedName(Namespace.component, "unbind"))
            #expect(unbind.firstChild("hostname", namespace: Namespace.component)?.text == "svc.example.com")
            // A stanza the server routed before it read the request, then the result.
            try await stream.send(.message(Message(type: .chat, from: from, to: to, id: "late", body: "still there?")))
            try await stream.send(.iq(request.result()))
            guard case .message(let echo) = try #require(await stream.nextStanza()) else {
                Issue.record("expected the echo of the late message")
                return
            }
            #expect(echo.body == "echo: still there?")
        }
    }
}

/// Acknowledgements on a XEP-0114 stream (``ComponentConfiguration/legacyAcknowledgements``,
/// for ejabberd's `ejabberd_service_acks`): `<enable/>` after the handshake, every stanza
/// since the handshake counted, no `<a/>` before `<enabled/>`.
@Suite("XEP-0114 acknowledgements", .timeLimit(.minutes(1)))
struct LegacyAcknowledgementTests {
    /// Sends `count` messages numbered from `first` and reads their echoes, in order.
    private func exchange(_ stream: InMemoryStream, _ first: Int, _ count: Int) async throws {
        let from = try JID("juliet@example.com/balcony")
        let to = try JID("svc.example.com")
        for index in first..<(first + count) {
            try await stream.send(.message(Message(type: .chat, from: from, to: to, id: "m\(index)", body: "\(index)")))
        }
        for index in first..<(first + count) {
            guard case .message(let echo) = try #require(await stream.nextStanza()) else {
                Issue.record("expected the echo of \(index)")
                return
            }
            #expect(echo.body == "echo: \(index)")
        }
    }

    /// Runs `body` with the stream of `svc.example.com` (an echo router) once it is open;
    /// `acknowledgements` sets ``ComponentConfiguration/legacyAcknowledgements`` (`nil`: the
    /// default).
    private func withStream(
        acknowledgements: Bool? = nil, _ body: @escaping @Sendable (InMemoryStream, ComponentConnection) async throws -> Void
    ) async throws {
        let server = InMemoryServer()
        var configuration = server.configuration()
        if let acknowledgements { configuration.legacyAcknowledgements = acknowledgements }
        let connection = server.makeConnection(configuration: configuration)
        try connection.register("svc.example.com", handler: InMemoryServerTests.router())
        try await server.run(connection) {
            try await body(try await server.stream(for: "svc.example.com"), connection)
        }
    }

    @Test func theCountStartsAtTheHandshakeAndNoAcknowledgementPrecedesEnabled() async throws {
        try await self.withStream(acknowledgements: true) { stream, _ in
            // 20 stanzas before the server answers <enable/>: counted, never acknowledged yet
            // (an <a/> for the 16th would have been written before the 17th echo).
            try await self.exchange(stream, 0, 20)
            #expect(stream.enableRequested)
            #expect(stream.acknowledgements.isEmpty, "acknowledged before <enabled/>: \(stream.acknowledgements)")
            try await stream.answerEnable()
            // 12 more: the 32nd handled stanza since the handshake is acknowledged (every 16).
            try await self.exchange(stream, 20, 12)
            #expect(stream.acknowledgements == [32])
        }
    }

    @Test func offByDefaultNothingIsSentThatAPlainServerWouldRefuse() async throws {
        try await self.withStream { stream, _ in
            try await self.exchange(stream, 0, 20)
            #expect(!stream.enableRequested)
            #expect(stream.acknowledgements.isEmpty)
        }
    }

    @Test func aGracefulCloseAcknowledgesWhatWasHandled() async throws {
        try await self.withStream(acknowledgements: true) { stream, connection in
            try await stream.answerEnable()
            try await self.exchange(stream, 0, 5)
            connection.shutdown()
            // The unbind request (no module here: answered with an error), then the last <a/>.
            guard case .iq(let request) = try #require(await stream.nextStanza()) else {
                Issue.record("expected the unbind request")
                return
            }
            try await stream.send(.iq(request.errorResult(StanzaError(.featureNotImplemented))))
            while await stream.nextStanza() != nil {}
            #expect(stream.acknowledgements.last == 6, "\(stream.acknowledgements)")
        }
    }
}
