import ComponentKit
import EchoComponent
import Foundation
import ReferenceServer
import Synchronization
import Testing
import XMPPCore
import XMPPSASL
import XMPPStream
import XMPPTLS

/// A CA, a certificate for `example.test` and a sasldb, made once per test process.
struct SDKFixture: Sendable {
    static let domain = "example.test"
    static let identity = "component.example.test"
    static let password = "pässword-42"

    let directory: String
    let files: DevelopmentCertificate.Files
    let sasldb: String

    static let shared: SDKFixture = {
        do {
            let directory = NSTemporaryDirectory() + "sdk-it-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            atexit { try? FileManager.default.removeItem(atPath: SDKFixture.shared.directory) }
            let files = try DevelopmentCertificateAuthority().issue(dnsNames: [domain]).write(toDirectory: directory, name: "server")
            let sasldb = directory + "/sasldb"
            try SASLDatabase.setPassword(path: sasldb, user: identity, realm: domain, password: password)
            return SDKFixture(directory: directory, files: files, sasldb: sasldb)
        } catch {
            fatalError("cannot create the SDK test fixture: \(error)")
        }
    }()

    func serverConfiguration() -> ReferenceServerConfiguration {
        var configuration = ReferenceServerConfiguration(
            domain: Self.domain, tls: self.files.serverConfiguration,
            sasl: .init(sasldbPath: self.sasldb, scramIterationCount: nil))
        configuration.allowedHostnames = [
            Self.identity: ["a.example.test", "b.example.test", "c.example.test", "d.example.test"]
        ]
        return configuration
    }

    func clientConfiguration(port: Int) -> ComponentConfiguration {
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: port, serverDomain: Self.domain, identity: Self.identity,
            password: Secret(Self.password))
        configuration.protocolMode = .xep0225
        configuration.trustRoots = .caFile(self.files.caCertificateFile)
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        configuration.requestTimeout = .seconds(10)
        return configuration
    }
}

/// Records what a handler saw, per hostname.
final class Inbox: Sendable {
    private let stanzas = Mutex<[String: [Stanza]]>([:])

    func handler(replying: Bool = true) -> ClosureHandler {
        ClosureHandler(discoInfo: DiscoInfo(features: ["urn:example:inbox"])) { stanza, context in
            self.stanzas.withLock { $0[context.hostname, default: []].append(stanza) }
            guard replying else { return }
            switch stanza {
            case .message(let message) where message.type != .error:
                try await context.send(message.reply(body: "\(context.hostname) got \(message.body ?? "")"))
            case .iq(let iq) where iq.type == .get && iq.payload?.name.namespace == "urn:example:inbox":
                try await context.reply(to: iq, with: Element("query", namespace: "urn:example:inbox", text: context.hostname))
            default:
                break
            }
        }
    }

    func count(_ hostname: String) -> Int {
        self.stanzas.withLock { $0[hostname]?.count ?? 0 }
    }

    func ids(_ hostname: String) -> [String] {
        self.stanzas.withLock { $0[hostname]?.compactMap(\.id) ?? [] }
    }
}

