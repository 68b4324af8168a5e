import ComponentKit
import Foundation
import Logging
import ReferenceServer
import ServiceLifecycle
import Synchronization
import Testing
import XMPPCore
import XMPPSASL
import XMPPTLS
import XMPPTestSupport

@testable import ComponentHost
@testable import StockPlugins

/// The host against the reference server: reload (the code SIGHUP runs, and a real SIGHUP
/// to the real binary), a broken reload, a failing plugin isolated from the others.
@Suite("Host against the reference server", .serialized, .timeLimit(.minutes(2)))
struct LiveHostTests {
    /// Sends a message as alice through `server`'s simulated users and returns the answer
    /// with the same id, waiting at most `timeout`.
    static func ask(
        _ server: ReferenceServer, _ users: UserStanzaInbox, _ hostname: String, _ body: String, id: String,
        timeout: Duration
    ) async throws -> Element {
        try server.inject(
            Message(type: .chat, from: try JID("alice@example.test/x"), to: try JID(hostname), id: id, body: body).element)
        guard let answer = try await users.take(id: id, timeout: timeout) else {
            throw HostTestFailure("no answer to \(id)")
        }
        return answer
    }

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
        func ask(_ hostname: String, _ body: String, id: String, timeout: Duration = .seconds(10)) async throws -> Element {
            try await LiveHostTests.ask(self.server, self.users, hostname, body, id: id, timeout: timeout)
        }

        func stop() async {
            await self.server.stop()
            self.directory.cleanup()
        }

