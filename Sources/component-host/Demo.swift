import ComponentHost
import ComponentKit
import Foundation
import Logging
import ReferenceServer
import ServiceLifecycle
import StockPlugins
import XMPPCore
import XMPPSASL
import XMPPTLS

/// The `demo` scenario: each step checks what really crossed the wire.
struct Demo {
    struct Report {
        var total = 0
        var failed = 0
        var allPassed: Bool { self.failed == 0 && self.total > 0 }
    }

    static let domain = "example.test"
    static let identity = "component.example.test"
    static let alice = "alice@example.test/laptop"

    let keepDirectory: Bool
    let write: @Sendable (String) -> Void

    func run() async throws -> Report {
        var report = Report()
        let directory = try Self.makeDirectory()
        defer {
            if self.keepDirectory {
                self.write("\nkept \(directory)")
            } else {
                try? FileManager.default.removeItem(atPath: directory)
            }
        }

        // 1. Credentials and the reference server.
        let certificate = try DevelopmentCertificateAuthority().issue(dnsNames: [Self.domain])
            .write(toDirectory: directory, name: "server")
        let password = Self.randomPassword()
        let sasldb = directory + "/sasldb"
        try SASLDatabase.setPassword(path: sasldb, user: Self.identity, realm: Self.domain, password: password)
        let passwordFile = directory + "/password"
        try Self.writeSecret(password, to: passwordFile)

        var serverConfiguration = ReferenceServerConfiguration(
            domain: Self.domain, tls: certificate.serverConfiguration, sasl: .init(sasldbPath: sasldb))
        serverConfiguration.allowedHostnames = [
            Self.identity: ["echo.example.test", "kv.example.test", "shout.example.test"]
        ]
        let server = try await ReferenceServer.start(
            configuration: serverConfiguration, logger: Logger(label: "reference-server"))
        self.write("component-host demo")
        self.write(
            "  reference server  \(Self.domain) on 127.0.0.1:\(server.port)  (XEP-0225; STARTTLS required; SASL by Cyrus from \(sasldb))"
        )

        // 2. The host's configuration file, as an operator would write it.
        let configPath = directory + "/host.toml"
        let adminSocket = directory + "/admin.sock"
        try Self.hostConfiguration(
            port: server.port, caFile: certificate.caCertificateFile, passwordFile: passwordFile, adminSocket: adminSocket
        ).write(toFile: configPath, atomically: true, encoding: .utf8)
        self.write("  host config       \(configPath)")

        let configuration = try HostConfiguration.load(path: configPath, registry: .stock)
        let logger = Logger(label: "component-host")
        let host = try ComponentHost(configuration: configuration, registry: .stock, logger: logger)
        let admin = AdminServer(path: adminSocket, host: host, logger: logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [host, admin], gracefulShutdownSignals: [], logger: logger))

