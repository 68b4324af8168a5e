import ComponentKit
import Foundation
import Logging
import ReferenceServer
import StockPlugins
import Synchronization
import Testing
import XMPPCore
import XMPPSASL
import XMPPTLS
import XMPPTestSupport

@testable import ComponentHost

/// Independent components (a slixmpp `ComponentXMPP` and a libstrophe component, from
/// Debian's packages) started and supervised by the host through `command`, connected to
/// its local listener and carried upstream on its one XEP-0225 stream to the reference
/// server; faults: the child killed, the upstream server killed and restarted, the host stopped.
@Suite("Supervised external components", .serialized, .timeLimit(.minutes(4)))
struct ExternalSupervisedTests {
    static let domain = LiveHostTests.domain
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// A reference server that can be stopped and started again on the same port.
    final class Upstream: Sendable {
        let directory: TemporaryDirectory
        let caFile: String
        private let configuration: ReferenceServerConfiguration
        private let current: Mutex<(ReferenceServer, UserStanzaInbox)?>

        init() async throws {
            self.directory = try TemporaryDirectory()
            let files = try DevelopmentCertificateAuthority().issue(dnsNames: [Self.domainName])
                .write(toDirectory: self.directory.path, name: "server")
            let sasldb = self.directory.path + "/sasldb"
            try SASLDatabase.setPassword(
                path: sasldb, user: LiveHostTests.identity, realm: Self.domainName, password: Fixtures.password)
            var configuration = ReferenceServerConfiguration(
                domain: Self.domainName, tls: files.serverConfiguration, sasl: .init(sasldbPath: sasldb, scramIterationCount: nil)
            )
            configuration.allowedHostnames = [LiveHostTests.identity: ["*.example.test"]]
            let server = try await ReferenceServer.start(configuration: configuration)
            configuration.port = server.port
            self.configuration = configuration
            self.caFile = files.caCertificateFile
            self.current = Mutex((server, UserStanzaInbox(server)))
        }

        static let domainName = LiveHostTests.domain

        var server: ReferenceServer { self.current.withLock { $0!.0 } }
        var users: UserStanzaInbox { self.current.withLock { $0!.1 } }
        var port: Int { self.configuration.port }

        func kill() async {
            let old = self.current.withLock { state in
                defer { state = nil }
                return state
            }
            await old?.0.stop()
        }

        func start() async throws {
            let server = try await ReferenceServer.start(configuration: self.configuration)
            self.current.withLock { $0 = (server, UserStanzaInbox(server)) }
        }

        func ask(_ hostname: String, _ body: String, id: String, timeout: Duration = .seconds(20)) async throws -> Element {
            try await LiveHostTests.ask(self.server, self.users, hostname, body, id: id, timeout: timeout)
        }

        func stop() async {
            await self.kill()
            self.directory.cleanup()
        }

        static func with<Result>(_ body: (Upstream) async throws -> Result) async throws -> Result {
            let upstream = try await Upstream()
            return try await withCleanup {
                try await body(upstream)
            } cleanup: {
                await upstream.stop()
            }
        }

        /// The host's configuration: the given `[[component]]` text after the server part.
        func configuration(_ components: String) -> String {
            """
            [server]
            host = "127.0.0.1"
            port = \(self.port)
            domain = "\(Self.domainName)"
            protocol = "xep0225"
            tls = "starttls"
            ca_file = "\(self.caFile)"

            [auth]
            identity = "\(LiveHostTests.identity)"
            password_file = "password"

            [admin]
            socket = "\(self.directory.path)/admin.sock"

            \(components)
            """
        }
    }

