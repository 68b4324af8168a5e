import ComponentKit
import EchoComponent
import Foundation
import Logging
import Testing
import XMPPCore
import XMPPStream
import XMPPTLS
import XMPPTestSupport

/// The SDK over XEP-0225 against a real Prosody 0.12 (Debian) running the project's own
/// `mod_component_xep0225` (issue 9): STARTTLS with a generated certificate, SCRAM-SHA-256 as
/// a domain identity, several hostnames on one stream, and a real c2s client at the other end.
///
/// The module's wire-level behaviour (features before/after TLS and SASL, every bind error)
/// is checked by `ServerModules/prosody/dev/wire_test.py`; these tests check the SDK against it.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProsodyXEP0225Tests {
    static let identity = "comp.localhost"
    static let secret = "xep0225-secret-for-tests"
    static let allowed = ["a.localhost", "b.localhost", "c.localhost"]

    /// `ServerModules/prosody`, found from this file's path.
    static let sourceModuleDirectory: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ServerModules/prosody").path
    }()

    /// A world-readable copy of the module (made once per test process, removed at exit):
    /// Prosody runs as the `prosody` user, who may not be able to read the checkout.
    static let moduleDirectory: Result<String, IntegrationTestError> = {
        let source = Self.sourceModuleDirectory + "/mod_component_xep0225.lua"
        do {
            let directory = NSTemporaryDirectory() + "xmpp-test-prosody-module-" + UUID().uuidString
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
            atexit {
                if case .success(let path) = ProsodyXEP0225Tests.moduleDirectory {
                    try? FileManager.default.removeItem(atPath: path)
                }
            }
            try FileManager.default.copyItem(atPath: source, toPath: directory + "/mod_component_xep0225.lua")
            _ = chmod(directory + "/mod_component_xep0225.lua", 0o644)
            return .success(directory)
        } catch {
            return .failure(IntegrationTestError("cannot copy the Prosody module \(source): \(error)"))
        }
    }()

    static func startProsody() async throws -> ProsodyFixture {
        let moduleDirectory = try Self.moduleDirectory.get()
        let hostnames = Self.allowed.map { "\"\($0)\"" }.joined(separator: ", ")
        var components = [
            ProsodyFixture.Component(
                hostname: Self.identity, secret: Self.secret, module: "component_xep0225",
                extraLines: ["component_xep0225_hostnames = { \(hostnames) }"])
        ]
        // Every bindable hostname is a component host of the module; x.localhost is declared
        // but not in the identity's list: not-allowed.
        for hostname in Self.allowed + ["x.localhost"] {
            components.append(.init(hostname: hostname, secret: nil, module: "component_xep0225"))
        }
        return try await ProsodyFixture.start(
            .init(
                domain: "localhost",
                components: components,
                accounts: [.init(username: "alice", password: "alice-pass")],
                pluginPaths: [moduleDirectory],
                xep0225Port: true))
    }

    static func configuration(_ prosody: ProsodyFixture, mode: ComponentConfiguration.ProtocolMode = .xep0225) throws
        -> ComponentConfiguration
    {
        guard let port = prosody.xep0225Port else { throw IntegrationTestError("no XEP-0225 port allocated") }
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: port, serverDomain: "localhost", identity: Self.identity, password: Secret(Self.secret))
        configuration.protocolMode = mode
        configuration.tlsMode = .startTLS
        configuration.trustRoots = .caFile(prosody.caCertificatePath)
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        configuration.requestTimeout = .seconds(10)
        return configuration
    }

    static func alice(_ prosody: ProsodyFixture) async throws -> C2SClient {
        try await C2SClient.connect(
            .init(
                port: prosody.c2sPort, domain: "localhost", username: "alice", password: "alice-pass",
                caFile: prosody.caCertificatePath))
    }

    /// Whether the element is the module's bounce for an unbound hostname:
    /// `wait/remote-server-timeout`, from that hostname.
    static func isBounce(_ element: Element, from hostname: String) -> Bool {
        guard element["type"] == "error", element["from"] == hostname, let message = Message(element) else { return false }
        return message.error?.condition == .remoteServerTimeout
    }

    private func fellBack(_ events: EventRecorder) -> Bool {
        events.all.contains { $0.kind == .fellBackToLegacy }
    }

    @Test func twoHostnamesOneStreamRuntimeBindAndUnbind() async throws {
        let prosody = try await Self.startProsody()
        defer { prosody.stop() }
        let connection = ComponentConnection(configuration: try Self.configuration(prosody), logger: testLogger("prosody-0225"))
        let events = EventRecorder(connection)
        let inbox = Inbox()
        try connection.register("a.localhost", handler: inbox.handler())
        try connection.register("b.localhost", handler: inbox.handler())

        try await withRunningConnection(connection) { connection in
            try await events.waitBound(["a.localhost", "b.localhost"])
            let status = connection.status
            #expect(status.connection?.protocolMode == .xep0225)
            #expect(status.connection?.tlsVersion != nil)
            // Prosody 0.12 has no usable channel binding under TLS 1.3: no -PLUS.
            #expect(status.connection?.saslMechanism == "SCRAM-SHA-256")
            #expect(status.hostnames.map(\.hostname) == ["a.localhost", "b.localhost"])
            #expect(status.hostnames.allSatisfy { $0.state == .bound })
            #expect(!self.fellBack(events))
            // Both hostnames on one stream: one connected event.
            #expect(events.all.filter { $0.kind == .connected }.count == 1)

            let alice = try await Self.alice(prosody)
            for hostname in ["a.localhost", "b.localhost"] {
                try await alice.send(
                    Message(type: .chat, to: try JID("bot@\(hostname)"), id: "m-\(hostname)", body: "hi").element)
                let reply = try await alice.next { $0.name.localName == "message" && $0["id"] == "m-\(hostname)" }
                #expect(Message(reply)?.body == "\(hostname) got hi")
                #expect(reply["from"] == "bot@\(hostname)")
                #expect(reply["to"] == alice.jid.description)

                let answer = try await alice.request(
                    IQ(
                        type: .get, to: try JID(hostname), id: "q-\(hostname)",
                        payload: Element("query", namespace: "urn:example:inbox")))
                #expect(answer.type == .result)
                #expect(answer.payload?.text == hostname)

                let disco = try await alice.request(
                    IQ(
                        type: .get, to: try JID(hostname), id: "d-\(hostname)",
                        payload: Element("query", namespace: Namespace.discoInfo)))
                let features = disco.payload?.children("feature", namespace: Namespace.discoInfo).compactMap { $0["var"] } ?? []
                #expect(features.contains("urn:example:inbox"))
                #expect(features.contains(Namespace.ping))
            }
            // Each handler saw its own hostname's stanzas, in order (disco#info included).
            #expect(inbox.ids("a.localhost") == ["m-a.localhost", "q-a.localhost", "d-a.localhost"])
            #expect(inbox.ids("b.localhost") == ["m-b.localhost", "q-b.localhost", "d-b.localhost"])

            // A third allowed hostname, bound at runtime on the same stream, starts receiving.
            let bound = try await connection.bind("c.localhost", handler: inbox.handler())
            #expect(bound == "c.localhost")
            try await alice.send(Message(type: .chat, to: try JID("c.localhost"), id: "m-c", body: "new").element)
            let fromC = try await alice.next { $0.name.localName == "message" && $0["id"] == "m-c" }
            #expect(Message(fromC)?.body == "c.localhost got new")

            // A hostname declared on the server but not in the identity's list: not-allowed.
            let refused = await #expect(throws: ComponentError.self) {
                try await connection.bind("x.localhost", handler: inbox.handler())
            }
            #expect(refused?.kind == .bindRefused(.notAllowed))

            // Unbinding b stops delivery: Prosody bounces its stanzas (wait/remote-server-timeout).
            let seenByB = inbox.count("b.localhost")
            try await connection.unbind("b.localhost")
            try await alice.send(Message(type: .chat, to: try JID("b.localhost"), id: "after-unbind", body: "x").element)
            let bounce = try await alice.next { $0["id"] == "after-unbind" }
            #expect(Self.isBounce(bounce, from: "b.localhost"))
            #expect(inbox.count("b.localhost") == seenByB)
            // The other hostnames on the stream are unaffected.
            try await alice.send(Message(type: .chat, to: try JID("a.localhost"), id: "still-a", body: "y").element)
            let stillA = try await alice.next { $0.name.localName == "message" && $0["id"] == "still-a" }
            #expect(Message(stillA)?.body == "a.localhost got y")
            await alice.close()
        }
    }

    @Test func killedComponentIsBouncedAndAReconnectRebinds() async throws {
        let prosody = try await Self.startProsody()
        defer { prosody.stop() }
        let alice = try await Self.alice(prosody)

        // The component runs in its own process (component-host with the echo plugin), so
        // that it can really be killed: SIGKILL, no unbind, no </stream:stream>.
        let host = try await ComponentHostProcess.start(
            configuration: try Self.configuration(prosody), hostnames: ["a.localhost"], prefix: "echo: ")
        defer { host.stop() }
        try await host.waitUntilServing("a.localhost", via: alice)

        host.kill()
        let killed = ContinuousClock.now
        // Probe until the server bounces: it must notice the dead stream and drop its route
        // (bounded generously; the latency is reported, not judged: a loaded machine is slow).
        var probe = 0
        var bounced: Duration?
        while bounced == nil, ContinuousClock.now - killed < .seconds(30) {
            probe += 1
            try await alice.send(Message(type: .chat, to: try JID("a.localhost"), id: "probe-\(probe)", body: "anyone?").element)
            if let reply = try? await alice.next(timeout: .milliseconds(100), where: { $0["id"]?.hasPrefix("probe-") == true }) {
                #expect(Self.isBounce(reply, from: "a.localhost"), "not a bounce: \(reply)")
                bounced = ContinuousClock.now - killed
            }
        }
        let latency = try #require(bounced, "no bounce within 30 s of killing the component")
        print("PROSODY-XEP0225 bounce \(latency) after the kill (\(probe) probes)")

        // A new component connection binds the hostname again and is served.
        let connection = ComponentConnection(
            configuration: try Self.configuration(prosody), logger: testLogger("prosody-0225-again"))
        let events = EventRecorder(connection)
        try connection.register("a.localhost", handler: EchoComponent(prefix: "again: "))
        try connection.register("b.localhost", handler: EchoComponent(prefix: "b: "))
        try await withRunningConnection(connection) { connection in
            try await events.waitBound(["a.localhost", "b.localhost"])
            try await alice.send(Message(type: .chat, to: try JID("a.localhost"), id: "rebound", body: "hello").element)
            let echo = try await alice.next { $0.name.localName == "message" && $0["id"] == "rebound" }
            #expect(Message(echo)?.body == "again: hello")

            // A server-side disconnect (Prosody restarted: system-shutdown): the same
            // connection reconnects and binds both hostnames again.
            events.reset()
            try await prosody.restart()
            try await events.wait("unbound after the restart") { $0.kind == .unbound }
            try await events.waitBound(["a.localhost", "b.localhost"], timeout: .seconds(30))
            let alice = try await Self.alice(prosody)
            for (hostname, prefix) in [("a.localhost", "again: "), ("b.localhost", "b: ")] {
                try await alice.send(Message(type: .chat, to: try JID(hostname), id: "after-\(hostname)", body: "back").element)
                let echo = try await alice.next { $0.name.localName == "message" && $0["id"] == "after-\(hostname)" }
                #expect(Message(echo)?.body == "\(prefix)back")
            }
            await alice.close()
        }
        await alice.close()
    }

    @Test func autoPicksXEP0225AndASecondStreamGetsConflict() async throws {
        let prosody = try await Self.startProsody()
        defer { prosody.stop() }
        let first = ComponentConnection(
            configuration: try Self.configuration(prosody, mode: .auto), logger: testLogger("prosody-0225-auto"))
        let events = EventRecorder(first)
        try first.register("a.localhost", handler: EchoComponent())
        try await withRunningConnection(first) { first in
            try await events.waitBound(["a.localhost"])
            #expect(first.status.connection?.protocolMode == .xep0225)
            #expect(first.status.connection?.saslMechanism == "SCRAM-SHA-256")
            #expect(!self.fellBack(events))

            let second = ComponentConnection(
                configuration: try Self.configuration(prosody), logger: testLogger("prosody-0225-second"))
            try await withRunningConnection(second) { second in
                let error = await #expect(throws: ComponentError.self) {
                    try await second.bind("a.localhost", handler: EchoComponent())
                }
                #expect(error?.kind == .bindRefused(.conflict))
                // The second stream itself works: another hostname binds there.
                let other = try await second.bind("b.localhost", handler: EchoComponent())
                #expect(other == "b.localhost")
                return ()
            }
            return ()
        }
    }

    @Test func wrongSecretIsNotAuthorized() async throws {
        let prosody = try await Self.startProsody()
        defer { prosody.stop() }
        // In auto mode too: STARTTLS was offered, so a SASL failure is never a reason to fall back.
        for mode in [ComponentConfiguration.ProtocolMode.xep0225, .auto] {
            var configuration = try Self.configuration(prosody, mode: mode)
            configuration.password = Secret("not-the-secret")
            configuration.reconnect.maxAttempts = 1
            let connection = ComponentConnection(configuration: configuration, logger: testLogger("prosody-0225-wrong"))
            let events = EventRecorder(connection)
            let error = await #expect(throws: NegotiationError.self) { try await connection.run() }
            #expect(error?.kind == .authenticationFailed, "\(mode)")
            #expect(error?.description.contains("not-authorized") == true, "\(mode)")
            #expect(error?.description.contains("not-the-secret") == false)
            #expect(!self.fellBack(events), "\(mode)")
        }
    }
}

