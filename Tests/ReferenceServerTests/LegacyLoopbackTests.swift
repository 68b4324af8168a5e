import Testing
import XMPPCore
import XMPPStream

@testable import ReferenceServer

@Suite(.timeLimit(.minutes(1))) struct LegacyLoopbackTests {
    @Test func handshakeSucceedsAndRoutes() async throws {
        try await withServer { server in
            let port = try #require(server.legacyPort)
            let client = try await RawClient.connect(port: port, namespace: Namespace.componentAccept)
            defer { client.close() }
            let answer = try await client.legacyHandshake(hostname: "legacy.example.test", secret: Fixture.legacySecret)
            #expect(answer.name.localName == "handshake")
            #expect(answer.children.isEmpty)
            try await server.waitUntilBound("legacy.example.test")

            // A user's message reaches the component; its reply reaches the users.
            let users = server.userStanzas()
            try server.inject(
                Message(from: try JID("alice@example.test/x"), to: try JID("bot@legacy.example.test"), id: "m1", body: "hi")
                    .element)
            let received = try await client.nextElement()
            #expect(Message(received)?.body == "hi")
            try await client.send(
                .element(
                    Message(
                        from: try JID("bot@legacy.example.test"), to: try JID("alice@example.test/x"), id: "m2", body: "hello"
                    ).element))
            let reply = try await withTimeout {
                var iterator = users.makeAsyncIterator()
                return await iterator.next()
            }
            #expect(reply.flatMap(Message.init)?.body == "hello")

            // from outside the bound hostname: invalid-from ends the stream.
            try await client.send(
                .element(Message(from: try JID("legacy2.example.test"), to: try JID("alice@example.test"), body: "x").element))
            #expect(try await client.nextElement().streamErrorCondition == .invalidFrom)
            try await client.waitClosed()
            try await server.waitUntilUnbound("legacy.example.test")
        }
    }

    @Test func wrongSecretIsNotAuthorized() async throws {
        try await withServer { server in
            let client = try await RawClient.connect(port: try #require(server.legacyPort), namespace: Namespace.componentAccept)
            defer { client.close() }
            let answer = try await client.legacyHandshake(hostname: "legacy.example.test", secret: "wrong")
            #expect(answer.streamErrorCondition == .notAuthorized)
            try await client.waitClosed()
            #expect(server.boundHostnames.isEmpty)
        }
    }

    @Test func unknownHostIsHostUnknown() async throws {
        try await withServer { server in
            let client = try await RawClient.connect(port: try #require(server.legacyPort), namespace: Namespace.componentAccept)
            defer { client.close() }
            let answer = try await client.legacyHandshake(hostname: "nobody.example.test", secret: Fixture.legacySecret)
            #expect(answer.streamErrorCondition == .hostUnknown)
            try await client.waitClosed()
        }
    }

    @Test func secondStreamForTheSameHostnameIsConflict() async throws {
        try await withServer { server in
            let port = try #require(server.legacyPort)
            let first = try await RawClient.connect(port: port, namespace: Namespace.componentAccept)
            defer { first.close() }
            #expect(
                try await first.legacyHandshake(hostname: "legacy.example.test", secret: Fixture.legacySecret).name.localName
                    == "handshake")
            let second = try await RawClient.connect(port: port, namespace: Namespace.componentAccept)
            defer { second.close() }
            let answer = try await second.legacyHandshake(hostname: "legacy.example.test", secret: Fixture.legacySecret)
            #expect(answer.streamErrorCondition == .conflict)
            try await second.waitClosed()
            #expect(server.boundHostnames == ["legacy.example.test"])
        }
    }

    @Test func clientStreamOnTheXEP0225PortBeforeTLSIsNotAuthorized() async throws {
        try await withServer { server in
            let client = try await RawClient.connect(port: server.port, namespace: Namespace.client)
            defer { client.close() }
            try await client.send(
                .header(StreamHeader(contentNamespace: Namespace.client, to: "example.test", from: "component.example.test")))
            guard case .streamOpened(let header)? = try await client.next() else { throw TestFailure("no header") }
            #expect(header.from == "example.test")
            let features = try await client.nextElement()
            #expect(
                features.firstChild("starttls", namespace: Namespace.tls)?.firstChild("required", namespace: Namespace.tls) != nil
            )
            #expect(features.firstChild("mechanisms", namespace: Namespace.sasl) == nil)
            try await client.send(.element(Element("message", namespace: Namespace.client, attributes: ["to": "x@example.test"])))
            #expect(try await client.nextElement().streamErrorCondition == .notAuthorized)
            try await client.waitClosed()

            let wrongDomain = try await RawClient.connect(port: server.port, namespace: Namespace.client)
            defer { wrongDomain.close() }
            try await wrongDomain.send(.header(StreamHeader(contentNamespace: Namespace.client, to: "other.test")))
            guard case .streamOpened = try await wrongDomain.next() else { throw TestFailure("no header") }
            #expect(try await wrongDomain.nextElement().streamErrorCondition == .hostUnknown)
        }
    }
}
