import ComponentKit
import Foundation
import Logging
import ReferenceServer
import ServiceLifecycle
import Testing
import XMPPCore
import XMPPSASL
import XMPPTLS

@testable import ComponentHost

/// The host against the reference server: reload (the code SIGHUP runs, and a real SIGHUP
/// to the real binary), a broken reload, a failing plugin isolated from the others.
@Suite("Host against the reference server", .serialized, .timeLimit(.minutes(2)))
struct LiveHostTests {
    static let domain = "example.test"
    static let identity = "component.example.test"

    /// A running reference server plus the files a host needs to reach it.
    final class Setup: Sendable {
        let directory: TemporaryDirectory
        let server: ReferenceServer
        let caFile: String
        let users: UserStanzaInbox

        init() async throws {
            self.directory = try TemporaryDirectory()
            let files = try DevelopmentCertificateAuthority().issue(dnsNames: [LiveHostTests.domain])
                .write(toDirectory: self.directory.path, name: "server")
            let sasldb = self.directory.path + "/sasldb"
            try SASLDatabase.setPassword(
                path: sasldb, user: LiveHostTests.identity, realm: LiveHostTests.domain, password: Fixtures.password)
            var configuration = ReferenceServerConfiguration(
                domain: LiveHostTests.domain, tls: files.serverConfiguration,
                sasl: .init(sasldbPath: sasldb, scramIterationCount: nil))
            configuration.allowedHostnames = [LiveHostTests.identity: ["*.example.test"]]
            self.server = try await ReferenceServer.start(configuration: configuration)
            self.caFile = files.caCertificateFile
            self.users = UserStanzaInbox(self.server)
        }

        func configuration(components: [(String, String)]) -> String {
            var text = """
                [server]
                host = "127.0.0.1"
                port = \(self.server.port)
                domain = "\(LiveHostTests.domain)"
                protocol = "xep0225"
                tls = "starttls"
                ca_file = "\(self.caFile)"

                [auth]
                identity = "\(LiveHostTests.identity)"
                password_file = "password"

                [admin]
                socket = "\(self.directory.path)/admin.sock"

                """
            for (hostname, plugin) in components {
                text += "\n[[component]]\nhostname = \"\(hostname)\"\nplugin = \"\(plugin)\"\n"
            }
            return text
        }

        /// Sends a message as alice and returns the answer with the same id.
        func ask(_ hostname: String, _ body: String, id: String) async throws -> Element {
            try self.server.inject(
                Message(type: .chat, from: try JID("alice@example.test/x"), to: try JID(hostname), id: id, body: body).element)
            guard let answer = try await self.users.take(id: id, timeout: .seconds(10)) else {
                throw HostTestFailure("no answer to \(id)")
            }
            return answer
        }

        func stop() async {
            await self.server.stop()
            self.directory.cleanup()
        }
    }

    @Test func reloadBindsAddedUnbindsRemovedAndRejectsABrokenFile() async throws {
        let setup = try await Setup()
        let path = try Fixtures.write(
            in: setup.directory, setup.configuration(components: [("echo.example.test", "echo"), ("kv.example.test", "kv")]))
        let configuration = try HostConfiguration.load(path: path, environment: [:])
        let host = try ComponentHost(configuration: configuration, logger: Logger(label: "live-host"))
        let running = Task { try await host.run() }

        try await setup.server.waitUntilBound("echo.example.test")
        try await setup.server.waitUntilBound("kv.example.test")
        #expect(Message(try await setup.ask("echo.example.test", "one", id: "r1"))?.body == "one")

        // The file changes: kv removed, shout added. reload() is what SIGHUP runs.
        _ = try setup.directory.write(
            "host.toml", setup.configuration(components: [("echo.example.test", "echo"), ("shout.example.test", "echo")]))
        let report = try await host.reload()
        #expect(report.failures.isEmpty)
        try await setup.server.waitUntilBound("shout.example.test")
        try await setup.server.waitUntilUnbound("kv.example.test")
        #expect(Set(setup.server.boundHostnames) == ["echo.example.test", "shout.example.test"])
        #expect(Message(try await setup.ask("shout.example.test", "two", id: "r2"))?.body == "two")
        #expect(try await setup.ask("kv.example.test", "get a", id: "r3")["type"] == "error")

        // A broken file is rejected with its error, and nothing changes.
        _ = try setup.directory.write("host.toml", "[server\nhost = 1\n")
        await #expect(throws: ConfigurationError.self) { _ = try await host.reload() }
        #expect(Set(setup.server.boundHostnames) == ["echo.example.test", "shout.example.test"])
        #expect(Message(try await setup.ask("echo.example.test", "three", id: "r4"))?.body == "three")

        host.connection.shutdown()
        try await running.value
        await setup.stop()
    }

