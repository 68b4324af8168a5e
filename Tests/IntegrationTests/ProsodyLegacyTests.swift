import ComponentKit
import EchoComponent
import Foundation
import Testing
import XMPPCore
import XMPPStream
import XMPPTestSupport

/// The SDK in `auto` mode against a real Prosody 0.12 (Debian), whose component port speaks
/// XEP-0114 only: the SDK must fall back to one XEP-0114 stream per hostname.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProsodyLegacyTests {
    private static let secretEcho = "echo-secret-1"
    private static let secretCount = "count-secret-2"

    private func startProsody() async throws -> ProsodyFixture {
        try await ProsodyFixture.start(
            .init(
                domain: "localhost",
                components: [
                    .init(hostname: "echo.localhost", secret: Self.secretEcho),
                    .init(hostname: "count.localhost", secret: Self.secretCount),
                    .init(hostname: "other.localhost", secret: "the-right-one"),
                ],
                accounts: [.init(username: "alice", password: "alice-pass")]))
    }

    private func configuration(_ prosody: ProsodyFixture) -> ComponentConfiguration {
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: prosody.componentPort, serverDomain: "localhost",
            identity: "echo.localhost", password: Secret(Self.secretEcho))
        configuration.secrets["count.localhost"] = Secret(Self.secretCount)
        configuration.protocolMode = .auto
        // XEP-0114 has no STARTTLS: a fallback needs tls none (loopback) or direct, and its own
        // secret (issue #13 item 1).
        configuration.tlsMode = .none
        configuration.legacySecret = Secret(Self.secretEcho)
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        configuration.requestTimeout = .seconds(10)
        return configuration
    }

    private func alice(_ prosody: ProsodyFixture) async throws -> C2SClient {
        try await C2SClient.connect(
            .init(
                port: prosody.c2sPort, domain: "localhost", username: "alice", password: "alice-pass",
                caFile: prosody.caCertificatePath))
    }

    @Test func autoFallsBackAndServesTwoHostnamesOverTwoConnections() async throws {
        let prosody = try await self.startProsody()
        defer { prosody.stop() }
        let connection = ComponentConnection(configuration: self.configuration(prosody), logger: testLogger("prosody-legacy"))
        let events = EventRecorder(connection)
        try connection.register("echo.localhost", handler: EchoComponent(prefix: "echo: "))
        try connection.register("count.localhost", handler: CountingService())

        try await withRunningConnection(connection) { connection in
            try await events.waitBound(["echo.localhost", "count.localhost"])
            #expect(events.all.contains { $0.kind == .fellBackToLegacy })
            let status = connection.status
            #expect(status.connection?.protocolMode == .xep0114)
            #expect(status.hostnames.map(\.hostname) == ["count.localhost", "echo.localhost"])
            #expect(status.hostnames.allSatisfy { $0.state == .bound })

            let alice = try await self.alice(prosody)

            // A message to each hostname, and its answer.
            try await alice.send(Message(type: .chat, to: try JID("echo.localhost"), id: "m1", body: "hello").element)
            let echo = try await alice.next { $0.name.localName == "message" && $0["id"] == "m1" }
            #expect(Message(echo)?.body == "echo: hello")
            #expect(echo["from"] == "echo.localhost")

            try await alice.send(Message(type: .chat, to: try JID("bot@count.localhost"), id: "m2", body: "x").element)
            let counted = try await alice.next { $0.name.localName == "message" && $0["id"] == "m2" }
            #expect(Message(counted)?.body?.hasPrefix("count ") == true)
            #expect(counted["from"] == "bot@count.localhost")

            // An IQ to each hostname: a handler answer, and the built-in disco#info.
            let query = IQ(
                type: .get, to: try JID("count.localhost"), id: "q1",
                payload: Element("query", namespace: CountingService.namespace))
            let answer = try await alice.request(query)
            #expect(answer.type == .result)
            #expect(answer.payload?.name.namespace == CountingService.namespace)

            let disco = try await alice.request(
                IQ(type: .get, to: try JID("echo.localhost"), id: "d1", payload: Element("query", namespace: Namespace.discoInfo))
            )
            #expect(disco.type == .result)
            let identity = disco.payload?.firstChild("identity", namespace: Namespace.discoInfo)
            #expect(identity?["name"] == "Echo")
            let features = disco.payload?.children("feature", namespace: Namespace.discoInfo).compactMap { $0["var"] } ?? []
            #expect(features.contains(Namespace.ping))

            // An IQ nobody handles gets exactly one answer: service-unavailable.
            let unknown = try await alice.request(
                IQ(
                    type: .get, to: try JID("echo.localhost"), id: "u1",
                    payload: Element("query", namespace: "urn:example:nobody")))
            #expect(unknown.type == .error)
            #expect(unknown.error?.condition == .serviceUnavailable)

            // Unbinding closes that hostname's stream: Prosody then bounces its stanzas.
            try await connection.unbind("count.localhost")
            try await alice.send(Message(type: .chat, to: try JID("count.localhost"), id: "m3", body: "anyone?").element)
            let bounce = try await alice.next { $0["id"] == "m3" }
            #expect(bounce["type"] == "error")
            await alice.close()
        }
    }

    @Test func wrongSecretIsReportedAsSuch() async throws {
        let prosody = try await self.startProsody()
        defer { prosody.stop() }
        var configuration = self.configuration(prosody)
        configuration.protocolMode = .xep0114
        configuration.secrets["other.localhost"] = Secret("not-the-right-one")
        let connection = ComponentConnection(configuration: configuration, logger: testLogger("prosody-wrong-secret"))
        try await withRunningConnection(connection) { connection in
            let error = await #expect(throws: NegotiationError.self) {
                try await connection.bind("other.localhost", handler: EchoComponent())
            }
            #expect(error?.kind == .handshakeRejected)
            #expect(error?.description.contains("secret is wrong") == true)
            #expect(error?.description.contains("not-the-right-one") == false)
            // An unknown hostname says so.
            let unknown = await #expect(throws: NegotiationError.self) {
                try await connection.bind("nosuch.localhost", handler: EchoComponent())
            }
            #expect(unknown?.kind == .streamError(.hostUnknown))
        }
    }

    @Test func connectionRefusedIsClear() async throws {
        let port = try FreePort.allocate()
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: port, serverDomain: "localhost", identity: "echo.localhost", password: Secret("x"))
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(50), maxAttempts: 1)
        let connection = ComponentConnection(configuration: configuration, logger: testLogger("refused"))
        let error = await #expect(throws: ComponentError.self) { try await connection.run() }
        #expect(error?.kind == .notConnected)
        #expect(error?.description.contains("127.0.0.1:\(port)") == true)
        #expect(error?.description.lowercased().contains("refused") == true)
    }

    @Test func serverRestartIsSurvived() async throws {
        let prosody = try await self.startProsody()
        defer { prosody.stop() }
        let connection = ComponentConnection(configuration: self.configuration(prosody), logger: testLogger("prosody-restart"))
        let events = EventRecorder(connection)
        try connection.register("echo.localhost", handler: EchoComponent())
        try await withRunningConnection(connection) { connection in
            try await events.waitBound(["echo.localhost"])
            var alice = try await self.alice(prosody)
            // Traffic, then the server dies under it.
            for index in 0..<20 {
                try await alice.send(
                    Message(type: .chat, to: try JID("echo.localhost"), id: "a\(index)", body: "\(index)").element)
            }
            prosody.kill()
            await alice.close()
            try await events.wait("unbound after the kill") { $0.kind == .unbound }
            events.reset()
            try await prosody.restart()
            try await events.waitBound(["echo.localhost"], timeout: .seconds(30))
            alice = try await self.alice(prosody)
            try await alice.send(Message(type: .chat, to: try JID("echo.localhost"), id: "after", body: "again").element)
            let echo = try await alice.next { $0["id"] == "after" }
            #expect(Message(echo)?.body == "again")
            await alice.close()
        }
    }
}
