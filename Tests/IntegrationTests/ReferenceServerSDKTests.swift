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
            let files = try DevelopmentCertificateAuthority().issue(dnsNames: [domain]).write(
                toDirectory: directory, name: "server")
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

@Suite(.serialized, .timeLimit(.minutes(2)))
struct ReferenceServerSDKTests {
    @Test func threeHostnamesOneStreamTLSAndChannelBinding() async throws {
        try await withServers { servers in
            let server = try await servers.start(SDKFixture.shared.serverConfiguration())
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
    }

    @Test func routingBindingAndUnbindingAtRuntime() async throws {
        try await withServers { servers in
            let server = try await servers.start(SDKFixture.shared.serverConfiguration())
            let connection = ComponentConnection(
                configuration: SDKFixture.shared.clientConfiguration(port: server.port), logger: testLogger("sdk-routing"))
            let events = EventRecorder(connection)
            let inbox = Inbox()
            for hostname in ["a.example.test", "b.example.test", "c.example.test"] {
                try connection.register(hostname, handler: inbox.handler())
            }
            let users = UserSink()
            users.follow(server)

            try await withRunningConnection(connection) { connection in
                try await events.waitBound(["a.example.test", "b.example.test", "c.example.test"])

                // A message and an IQ to each hostname reach its handler, and the answers reach the user.
                for hostname in ["a.example.test", "b.example.test", "c.example.test"] {
                    try server.inject(
                        Message(
                            type: .chat, from: try JID("alice@example.test/home"), to: try JID("bot@\(hostname)"),
                            id: "m-\(hostname)", body: "hi"
                        ).element)
                    let reply = try await users.element(id: "m-\(hostname)")
                    #expect(Message(reply)?.body == "\(hostname) got hi")
                    #expect(reply["from"] == "bot@\(hostname)")
                    #expect(reply["to"] == "alice@example.test/home")

                    try server.inject(
                        IQ(
                            type: .get, from: try JID("alice@example.test/home"), to: try JID(hostname), id: "q-\(hostname)",
                            payload: Element("query", namespace: "urn:example:inbox")
                        ).element)
                    let answer = try await users.element(id: "q-\(hostname)")
                    #expect(answer["type"] == "result")
                    #expect(IQ(answer)?.payload?.text == hostname)
                }
                #expect(inbox.ids("c.example.test") == ["m-c.example.test", "q-c.example.test"])

                // Unbind c at runtime: its stanzas stop arriving (the server bounces them).
                try await connection.unbind("c.example.test")
                #expect(!server.boundHostnames.contains("c.example.test"))
                try server.inject(
                    Message(
                        type: .chat, from: try JID("alice@example.test/home"), to: try JID("c.example.test"), id: "after-unbind",
                        body: "x"
                    ).element)
                let bounce = try await users.element(id: "after-unbind")
                #expect(bounce["type"] == "error")
                #expect(inbox.count("c.example.test") == 2)

                // Bind d at runtime: its stanzas start arriving.
                let bound = try await connection.bind("d.example.test", handler: inbox.handler())
                #expect(bound == "d.example.test")
                try server.inject(
                    Message(
                        type: .chat, from: try JID("alice@example.test/home"), to: try JID("d.example.test"), id: "to-d",
                        body: "new"
                    ).element)
                let fromD = try await users.element(id: "to-d")
                #expect(Message(fromD)?.body == "d.example.test got new")

                // A hostname the identity may not bind is refused with not-allowed.
                let refused = await #expect(throws: ComponentError.self) {
                    try await connection.bind("x.example.test", handler: inbox.handler())
                }
                #expect(refused?.kind == .bindRefused(.notAllowed))

                // Sending from an unbound hostname fails here, not as a stream error at the server.
                let unbound = await #expect(throws: ComponentError.self) {
                    try await connection.send(
                        .message(Message(from: try JID("c.example.test"), to: try JID("alice@example.test"), body: "x")))
                }
                #expect(unbound?.kind == .unboundSender)

                // Built-ins: disco#info and ping on a bound hostname; service-unavailable otherwise.
                try server.inject(
                    IQ(
                        type: .get, from: try JID("alice@example.test/home"), to: try JID("a.example.test"), id: "disco",
                        payload: Element("query", namespace: Namespace.discoInfo)
                    ).element)
                let disco = try await users.element(id: "disco")
                let features = IQ(disco)?.payload?.children("feature", namespace: Namespace.discoInfo).compactMap { $0["var"] }
                #expect(features?.contains("urn:example:inbox") == true)
                #expect(features?.contains(Namespace.ping) == true)
                try server.inject(
                    IQ(
                        type: .set, from: try JID("alice@example.test/home"), to: try JID("a.example.test"), id: "unknown",
                        payload: Element("query", namespace: "urn:example:unknown")
                    ).element)
                let unknown = try await users.element(id: "unknown")
                #expect(IQ(unknown)?.error?.condition == .serviceUnavailable)
                return ()
            }
        }
    }

    @Test func secondStreamGetsConflictAndWrongPasswordIsNotAuthorized() async throws {
        try await withServers { servers in
            let server = try await servers.start(SDKFixture.shared.serverConfiguration())
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
        }
    }

    /// The DER bytes of the first certificate in a PEM text.
    private static func der(_ pem: String) throws -> [UInt8] {
        let body =
            pem.components(separatedBy: "-----BEGIN CERTIFICATE-----").dropFirst().first?
            .components(separatedBy: "-----END CERTIFICATE-----").first ?? ""
        let base64 = body.filter { !$0.isWhitespace }
        return try #require(Data(base64Encoded: base64).map { [UInt8]($0) }, "not a PEM certificate")
    }

    /// SASL EXTERNAL end to end through ComponentConnection: a real TLS client certificate,
    /// verified by the server's TLS layer against the CA it trusts for clients, authenticates
    /// the component identity (the password is wrong on purpose); a certificate the server
    /// does not know gets no EXTERNAL offer.
    @Test func externalWithARealClientCertificate() async throws {
        try await withServers { servers in
            let directory = SDKFixture.shared.directory
            let clientCA = try DevelopmentCertificateAuthority()
            let known = try clientCA.issue(dnsNames: [SDKFixture.identity])
            let knownFiles = try known.write(toDirectory: directory, name: "client-known-\(UUID().uuidString)")
            let unknownFiles = try clientCA.issue(dnsNames: [SDKFixture.identity])
                .write(toDirectory: directory, name: "client-unknown-\(UUID().uuidString)")
            var serverConfiguration = SDKFixture.shared.serverConfiguration()
            serverConfiguration.tls?.clientCertificateRequest = .optional(trustRoots: .caFile(knownFiles.caCertificateFile))
            serverConfiguration.sasl.externalIdentities = [try Self.der(known.certificatePEM): SDKFixture.identity]
            let server = try await servers.start(serverConfiguration)
            let users = UserSink()
            users.follow(server)

            var configuration = SDKFixture.shared.clientConfiguration(port: server.port)
            configuration.clientCertificateFile = knownFiles.certificateChainFile
            configuration.clientKeyFile = knownFiles.privateKeyFile
            configuration.password = Secret("not-the-password")
            configuration.saslMechanisms = ["EXTERNAL"]
            let connection = ComponentConnection(configuration: configuration, logger: testLogger("sdk-external"))
            let events = EventRecorder(connection)
            try connection.register("a.example.test", handler: Inbox().handler())
            try await withRunningConnection(connection) { connection in
                try await events.waitBound(["a.example.test"])
                #expect(connection.status.connection?.saslMechanism == "EXTERNAL")
                #expect(server.boundHostnames == ["a.example.test"])
                try server.inject(
                    Message(
                        type: .chat, from: try JID("alice@example.test/home"), to: try JID("a.example.test"), id: "ext",
                        body: "hi"
                    ).element)
                let reply = try await users.element(id: "ext")
                #expect(Message(reply)?.body == "a.example.test got hi")
                return ()
            }

            // Same CA, another certificate: TLS accepts it, SASL has no identity for it.
            var unknown = SDKFixture.shared.clientConfiguration(port: server.port)
            unknown.clientCertificateFile = unknownFiles.certificateChainFile
            unknown.clientKeyFile = unknownFiles.privateKeyFile
            unknown.saslMechanisms = ["EXTERNAL"]
            unknown.reconnect.maxAttempts = 1
            let refused = ComponentConnection(configuration: unknown, logger: testLogger("sdk-external-unknown"))
            let error = await #expect(throws: NegotiationError.self) { try await refused.run() }
            // The SDK says what was offered: everything but EXTERNAL.
            let description = error?.description ?? ""
            #expect(description.contains("no-acceptable-mechanism"), "\(description)")
            let offered =
                description.components(separatedBy: "offered: ").dropFirst().first?.components(separatedBy: ";").first ?? ""
            #expect(offered.contains("SCRAM-SHA-256") && !offered.contains("EXTERNAL"), "\(description)")
        }
    }

    @Test func untrustedCertificateIsRefusedBeforeAuthentication() async throws {
        try await withServers { servers in
            let server = try await servers.start(SDKFixture.shared.serverConfiguration())
            var configuration = SDKFixture.shared.clientConfiguration(port: server.port)
            configuration.trustRoots = .system
            configuration.reconnect.maxAttempts = 1
            let connection = ComponentConnection(configuration: configuration, logger: testLogger("sdk-untrusted"))
            let error = await #expect(throws: (any Error).self) { try await connection.run() }
            #expect(String(describing: error).contains("verif"))
        }
    }
}