    @Test func aFailingPluginDoesNotStopTheOthers() async throws {
        let setup = try await Setup()
        let path = try Fixtures.write(in: setup.directory, setup.configuration(components: [("echo.example.test", "echo")]))
        let registry = PluginRegistry.standard.adding([FailingPlugin.self])
        let configuration = try HostConfiguration.load(path: path, environment: [:], registry: registry)
        let host = try ComponentHost(configuration: configuration, registry: registry, logger: Logger(label: "live-failing"))
        let running = Task { try await host.run() }
        try await setup.server.waitUntilBound("echo.example.test")
        try await host.bind("boom.example.test", plugin: "boom")
        try await setup.server.waitUntilBound("boom.example.test")

        // The failing plugin's IQ gets internal-server-error; its messages get nothing.
        try setup.server.inject(
            IQ(type: .get, from: try JID("alice@example.test/x"), to: try JID("boom.example.test"), id: "b1",
               payload: Element("query", namespace: "urn:example:boom")).element)
        let answer = try #require(try await setup.users.take(id: "b1", timeout: .seconds(10)))
        #expect(IQ(answer)?.error?.condition == .internalServerError)
        for index in 0..<5 {
            try setup.server.inject(
                Message(type: .chat, from: try JID("alice@example.test/x"), to: try JID("boom.example.test"), id: "bm\(index)", body: "x").element)
        }
        // The other plugin, and the failing one's next stanzas, carry on.
        #expect(Message(try await setup.ask("echo.example.test", "still here", id: "e1"))?.body == "still here")
        try setup.server.inject(
            IQ(type: .get, from: try JID("alice@example.test/x"), to: try JID("boom.example.test"), id: "b2",
               payload: Element("query", namespace: "urn:example:boom")).element)
        #expect(IQ(try #require(try await setup.users.take(id: "b2", timeout: .seconds(10))))?.error?.condition == .internalServerError)

        host.connection.shutdown()
        try await running.value
        await setup.stop()
    }

    /// The real binary, a real SIGHUP by PID: the reload is observed at the server.
    @Test func realBinaryReloadsOnSIGHUPAndStopsOnSIGTERM() async throws {
        let binary = try #require(CommandLineTests.binaryPath, "component-host not found next to the test bundle")
        let setup = try await Setup()
        let path = try Fixtures.write(in: setup.directory, setup.configuration(components: [("echo.example.test", "echo")]))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run", "--config", path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        defer {
            if process.isRunning { kill(pid, SIGKILL) }
        }
        try await setup.server.waitUntilBound("echo.example.test", timeout: .seconds(30))
        #expect(Message(try await setup.ask("echo.example.test", "hi", id: "s1"))?.body == "hi")

        _ = try setup.directory.write(
            "host.toml", setup.configuration(components: [("echo.example.test", "echo"), ("kv.example.test", "kv")]))
        kill(pid, SIGHUP)
        try await setup.server.waitUntilBound("kv.example.test", timeout: .seconds(20))
        #expect(Message(try await setup.ask("kv.example.test", "set a 1", id: "s2"))?.body == "ok")

        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(!process.isRunning, "component-host did not stop within 20 s of SIGTERM")
        if !process.isRunning {
            #expect(process.terminationStatus == 0)
        }
        try await setup.server.waitUntilUnbound("echo.example.test", timeout: .seconds(10))
        await setup.stop()
    }
}

/// A plugin whose handler throws on every stanza.
enum FailingPlugin: ComponentPlugin {
    static let name = "boom"
    static let description = "Throws on every stanza."
    static func make(options: PluginOptions, context: PluginContext) throws -> any ComponentHandler {
        ClosureHandler { _, _ in
            struct Boom: Error {}
            throw Boom()
        }
    }
}

struct HostTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