/// `component-host run` in its own process, configured for one server and some hostnames
/// served by the echo plugin.
final class ComponentHostProcess: Sendable {
    let process: TestProcess
    let directory: TemporaryDirectory

    private init(process: TestProcess, directory: TemporaryDirectory) {
        self.process = process
        self.directory = directory
    }

    /// The `component-host` binary next to the test bundle (built by `swift build`).
    static var binaryPath: String? {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0])
        let candidates = [
            bundle.deletingLastPathComponent().appendingPathComponent("component-host").path,
            bundle.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("component-host").path,
            FileManager.default.currentDirectoryPath + "/.build/debug/component-host",
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func start(
        configuration: ComponentConfiguration, hostnames: [String], prefix: String, extraServerLines: [String] = []
    ) async throws -> ComponentHostProcess {
        guard let binary = Self.binaryPath else {
            throw IntegrationTestError("component-host is not built next to the tests (run `swift build --build-tests`)")
        }
        let directory = try TemporaryDirectory(prefix: "xmpp-test-component-host")
        try configuration.password.value.write(toFile: directory.path("password"), atomically: true, encoding: .utf8)
        _ = chmod(directory.path("password"), 0o600)  // the host warns about secret files others can read
        var caFile = ""
        if case .caFile(let path) = configuration.trustRoots {
            caFile = "ca_file = \"\(path)\""
        }
        var toml = """
            [server]
            host = "\(configuration.host)"
            port = \(configuration.port)
            domain = "\(configuration.serverDomain)"
            protocol = "\(configuration.protocolMode.rawValue)"
            tls = "\(configuration.tlsMode.rawValue)"
            \(caFile)
            \(extraServerLines.joined(separator: "\n"))

            [auth]
            identity = "\(configuration.identity)"
            password_file = "\(directory.path("password"))"

            [admin]
            socket = "\(directory.path("run/admin.sock"))"   # the host makes run/ 0700 (the directory is 0755)

            [logging]
            level = "info"

            """
        for hostname in hostnames {
            toml += """

                [[component]]
                hostname = "\(hostname)"
                plugin = "echo"
                [component.options]
                prefix = "\(prefix)"

                """
        }
        try toml.write(toFile: directory.path("host.toml"), atomically: true, encoding: .utf8)
        let process = TestProcess(
            executable: binary, arguments: ["run", "--config", directory.path("host.toml")],
            outputPath: directory.path("output.log"))
        try process.start()
        return ComponentHostProcess(process: process, directory: directory)
    }

    /// Waits until a message to `hostname` is echoed (the hostname is bound and served).
    func waitUntilServing(_ hostname: String, via client: C2SClient, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        var attempt = 0
        while ContinuousClock.now < deadline {
            if let status = self.process.terminationStatus {
                throw IntegrationTestError("component-host exited with \(status):\n\(self.process.output)")
            }
            attempt += 1
            let id = "ready-\(attempt)"
            try await client.send(Message(type: .chat, to: try JID(hostname), id: id, body: "ready?").element)
            if let reply = try? await client.next(timeout: .milliseconds(500), where: { $0["id"] == id }),
                reply["type"] != "error"
            {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw IntegrationTestError("component-host did not serve \(hostname) within \(timeout):\n\(self.process.output)")
    }

    /// SIGKILL, at once.
    func kill() { self.process.kill() }

    /// SIGSTOP: the process stops reading and handling (a hung process), its socket stays open.
    func suspend() { _ = Glibc.kill(self.process.pid, SIGSTOP) }

    /// Stops it (if still running) and removes its directory.
    func stop() {
        self.process.terminate(grace: .seconds(3))
        self.directory.remove()
    }
}
