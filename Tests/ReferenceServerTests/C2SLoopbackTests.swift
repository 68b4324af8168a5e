import Testing
import XMPPCore
import XMPPStream

@testable import ReferenceServer

/// The client port before TLS, with a scripted plaintext client.
@Suite(.timeLimit(.minutes(1)))
struct C2SLoopbackTests {
    func withC2SServer(_ body: (ReferenceServer) async throws -> Void) async throws {
        let configure: (inout ReferenceServerConfiguration) -> Void = {
            $0.c2sPort = 0
            $0.users = ["alice@example.test": "alice-pässword"]
        }
        try await withServer(configure) { server in try await body(server) }
    }

    /// Opens a client stream and returns the features.
    func open(_ client: RawClient, to: String = Fixture.domain) async throws -> Element {
        try await client.send(.header(StreamHeader(contentNamespace: Namespace.client, to: to)))
        guard case .streamOpened(let header)? = try await client.next() else { throw TestFailure("no header") }
        #expect(header.from == Fixture.domain)
        return try await client.nextElement()
    }

    @Test func onlySTARTTLSIsOfferedAndRequired() async throws {
        try await self.withC2SServer { server in
            let client = try await RawClient.connect(port: try #require(server.c2sPort), namespace: Namespace.client)
            defer { client.close() }
            let features = try await self.open(client)
            #expect(
                features.firstChild("starttls", namespace: Namespace.tls)?.firstChild("required", namespace: Namespace.tls) != nil
            )
            #expect(features.firstChild("mechanisms", namespace: Namespace.sasl) == nil)
        }
    }

    @Test func aStanzaBeforeAuthenticationIsAStreamError() async throws {
        try await self.withC2SServer { server in
            let client = try await RawClient.connect(port: try #require(server.c2sPort), namespace: Namespace.client)
            defer { client.close() }
            _ = try await self.open(client)
            try await client.send(
                .element(Message(type: .chat, to: try JID("component.example.test"), body: "early").element))
            #expect(try await client.nextElement().streamErrorCondition == .notAuthorized)
            try await client.waitClosed()
        }
    }

    @Test func saslBeforeTLSIsAPolicyViolation() async throws {
        try await self.withC2SServer { server in
            let client = try await RawClient.connect(port: try #require(server.c2sPort), namespace: Namespace.client)
            defer { client.close() }
            _ = try await self.open(client)
            try await client.send(
                .element(Element("auth", namespace: Namespace.sasl, attributes: ["mechanism": "PLAIN"], text: "AGFsaWNlAHg=")))
            #expect(try await client.nextElement().streamErrorCondition == .policyViolation)
        }
    }

    @Test func anotherDomainIsHostUnknown() async throws {
        try await self.withC2SServer { server in
            let client = try await RawClient.connect(port: try #require(server.c2sPort), namespace: Namespace.client)
            defer { client.close() }
            try await client.send(.header(StreamHeader(contentNamespace: Namespace.client, to: "elsewhere.test")))
            _ = try await client.next()
            #expect(try await client.nextElement().streamErrorCondition == .hostUnknown)
        }
    }

    @Test func usersMustBeBareJIDsAtTheDomainAndTheClientPortNeedsTLS() async throws {
        var configuration = Fixture.shared.configuration
        configuration.users = ["alice@elsewhere.test": "pw"]
        await #expect(throws: ReferenceServerError.self) { try await ReferenceServer.start(configuration: configuration) }
        configuration.users = ["alice@example.test": ""]
        await #expect(throws: ReferenceServerError.self) { try await ReferenceServer.start(configuration: configuration) }
        configuration.users = ["alice@example.test": "pw"]
        configuration.c2sPort = 0
        configuration.tls = nil
        configuration.requireTLS = false
        await #expect(throws: ReferenceServerError.self) { try await ReferenceServer.start(configuration: configuration) }
    }
}