        /// Runs `body` with a fresh setup and stops it on every path (a failed `#require` too).
        static func with<Result>(_ body: (Setup) async throws -> Result) async throws -> Result {
            let setup = try await Setup()
            return try await withCleanup {
                try await body(setup)
            } cleanup: {
                await setup.stop()
            }
        }
    }

    /// Runs `host` while `body` runs, then shuts it down and waits for `run()` to end, on
    /// every path.
    static func whileRunning<Result>(_ host: ComponentHost, _ body: () async throws -> Result) async throws -> Result {
        let running = Task { try await host.run() }
        let result = try await withCleanup(body) {
            host.connection.shutdown()
            _ = try? await running.value
        }
        try await running.value
        return result
    }

    @Test func reloadBindsAddedUnbindsRemovedAndRejectsABrokenFile() async throws {
        try await Setup.with { setup in try await self.reload(setup) }
    }

    private func reload(_ setup: Setup) async throws {
        let path = try Fixtures.write(
            in: setup.directory, setup.configuration(components: [("echo.example.test", "echo"), ("kv.example.test", "kv")]))
        let configuration = try HostConfiguration.load(path: path, environment: [:], registry: .stock)
        let host = try ComponentHost(configuration: configuration, registry: .stock, logger: Logger(label: "live-host"))
        try await Self.whileRunning(host) {
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
        }
    }

    @Test func aFailingPluginDoesNotStopTheOthers() async throws {
        try await Setup.with { setup in try await self.failingPlugin(setup) }
    }

    private func failingPlugin(_ setup: Setup) async throws {
        let path = try Fixtures.write(in: setup.directory, setup.configuration(components: [("echo.example.test", "echo")]))
        let registry = PluginRegistry.stock.adding([FailingPlugin.self])
        let configuration = try HostConfiguration.load(path: path, environment: [:], registry: registry)
        let host = try ComponentHost(configuration: configuration, registry: registry, logger: Logger(label: "live-failing"))
        try await Self.whileRunning(host) {
            try await setup.server.waitUntilBound("echo.example.test")
            try await host.bind("boom.example.test", plugin: "boom")
            try await setup.server.waitUntilBound("boom.example.test")

            // The failing plugin's IQ gets internal-server-error; its messages get nothing.
            try setup.server.inject(
                IQ(
                    type: .get, from: try JID("alice@example.test/x"), to: try JID("boom.example.test"), id: "b1",
                    payload: Element("query", namespace: "urn:example:boom")
                ).element)
            let answer = try #require(try await setup.users.take(id: "b1", timeout: .seconds(10)))
            #expect(IQ(answer)?.error?.condition == .internalServerError)
            for index in 0..<5 {
                try setup.server.inject(
                    Message(
                        type: .chat, from: try JID("alice@example.test/x"), to: try JID("boom.example.test"), id: "bm\(index)",
                        body: "x"
                    ).element)
            }
            // The other plugin, and the failing one's next stanzas, carry on.
            #expect(Message(try await setup.ask("echo.example.test", "still here", id: "e1"))?.body == "still here")
            try setup.server.inject(
                IQ(
                    type: .get, from: try JID("alice@example.test/x"), to: try JID("boom.example.test"), id: "b2",
                    payload: Element("query", namespace: "urn:example:boom")
                ).element)
            #expect(
                IQ(try #require(try await setup.users.take(id: "b2", timeout: .seconds(10))))?.error?.condition
                    == .internalServerError)

        }
    }

    /// Starts the real binary on `configuration` (a ``TestProcess``: stopped by PID, reaped by
    /// the registry if the runner dies).
    private static func startBinary(_ setup: Setup, configuration path: String) throws -> TestProcess {
        let binary = try #require(CommandLineTests.binaryPath, "component-host not found next to the test bundle")
        let process = TestProcess(
            executable: binary, arguments: ["run", "--config", path], outputPath: setup.directory.path + "/host.out")
        try process.start()
        return process
    }

    /// The real binary, a real SIGHUP by PID: the reload is observed at the server.
    @Test func realBinaryReloadsOnSIGHUPAndStopsOnSIGTERM() async throws {
        try await Setup.with { setup in
            let path = try Fixtures.write(in: setup.directory, setup.configuration(components: [("echo.example.test", "echo")]))
            let process = try Self.startBinary(setup, configuration: path)
            try await withCleanup {
                try await setup.server.waitUntilBound("echo.example.test", timeout: .seconds(30))
                #expect(Message(try await setup.ask("echo.example.test", "hi", id: "s1"))?.body == "hi")

                _ = try setup.directory.write(
                    "host.toml", setup.configuration(components: [("echo.example.test", "echo"), ("kv.example.test", "kv")]))
                kill(process.pid, SIGHUP)
                try await setup.server.waitUntilBound("kv.example.test", timeout: .seconds(20))
                let set = try await setup.ask("kv.example.test", "set a 1", id: "s2")
                #expect(Message(set)?.body == "ok", "the first stanza to a hostname bound by the reload: \(set)")

                kill(process.pid, SIGTERM)
                let status = try await process.waitForExit(timeout: .seconds(20))
                #expect(status == 0, "component-host exited \(status) after SIGTERM:\n\(process.output)")
                try await setup.server.waitUntilUnbound("echo.example.test", timeout: .seconds(10))
            } cleanup: {
                process.kill()
            }
        }
    }

    /// SIGTERM stops the host while it is stuck negotiating with a server that accepted the
    /// TCP connection and never answers (the connect timeout is 20 s): the attempt in
    /// progress is abandoned at once.
    @Test func realBinaryStopsOnSIGTERMWhileTheServerNeverAnswers() async throws {
        try await Setup.with { setup in
            let silent = try SilentListener()
            defer { silent.close() }
            let text = setup.configuration(components: [("echo.example.test", "echo")])
                .replacingOccurrences(of: "port = \(setup.server.port)", with: "port = \(silent.port)")
            let path = try Fixtures.write(in: setup.directory, text)
            let process = try Self.startBinary(setup, configuration: path)
            try await withCleanup {
                // The host is connected and waiting for the server's stream header.
                try await silent.waitForConnection(timeout: .seconds(20))
                let signalled = ContinuousClock.now
                kill(process.pid, SIGTERM)
                let status = try await process.waitForExit(timeout: .seconds(15))
                #expect(status == 0, "component-host exited \(status) after SIGTERM:\n\(process.output)")
                print("SIGTERM during negotiation with a silent server: the host exited after \(ContinuousClock.now - signalled)")
            } cleanup: {
                process.kill()
            }
        }
    }

    /// The real binary with `[metrics] listen`, scraped after traffic: every metric the README
    /// lists is there, with the values the traffic implies.
    @Test func realBinaryServesEveryDocumentedMetricAfterTraffic() async throws {
        try await Setup.with { setup in
            let metricsPort = try FreePort.allocate()
            let path = try Fixtures.write(
                in: setup.directory,
                setup.configuration(components: [("echo.example.test", "echo"), ("kv.example.test", "kv")])
                    + "\n[metrics]\nlisten = \"127.0.0.1:\(metricsPort)\"\n")
            let process = try Self.startBinary(setup, configuration: path)
            try await withCleanup {
                try await setup.server.waitUntilBound("echo.example.test", timeout: .seconds(30))
                try await setup.server.waitUntilBound("kv.example.test", timeout: .seconds(30))
                for index in 0..<3 {
                    #expect(Message(try await setup.ask("echo.example.test", "m\(index)", id: "me\(index)"))?.body == "m\(index)")
                }
                try setup.server.inject(
                    IQ(
                        type: .get, from: try JID("alice@example.test/x"), to: try JID("kv.example.test"), id: "mi1",
                        payload: Element("query", namespace: Namespace.discoInfo)
                    ).element)
                let iq = try #require(try await setup.users.take(id: "mi1", timeout: .seconds(10)))
                #expect(iq["type"] == "result")

                let response = try await MetricsServerTests.get(metricsPort, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
                #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(response.prefix(200))")
                let samples = PrometheusText(response)
                // README "Metrics": the connection's metrics…
                #expect(samples.value("xmpp_component_connected") == 1, "\(samples.names)")
                #expect(samples.value("xmpp_component_reconnects_total") == 0, "\(samples.names)")
                #expect(samples.value("xmpp_component_disconnects_total") == 0, "\(samples.names)")
                #expect(samples.value("xmpp_component_bind_errors_total") == 0, "\(samples.names)")
                // …and per hostname.
                let echo = ["hostname": "echo.example.test"]
                let kv = ["hostname": "kv.example.test"]
                #expect(samples.value("xmpp_component_stanzas_in_total", echo).map { $0 >= 3 } == true, "\(samples.names)")
                #expect(samples.value("xmpp_component_stanzas_out_total", echo).map { $0 >= 3 } == true, "\(samples.names)")
                #expect(samples.value("xmpp_component_stanzas_in_total", kv).map { $0 >= 1 } == true, "\(samples.names)")
                #expect(samples.value("xmpp_component_iq_handling_seconds_count", kv).map { $0 >= 1 } == true, "\(samples.names)")
                for labels in [echo, kv] {
                    #expect(samples.value("xmpp_component_queue_depth", labels) == 0, "\(labels) \(samples.names)")
                    #expect(samples.value("xmpp_component_handler_hangs_total", labels) == 0, "\(labels) \(samples.names)")
                    #expect(samples.value("xmpp_component_handler_hung", labels) == 0, "\(labels) \(samples.names)")
                }
            } cleanup: {
                process.terminate()
            }
        }
    }
}