    /// Compiles the libstrophe echo peer (Benchmarks/Peers/strophe_echo.c) into `directory`.
    static func compileStropheEcho(into directory: String) throws -> String {
        let output = directory + "/strophe-echo"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [
            "-c", "cc -O2 -o \"$1\" \"$2\" $(pkg-config --cflags --libs libstrophe)", "sh", output,
            Self.repository + "/Benchmarks/Peers/strophe_echo.c",
        ]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw HostTestFailure("cannot compile strophe_echo.c (libstrophe-dev and cc are installed by scripts/setup.sh)")
        }
        return output
    }

    static func components(
        port: Int, directory: TemporaryDirectory, strophe: String, slixHostname: String = "slix.example.test",
        stropheHostname: String = "strophe.example.test"
    ) throws -> String {
        let slixSecret = try directory.write("slix.secret", "slix-secret\n")
        let stropheSecret = try directory.write("strophe.secret", "strophe-secret\n")
        let script = Self.repository + "/Tests/ExternalPeers/slixmpp_external.py"
        // libstrophe's echo takes HOST PORT HOSTNAME SECRET: a shell maps the environment.
        let wrapper = #"exec "$0" "${COMPONENT_LISTEN%:*}" "${COMPONENT_LISTEN##*:}" "$COMPONENT_HOSTNAME" "$COMPONENT_SECRET""#
        return """
            [[component]]
            hostname = "\(slixHostname)"
            plugin = "external"
            [component.options]
            listen = "127.0.0.1:\(port)"
            secret_file = "\(slixSecret)"
            command = ["/usr/bin/python3", "\(script)"]
            restart = "on-failure"
            grace_seconds = 30

            [[component]]
            hostname = "\(stropheHostname)"
            plugin = "external"
            [component.options]
            listen = "127.0.0.1:\(port)"
            secret_file = "\(stropheSecret)"
            command = ["/bin/sh", "-c", \(PluginOptionValue.quoted(wrapper)), "\(strophe)"]
            restart = "always"
            grace_seconds = 30
            """
    }

    static func external(_ host: ComponentHost, _ hostname: String) async -> HostStatus.External? {
        await host.status.components.first { $0.hostname == hostname }?.external
    }

    /// Waits until `condition` holds for the hostname's external status.
    static func waitFor(
        _ host: ComponentHost, _ hostname: String, _ what: String, timeout: Duration = .seconds(30),
        _ condition: (HostStatus.External) -> Bool
    ) async throws -> HostStatus.External {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = await Self.external(host, hostname), condition(status) { return status }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HostTestFailure(
            "\(hostname): \(what) did not happen in time (\(String(describing: await Self.external(host, hostname))))")
    }

    @Test func slixmppAndLibstropheComponentsAreSupervisedAndServeUsers() async throws {
        try await Upstream.with { upstream in
            let strophe = try Self.compileStropheEcho(into: upstream.directory.path)
            let port = try FreePort.allocate()
            let path = try Fixtures.write(
                in: upstream.directory,
                upstream.configuration(try Self.components(port: port, directory: upstream.directory, strophe: strophe)))
            let host = try ComponentHost(
                configuration: try HostConfiguration.load(path: path, environment: [:], registry: .stock), registry: .stock,
                logger: Logger(label: "host"))
            var pids: [Int32] = []
            try await LiveHostTests.whileRunning(host) {
                try await upstream.server.waitUntilBound("slix.example.test", timeout: .seconds(30))
                try await upstream.server.waitUntilBound("strophe.example.test", timeout: .seconds(30))
                // Messages both ways, through each independent component.
                #expect(Message(try await upstream.ask("slix.example.test", "hi slix", id: "s1"))?.body == "hi slix")
                #expect(Message(try await upstream.ask("strophe.example.test", "hi strophe", id: "t1"))?.body == "hi strophe")
                // IQs both ways: the user asks disco#info, answered by slixmpp (not the host).
                try upstream.server.inject(
                    IQ(
                        type: .get, from: try JID("alice@example.test/x"), to: try JID("slix.example.test"), id: "d1",
                        payload: Element("query", namespace: Namespace.discoInfo)
                    ).element)
                let disco = try #require(try await upstream.users.take(id: "d1", timeout: .seconds(10)))
                #expect(disco["type"] == "result")
                let identities =
                    disco.firstChild("query", namespace: Namespace.discoInfo)?.children(
                        "identity", namespace: Namespace.discoInfo) ?? []
                #expect(identities.contains { $0["name"] == "slixmpp gateway" })
                // ... and the component sends the user an IQ.
                #expect(Message(try await upstream.ask("slix.example.test", "iq", id: "q1"))?.body == "iq")
                let ping = try #require(try await upstream.users.take(id: "c2u-q1", timeout: .seconds(10)))
                #expect(ping["type"] == "get")
                #expect(ping["from"] == "slix.example.test")

                // Status: pid, state, restarts.
                let before = try await Self.waitFor(host, "slix.example.test", "running") {
                    $0.processState == "running" && $0.connected
                }
                let strophePid = try #require(
                    try await Self.waitFor(host, "strophe.example.test", "running") { $0.pid != nil }.pid)
                let slixPid = try #require(before.pid)
                #expect(before.restarts == 0)

                // The child killed: once the host sees its stream gone, stanzas wait (grace),
                // the child is restarted, connects again, and answers every one, in order.
                Foundation.kill(slixPid, SIGKILL)
                _ = try await Self.waitFor(host, "slix.example.test", "the stream to end") { !$0.connected }
                #expect(upstream.server.boundHostnames.contains("slix.example.test"))
                for index in 0..<10 {
                    try upstream.server.inject(
                        Message(
                            type: .chat, from: try JID("alice@example.test/x"), to: try JID("slix.example.test"), id: "k\(index)",
                            body: "kept \(index)"
                        ).element)
                }
                for index in 0..<10 {
                    let answer = try #require(try await upstream.users.take(id: "k\(index)", timeout: .seconds(30)))
                    #expect(Message(answer)?.body == "kept \(index)")
                }
                let after = try await Self.waitFor(host, "slix.example.test", "restarted") {
                    $0.processState == "running" && $0.pid != nil
                }
                #expect(after.restarts == 1)
                #expect(after.pid != slixPid)
                pids = [try #require(after.pid), strophePid]
            }
            // Host stopped: children stopped, hostnames unbound.
            for pid in pids {
                #expect(Foundation.kill(pid, 0) == -1, "pid \(pid) still runs after the host stopped")
            }
            #expect(!upstream.server.boundHostnames.contains("slix.example.test"))
            #expect(!upstream.server.boundHostnames.contains("strophe.example.test"))
        }
    }

    /// The real binary with a supervised slixmpp component: SIGTERM stops the child and
    /// unbinds its hostname, and the host exits 0.
    @Test func realBinarySIGTERMStopsChildrenAndUnbinds() async throws {
        try await Upstream.with { upstream in
            let strophe = try Self.compileStropheEcho(into: upstream.directory.path)
            let port = try FreePort.allocate()
            let path = try Fixtures.write(
                in: upstream.directory,
                upstream.configuration(try Self.components(port: port, directory: upstream.directory, strophe: strophe)))
            let binary = try #require(CommandLineTests.binaryPath, "component-host not found next to the test bundle")
            let process = TestProcess(
                executable: binary, arguments: ["run", "--config", path], outputPath: upstream.directory.path + "/host.out")
            try process.start()
            try await withCleanup {
                try await upstream.server.waitUntilBound("slix.example.test", timeout: .seconds(30))
                try await upstream.server.waitUntilBound("strophe.example.test", timeout: .seconds(30))
                #expect(Message(try await upstream.ask("slix.example.test", "real", id: "r1"))?.body == "real")
                let children = Self.children(of: process.pid)
                #expect(children.count == 2, "the host's children: \(children)")
                kill(process.pid, SIGTERM)
                let status = try await process.waitForExit(timeout: .seconds(30))
                #expect(status == 0, "component-host exited \(status) after SIGTERM:\n\(process.output)")
                for child in children {
                    #expect(Foundation.kill(child, 0) == -1, "child \(child) outlived the host")
                }
                #expect(!upstream.server.boundHostnames.contains("slix.example.test"))
                #expect(!upstream.server.boundHostnames.contains("strophe.example.test"))
            } cleanup: {
                process.kill()
            }
        }
    }

    /// `Examples/OutOfProcessComponent`, built by scripts/test.sh before the suite, which
    /// passes its path in `OUT_OF_PROCESS_COMPONENT`.
    static let outOfProcessComponent = ProcessInfo.processInfo.environment["OUT_OF_PROCESS_COMPONENT"]

    /// The Swift example component run by the stock host through `command`.
    @Test(.enabled(if: Self.outOfProcessComponent != nil, "set OUT_OF_PROCESS_COMPONENT (scripts/test.sh does)"))
    func theSwiftExampleRunsUnderTheStockHost() async throws {
        let binary = try #require(Self.outOfProcessComponent)
        try await Upstream.with { upstream in
            let port = try FreePort.allocate()
            let secret = try upstream.directory.write("rev.secret", "rev-secret\n")
            let path = try Fixtures.write(
                in: upstream.directory,
                upstream.configuration(
                    """
                    [[component]]
                    hostname = "rev.example.test"
                    plugin = "external"
                    [component.options]
                    listen = "127.0.0.1:\(port)"
                    secret_file = "\(secret)"
                    command = ["\(binary)"]
                    """))
            let host = try ComponentHost(
                configuration: try HostConfiguration.load(path: path, environment: [:], registry: .stock), registry: .stock,
                logger: Logger(label: "host"))
            try await LiveHostTests.whileRunning(host) {
                try await upstream.server.waitUntilBound("rev.example.test", timeout: .seconds(30))
                #expect(Message(try await upstream.ask("rev.example.test", "hello", id: "e1"))?.body == "olleh")
                try upstream.server.inject(
                    IQ(
                        type: .get, from: try JID("alice@example.test/x"), to: try JID("rev.example.test"), id: "e2",
                        payload: Element("query", namespace: Namespace.discoInfo)
                    ).element)
                let disco = try #require(try await upstream.users.take(id: "e2", timeout: .seconds(10)))
                let identities =
                    disco.firstChild("query", namespace: Namespace.discoInfo)?.children(
                        "identity", namespace: Namespace.discoInfo) ?? []
                #expect(identities.contains { $0["name"] == "Reverser (out of process)" })
            }
        }
    }

    /// Against a server with XEP-0114 only, the host carries the external component on its
    /// own XEP-0114 connection for that hostname, opened when the component connects and
    /// closed when it leaves.
    @Test func overAXEP0114OnlyUpstreamTheHostOpensAConnectionPerComponent() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        var configuration = ReferenceServerConfiguration(
            domain: Self.domain, tls: nil, sasl: .init(sasldbPath: directory.path + "/sasldb"))
        configuration.requireTLS = false
        configuration.legacyPort = 0
        configuration.legacySecrets = ["raw.example.test": "upstream-secret"]
        let server = try await ReferenceServer.start(configuration: configuration)
        let users = UserStanzaInbox(server)
        try await withCleanup {
            let port = try FreePort.allocate()
            let upstreamSecret = try directory.write("upstream.secret", "upstream-secret\n")
            let localSecret = try directory.write("local.secret", "local-secret\n")
            let password = try directory.write("password", "unused\n")
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: password)
            let path = try directory.write(
                "host.toml",
                """
                [server]
                host = "127.0.0.1"
                port = \(try #require(server.legacyPort))
                domain = "\(Self.domain)"
                protocol = "xep0114"
                tls = "none"

                [auth]
                identity = "component.example.test"
                password_file = "password"

                [admin]
                socket = "\(directory.path)/admin.sock"

                [[component]]
                hostname = "raw.example.test"
                plugin = "external"
                secret_file = "\(upstreamSecret)"
                [component.options]
                listen = "127.0.0.1:\(port)"
                secret_file = "\(localSecret)"
                grace_seconds = 0
                """)
            let host = try ComponentHost(
                configuration: try HostConfiguration.load(path: path, environment: [:], registry: .stock), registry: .stock,
                logger: Logger(label: "host-0114"))
            try await LiveHostTests.whileRunning(host) {
                let listening = ContinuousClock.now + .seconds(10)
                while !FreePort.isAccepting(port), ContinuousClock.now < listening {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(!server.boundHostnames.contains("raw.example.test"))
                let raw = try await RawComponent.connect(port: port)
                #expect(try await raw.authenticate("raw.example.test", secret: "local-secret") == nil)
                try await server.waitUntilBound("raw.example.test")
                try server.inject(
                    Message(
                        type: .chat, from: try JID("alice@example.test/x"), to: try JID("raw.example.test"), id: "l1", body: "in"
                    ).element)
                #expect(try await raw.nextElement()?["id"] == "l1")
                try await raw.send(
                    Message(
                        type: .chat, from: try JID("raw.example.test"), to: try JID("alice@example.test/x"), id: "l2", body: "out"
                    ).element)
                #expect(Message(try #require(try await users.take(id: "l2", timeout: .seconds(10))))?.body == "out")
                await raw.close()
                try await server.waitUntilUnbound("raw.example.test")
            }
        } cleanup: {
            await server.stop()
        }
    }

    /// The direct children of a process (`/proc/PID/task/*/children`).
    static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task -> [Int32] in
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
            return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    @Test func upstreamRestartKeepsLocalStreamsAndDeliversQueuedStanzasInOrder() async throws {
        try await Upstream.with { upstream in
            let port = try FreePort.allocate()
            let secret = try upstream.directory.write("raw.secret", "raw-secret\n")
            let path = try Fixtures.write(
                in: upstream.directory,
                upstream.configuration(
                    """
                    [[component]]
                    hostname = "raw.example.test"
                    plugin = "external"
                    [component.options]
                    listen = "127.0.0.1:\(port)"
                    secret_file = "\(secret)"
                    """))
            let host = try ComponentHost(
                configuration: try HostConfiguration.load(path: path, environment: [:], registry: .stock), registry: .stock,
                logger: Logger(label: "host"))
            try await LiveHostTests.whileRunning(host) {
                let listening = ContinuousClock.now + .seconds(10)
                while !FreePort.isAccepting(port), ContinuousClock.now < listening {
                    try await Task.sleep(for: .milliseconds(20))
                }
                let raw = try await RawComponent.connect(port: port)
                #expect(try await raw.authenticate("raw.example.test", secret: "raw-secret") == nil)
                try await upstream.server.waitUntilBound("raw.example.test")
                try await raw.send(
                    Message(
                        type: .chat, from: try JID("raw.example.test"), to: try JID("alice@example.test/x"), id: "before",
                        body: "b"
                    ).element)
                #expect(try await upstream.users.take(id: "before", timeout: .seconds(10)) != nil)

                await upstream.kill()
                try await Task.sleep(for: .milliseconds(200))
                // The upstream is down; the local stream stays up and what it sends waits.
                for index in 0..<20 {
                    try await raw.send(
                        Message(
                            type: .chat, from: try JID("raw.example.test"), to: try JID("alice@example.test/x"), id: "q\(index)",
                            body: "\(index)"
                        ).element)
                }
                #expect(await Self.external(host, "raw.example.test")?.connected == true)
                try await upstream.start()
                try await upstream.server.waitUntilBound("raw.example.test", timeout: .seconds(30))
                var order: [String] = []
                for index in 0..<20 {
                    let message = try #require(try await upstream.users.take(id: "q\(index)", timeout: .seconds(30)))
                    order.append(Message(message)?.body ?? "")
                }
                #expect(order == (0..<20).map(String.init))
                // And the new upstream reaches the component on the same local stream.
                try upstream.server.inject(
                    Message(
                        type: .chat, from: try JID("alice@example.test/x"), to: try JID("raw.example.test"), id: "after",
                        body: "a"
                    ).element)
                #expect(try await raw.nextElement()?["id"] == "after")
                await raw.close()
            }
        }
    }
}