/// Waits for the next element from the server's users sink that matches.
func nextUserStanza(
    _ iterator: inout AsyncStream<Element>.Iterator, timeout: Duration = .seconds(10),
    where predicate: (Element) -> Bool
) async throws -> Element {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        guard let element = await iterator.next() else { break }
        if predicate(element) { return element }
    }
    throw IntegrationTestError("no matching stanza reached the server's users within \(timeout)")
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct ReferenceServerSDKTests {
    @Test func threeHostnamesOneStreamTLSAndChannelBinding() async throws {
        let server = try await ReferenceServer.start(configuration: SDKFixture.shared.serverConfiguration())
        defer { Task { await server.stop() } }
        let connection = ComponentConnection(
            configuration: SDKFixture.shared.clientConfiguration(port: server.port), logger: testLogger("sdk-3"))
        let events = EventRecorder(connection)
        let inbox = Inbox()
        for hostname in ["a.example.test", "b.example.test", "c.example.test"] {
            try connection.register(hostname, handler: inbox.handler())
        }
        try await withRunningConnection(connection) { connection in
            try await events.waitBound(["a.example.test", "b.example.test", "c.example.test"])
            let status = connection.status
            #expect(status.connection?.protocolMode == .xep0225)
            #expect(status.connection?.tlsVersion == "TLSv1.3")
            #expect(status.connection?.saslMechanism == "SCRAM-SHA-256-PLUS")
            #expect(Set(server.boundHostnames) == ["a.example.test", "b.example.test", "c.example.test"])
            return ()
        }
        #expect(inbox.count("a.example.test") == 0)
    }

    @Test func routingBindingAndUnbindingAtRuntime() async throws {
        let server = try await ReferenceServer.start(configuration: SDKFixture.shared.serverConfiguration())
        let connection = ComponentConnection(
            configuration: SDKFixture.shared.clientConfiguration(port: server.port), logger: testLogger("sdk-routing"))
        let events = EventRecorder(connection)
        let inbox = Inbox()
        for hostname in ["a.example.test", "b.example.test", "c.example.test"] {
            try connection.register(hostname, handler: inbox.handler())
        }
        let usersStream = server.userStanzas()

        try await withRunningConnection(connection) { connection in
            var users = usersStream.makeAsyncIterator()
            try await events.waitBound(["a.example.test", "b.example.test", "c.example.test"])

            // A message and an IQ to each hostname reach its handler, and the answers reach the user.
            for hostname in ["a.example.test", "b.example.test", "c.example.test"] {
                try server.inject(
                    Message(type: .chat, from: try JID("alice@example.test/home"), to: try JID("bot@\(hostname)"), id: "m-\(hostname)", body: "hi").element)
                let reply = try await nextUserStanza(&users) { $0["id"] == "m-\(hostname)" }
                #expect(Message(reply)?.body == "\(hostname) got hi")
                #expect(reply["from"] == "bot@\(hostname)")
                #expect(reply["to"] == "alice@example.test/home")

                try server.inject(
                    IQ(type: .get, from: try JID("alice@example.test/home"), to: try JID(hostname), id: "q-\(hostname)",
                       payload: Element("query", namespace: "urn:example:inbox")).element)
                let answer = try await nextUserStanza(&users) { $0["id"] == "q-\(hostname)" }
                #expect(answer["type"] == "result")
                #expect(IQ(answer)?.payload?.text == hostname)
            }
            #expect(inbox.ids("c.example.test") == ["m-c.example.test", "q-c.example.test"])

            // Unbind c at runtime: its stanzas stop arriving (the server bounces them).
            try await connection.unbind("c.example.test")
            #expect(!server.boundHostnames.contains("c.example.test"))
            try server.inject(
                Message(type: .chat, from: try JID("alice@example.test/home"), to: try JID("c.example.test"), id: "after-unbind", body: "x").element)
            let bounce = try await nextUserStanza(&users) { $0["id"] == "after-unbind" }
            #expect(bounce["type"] == "error")
            #expect(inbox.count("c.example.test") == 2)

            // Bind d at runtime: its stanzas start arriving.
            let bound = try await connection.bind("d.example.test", handler: inbox.handler())
            #expect(bound == "d.example.test")
            try server.inject(
                Message(type: .chat, from: try JID("alice@example.test/home"), to: try JID("d.example.test"), id: "to-d", body: "new").element)
            let fromD = try await nextUserStanza(&users) { $0["id"] == "to-d" }
            #expect(Message(fromD)?.body == "d.example.test got new")

            // A hostname the identity may not bind is refused with not-allowed.
            let refused = await #expect(throws: ComponentError.self) {
                try await connection.bind("x.example.test", handler: inbox.handler())
            }
            #expect(refused?.kind == .bindRefused(.notAllowed))

            // Sending from an unbound hostname fails here, not as a stream error at the server.
            let unbound = await #expect(throws: ComponentError.self) {
                try await connection.send(.message(Message(from: try JID("c.example.test"), to: try JID("alice@example.test"), body: "x")))
            }
            #expect(unbound?.kind == .unboundSender)

            // Built-ins: disco#info and ping on a bound hostname; service-unavailable otherwise.
            try server.inject(
                IQ(type: .get, from: try JID("alice@example.test/home"), to: try JID("a.example.test"), id: "disco",
                   payload: Element("query", namespace: Namespace.discoInfo)).element)
            let disco = try await nextUserStanza(&users) { $0["id"] == "disco" }
            let features = IQ(disco)?.payload?.children("feature", namespace: Namespace.discoInfo).compactMap { $0["var"] }
            #expect(features?.contains("urn:example:inbox") == true)
            #expect(features?.contains(Namespace.ping) == true)
            try server.inject(
                IQ(type: .set, from: try JID("alice@example.test/home"), to: try JID("a.example.test"), id: "unknown",
                   payload: Element("query", namespace: "urn:example:unknown")).element)
            let unknown = try await nextUserStanza(&users) { $0["id"] == "unknown" }
            #expect(IQ(unknown)?.error?.condition == .serviceUnavailable)
            return ()
        }
        await server.stop()
    }

    @Test func secondStreamGetsConflictAndWrongPasswordIsNotAuthorized() async throws {
        let server = try await ReferenceServer.start(configuration: SDKFixture.shared.serverConfiguration())
        let first = ComponentConnection(
            configuration: SDKFixture.shared.clientConfiguration(port: server.port), logger: testLogger("sdk-first"))
        try first.register("a.example.test", handler: EchoComponent())
        let firstEvents = EventRecorder(first)
        try await withRunningConnection(first) { _ in
            try await firstEvents.waitBound(["a.example.test"])
            let second = ComponentConnection(
                configuration: SDKFixture.shared.clientConfiguration(port: server.port), logger: testLogger("sdk-second"))
            try await withRunningConnection(second) { second in
                let error = await #expect(throws: ComponentError.self) {
                    try await second.bind("a.example.test", handler: EchoComponent())
                }
                #expect(error?.kind == .bindRefused(.conflict))
                return ()
            }
            return ()
        }

        var wrong = SDKFixture.shared.clientConfiguration(port: server.port)
        wrong.password = Secret("wrong")
        wrong.reconnect.maxAttempts = 1
        let rejected = ComponentConnection(configuration: wrong, logger: testLogger("sdk-wrong"))
        let error = await #expect(throws: NegotiationError.self) { try await rejected.run() }
        #expect(error?.kind == .authenticationFailed)
        #expect(error?.description.contains("not-authorized") == true)
        #expect(error?.description.contains("wrong") == false)
        await server.stop()
    }

    @Test func untrustedCertificateIsRefusedBeforeAuthentication() async throws {
        let server = try await ReferenceServer.start(configuration: SDKFixture.shared.serverConfiguration())
        var configuration = SDKFixture.shared.clientConfiguration(port: server.port)
        configuration.trustRoots = .system
        configuration.reconnect.maxAttempts = 1
        let connection = ComponentConnection(configuration: configuration, logger: testLogger("sdk-untrusted"))
        let error = await #expect(throws: (any Error).self) { try await connection.run() }
        #expect(String(describing: error).contains("verif"))
        await server.stop()
    }
}