        let users = UserStanzaInbox(server)
        let scenario = Task { () -> Report in
            var report = Report()
            await self.scenario(server: server, adminSocket: adminSocket, users: users, report: &report)
            return report
        }
        async let running: Void = group.run()
        report = await scenario.value
        await group.triggerGracefulShutdown()
        try? await running
        await server.stop()
        self.write("")
        self.write(
            report.allPassed
                ? "all \(report.total) steps passed"
                : "\(report.failed) of \(report.total) steps FAILED")
        return report
    }

    // MARK: The scenario

    private func scenario(
        server: ReferenceServer, adminSocket: String, users: UserStanzaInbox, report: inout Report
    ) async {
        let client = AdminClient(path: adminSocket)

        await self.step("the host connects and binds echo.example.test and kv.example.test", &report) {
            try await server.waitUntilBound("echo.example.test", timeout: .seconds(20))
            try await server.waitUntilBound("kv.example.test", timeout: .seconds(20))
            let status = try await Self.status(client)
            return
                "connected over \(status.protocolInUse ?? "?"), \(status.tlsVersion ?? "no TLS"), SASL \(status.saslMechanism ?? "?")"
        }

        await self.step("alice sends a message to echo.example.test", &report) {
            let reply = try await self.exchange(
                server, users,
                Message(
                    type: .chat, from: try JID(Self.alice), to: try JID("echo.example.test"), id: "demo-1",
                    body: "Hello, component!"))
            try Self.expect(Message(reply)?.body == "echo: Hello, component!", "the echo should carry the prefix and the body")
            return nil
        }

        await self.step("alice stores and reads a value in kv.example.test (messages)", &report) {
            let set = try await self.exchange(
                server, users,
                Message(
                    type: .chat, from: try JID(Self.alice), to: try JID("kv.example.test"), id: "demo-2", body: "set colour blue")
            )
            try Self.expect(Message(set)?.body == "ok", "set should answer ok")
            let get = try await self.exchange(
                server, users,
                Message(type: .chat, from: try JID(Self.alice), to: try JID("kv.example.test"), id: "demo-3", body: "get colour"))
            try Self.expect(Message(get)?.body == "blue", "get should answer the stored value")
            return nil
        }

        await self.step("alice reads the same value with an IQ query (urn:example:kv)", &report) {
            let query = Element(
                "query", namespace: "urn:example:kv",
                children: [Element("item", namespace: "urn:example:kv", attributes: ["key": "colour"])])
            let answer = try await self.exchange(
                server, users,
                IQ(type: .get, from: try JID(Self.alice), to: try JID("kv.example.test"), id: "demo-4", payload: query))
            try Self.expect(answer["type"] == "result", "the query should succeed")
            try Self.expect(
                IQ(answer)?.payload?.firstChild("item", namespace: "urn:example:kv")?.text == "blue", "the item should be blue")
            return nil
        }

        await self.step("alice asks echo.example.test what it is (XEP-0030 disco#info)", &report) {
            let answer = try await self.exchange(
                server, users,
                IQ(
                    type: .get, from: try JID(Self.alice), to: try JID("echo.example.test"), id: "demo-5",
                    payload: Element("query", namespace: Namespace.discoInfo)))
            let features = IQ(answer)?.payload?.children("feature", namespace: Namespace.discoInfo).compactMap { $0["var"] } ?? []
            try Self.expect(features.contains(Namespace.ping), "disco#info should list XEP-0199 ping")
            return nil
        }

        await self.step(
            "the operator binds shout.example.test at runtime: component-host bind shout.example.test --plugin echo --set prefix=SHOUT:",
            &report
        ) {
            let response = try await client.send(
                AdminRequest(command: .bind, hostname: "shout.example.test", plugin: "echo", set: ["prefix=SHOUT: "]))
            try Self.expect(response.ok, response.error ?? "the bind failed")
            try await server.waitUntilBound("shout.example.test", timeout: .seconds(10))
            return response.message
        }

        await self.step("alice sends a message to the new hostname", &report) {
            let reply = try await self.exchange(
                server, users,
                Message(
                    type: .chat, from: try JID(Self.alice), to: try JID("shout.example.test"), id: "demo-6",
                    body: "is anyone there?"))
            try Self.expect(Message(reply)?.body == "SHOUT: is anyone there?", "the new hostname should answer")
            return nil
        }

        await self.step("component-host status", &report) {
            let status = try await Self.status(client)
            try Self.expect(status.components.count == 3, "three hostnames should be listed")
            return "\n" + status.rendered.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n")
        }

        await self.step("the operator unbinds shout.example.test; the server now bounces its stanzas", &report) {
            let response = try await client.send(AdminRequest(command: .unbind, hostname: "shout.example.test"))
            try Self.expect(response.ok, response.error ?? "the unbind failed")
            try await server.waitUntilUnbound("shout.example.test", timeout: .seconds(10))
            let bounce = try await self.exchange(
                server, users,
                Message(
                    type: .chat, from: try JID(Self.alice), to: try JID("shout.example.test"), id: "demo-7", body: "still there?")
            )
            try Self.expect(bounce["type"] == "error", "the server should bounce the message")
            return nil
        }
    }

    // MARK: Helpers

    private func step(
        _ title: String, _ report: inout Report, _ body: () async throws -> String?
    ) async {
        report.total += 1
        self.write("\n[\(report.total)] \(title)")
        do {
            if let detail = try await body() {
                self.write("    \(detail)")
            }
            self.write("    ok")
        } catch {
            report.failed += 1
            self.write("    FAILED: \(error)")
        }
    }

    /// Injects a stanza as a user of the server and waits for the answer with the same id.
    private func exchange(
        _ server: ReferenceServer, _ users: UserStanzaInbox, _ stanza: some StanzaView
    ) async throws -> Element {
        self.write("    alice → \(stanza.element.serialized(streamNamespace: Namespace.client))")
        try server.inject(stanza.element)
        let id = stanza.element["id"] ?? ""
        guard let element = try await users.take(id: id, timeout: .seconds(10)) else {
            throw DemoFailure("no answer to '\(id)' within 10 s")
        }
        self.write("    alice ← \(element.serialized(streamNamespace: Namespace.client))")
        return element
    }

    private static func status(_ client: AdminClient) async throws -> HostStatus {
        let response = try await client.send(AdminRequest(command: .status))
        guard response.ok, let status = response.status else {
            throw DemoFailure(response.error ?? "no status")
        }
        return status
    }

    private static func expect(_ condition: Bool, _ message: String) throws {
        if !condition { throw DemoFailure(message) }
    }

    private static func makeDirectory() throws -> String {
        let directory = NSTemporaryDirectory() + "component-host-demo-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return directory
    }

    private static func writeSecret(_ secret: String, to path: String) throws {
        guard
            FileManager.default.createFile(
                atPath: path, contents: Data((secret + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw DemoFailure("cannot write \(path)")
        }
    }

    private static func randomPassword() -> String {
        let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        return String((0..<24).map { _ in alphabet.randomElement()! })
    }

    static func hostConfiguration(port: Int, caFile: String, passwordFile: String, adminSocket: String) -> String {
        """
        # Written by `component-host demo` for the embedded reference server.
        [server]
        host = "127.0.0.1"
        port = \(port)
        domain = "\(Self.domain)"
        protocol = "xep0225"
        tls = "starttls"
        ca_file = "\(caFile)"

        [auth]
        identity = "\(Self.identity)"
        password_file = "\(passwordFile)"

        [admin]
        socket = "\(adminSocket)"

        [[component]]
        hostname = "echo.example.test"
        plugin = "echo"
        [component.options]
        prefix = "echo: "

        [[component]]
        hostname = "kv.example.test"
        plugin = "kv"

        """
    }
}

struct DemoFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