/// The samples of a Prometheus text exposition: `name{labels} value` lines.
struct PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    let samples: [Sample]

    init(_ response: String) {
        let body = response.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        var samples: [Sample] = []
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            var labels: [String: String] = [:]
            let name: Substring
            if let open = series.firstIndex(of: "{"), let close = series.lastIndex(of: "}") {
                name = series[..<open]
                for pair in series[series.index(after: open)..<close].split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    labels[String(parts[0])] = String(parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
                }
            } else {
                name = series
            }
            samples.append(Sample(name: String(name), labels: labels, value: value))
        }
        self.samples = samples
    }

    /// Every metric name present.
    var names: [String] { Array(Set(self.samples.map(\.name))).sorted() }

    /// The value of the one sample named `name` whose labels include `labels`, or `nil`
    /// when there is none or more than one.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = self.samples.filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }
        return matching.count == 1 ? matching[0].value : nil
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

/// A TCP listener on 127.0.0.1 that accepts connections and never sends a byte.
final class SilentListener: Sendable {
    let descriptor: Int32
    let port: Int
    private let accepted = Mutex<[Int32]>([])

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw HostTestFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(descriptor, 8) == 0 else {
            Glibc.close(descriptor)
            throw HostTestFailure("bind/listen failed")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        self.descriptor = descriptor
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Waits (bounded) until a client has connected, and keeps that connection open.
    func waitForConnection(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let client = accept(self.descriptor, nil, nil)
            if client >= 0 {
                self.accepted.withLock { $0.append(client) }
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HostTestFailure("nobody connected to the silent listener within \(timeout)")
    }

    func close() {
        for client in self.accepted.withLock({ $0 }) { Glibc.close(client) }
        Glibc.close(self.descriptor)
    }
}
