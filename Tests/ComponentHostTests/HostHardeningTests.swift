import ComponentKit
import Foundation
import KeyValueComponent
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import Testing
import XMPPCore

@testable import ComponentHost
@testable import StockPlugins

#if canImport(Glibc)
import Glibc
#endif

/// Issue #13 on the host side: configuration (items 1, 2, 4), local files and sockets
/// (item 7), the metrics endpoint (item 9) and the `kv` example (item 10).
@Suite("Host hardening", .timeLimit(.minutes(1)))
struct HostHardeningTests {
    private static func server(_ lines: String) -> String {
        Fixtures.configuration().replacingOccurrences(
            of: "protocol = \"xep0225\"\ntls = \"starttls\"", with: lines)
    }

    // MARK: Item 1

    @Test func xep0114WithStartTLSIsAConfigurationError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = try Fixtures.write(in: directory, Self.server("protocol = \"xep0114\"\ntls = \"starttls\""))
        let error = #expect(throws: ConfigurationError.self) {
            try HostConfiguration.load(path: path, environment: [:], registry: .stock)
        }
        #expect(error?.description.contains("server.tls") == true, "\(String(describing: error))")
        #expect(error?.description.contains("direct") == true)
    }

    @Test func autoDoesNotUseTheSASLPasswordAsALegacySecret() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = try Fixtures.write(in: directory, Self.server("protocol = \"auto\"\ntls = \"direct\""))
        let configuration = try HostConfiguration.load(path: path, environment: [:], registry: .stock)
        let component = configuration.componentConfiguration
        #expect(throws: ComponentError.self) { try component.secret(for: "echo.example.com") }
        #expect(!configuration.explanation.contains("has no effect"))
    }

    // MARK: Item 2

    @Test func cleartextXEP0225OffLoopbackNeedsAllowInsecurePlaintext() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let remote = Self.server("protocol = \"xep0225\"\ntls = \"none\"")
            .replacingOccurrences(of: "host = \"127.0.0.1\"", with: "host = \"xmpp.example.com\"")
        let refused = try Fixtures.write(in: directory, remote)
        let error = #expect(throws: ConfigurationError.self) {
            try HostConfiguration.load(path: refused, environment: [:], registry: .stock)
        }
        #expect(error?.description.contains("allow_insecure_plaintext") == true, "\(String(describing: error))")

        let allowed = try Fixtures.write(
            in: directory,
            remote.replacingOccurrences(of: "tls = \"none\"", with: "tls = \"none\"\nallow_insecure_plaintext = true"))
        let configuration = try HostConfiguration.load(path: allowed, environment: [:], registry: .stock)
        #expect(configuration.componentConfiguration.allowInsecurePlaintext)
        #expect(configuration.warnings.contains { $0.contains("SCRAM") || $0.contains("cleartext") })
    }

    // MARK: Item 4

    @Test func requireChannelBindingReachesTheSDK() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let text = Fixtures.configuration().replacingOccurrences(
            of: "password_file = \"password\"", with: "password_file = \"password\"\nrequire_channel_binding = true")
        let configuration = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, text), environment: [:], registry: .stock)
        #expect(configuration.componentConfiguration.requireChannelBinding)
        #expect(configuration.explanation.contains("channel binding required"))

        let cleartext = text.replacingOccurrences(of: "tls = \"starttls\"", with: "tls = \"none\"")
        let error = #expect(throws: ConfigurationError.self) {
            try HostConfiguration.load(path: try Fixtures.write(in: directory, cleartext), environment: [:], registry: .stock)
        }
        #expect(error?.description.contains("auth.require_channel_binding") == true, "\(String(describing: error))")
    }

    // MARK: Item 7: the admin socket's directory

    @Test func adminSocketDirectoryMustBeOwnedAndPrivate() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let open = "\(directory.path)/open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false)
        chmod(open, 0o755)
        let error = #expect(throws: HostError.self) { try AdminServer.prepare(path: "\(open)/admin.sock") }
        #expect(error?.description.contains(open) == true, "\(String(describing: error))")
        #expect(error?.description.contains("chmod 700") == true, "\(String(describing: error))")

        // A symlink to a private directory is not followed.
        let real = "\(directory.path)/real"
        try FileManager.default.createDirectory(
            atPath: real, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let link = "\(directory.path)/link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
        let linked = #expect(throws: HostError.self) { try AdminServer.prepare(path: "\(link)/admin.sock") }
        #expect(linked?.description.contains("symbolic link") == true, "\(String(describing: linked))")

        // A missing directory is created 0700; an existing private one is fine.
        try AdminServer.prepare(path: "\(directory.path)/new/admin.sock")
        #expect(SystemCalls.mode(of: "\(directory.path)/new") == 0o700)
        try AdminServer.prepare(path: "\(real)/admin.sock")
    }

    // MARK: Item 7: --persist

    @Test func persistNeverWritesThroughAPlantedTemporaryFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = try directory.write("host.toml", "# original\n")
        chmod(path, 0o640)
        let victim = try directory.write("victim", "untouched\n")
        // The old temporary name was predictable: plant a symlink there.
        let planted = "\(path).tmp-\(ProcessInfo.processInfo.processIdentifier)"
        try FileManager.default.createSymbolicLink(atPath: planted, withDestinationPath: victim)
        try ConfigurationFileEditor.write("# rewritten\n", to: path)
        #expect(try directory.read("victim") == "untouched\n")
        #expect(SystemCalls.kind(of: path) == .other)
        #expect(try directory.read("host.toml") == "# rewritten\n")
        #expect(SystemCalls.mode(of: path) == 0o640)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tmp") }
        #expect(leftovers == ["host.toml.tmp-\(ProcessInfo.processInfo.processIdentifier)"])  // only the planted link
    }

    // MARK: Item 7: secret files and systemd credentials

    @Test func aSecretFileReadableByOthersIsWarnedAbout() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = try Fixtures.write(in: directory, Fixtures.configuration())
        #expect(try HostConfiguration.load(path: path, environment: [:], registry: .stock).warnings.isEmpty)
        chmod("\(directory.path)/password", 0o644)
        let warnings = try HostConfiguration.load(path: path, environment: [:], registry: .stock).warnings
        #expect(warnings.contains { $0.contains("\(directory.path)/password") && $0.contains("chmod 600") }, "\(warnings)")
    }

    @Test func passwordFromASystemdCredential() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let credentials = "\(directory.path)/credentials"
        try FileManager.default.createDirectory(
            atPath: credentials, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        try Data("from-credential\n".utf8).write(to: URL(fileURLWithPath: "\(credentials)/xmpp-password"))
        chmod("\(credentials)/xmpp-password", 0o400)
        let text = Fixtures.configuration().replacingOccurrences(
            of: "password_file = \"password\"", with: "password_credential = \"xmpp-password\"")
        let path = try directory.write("host.toml", text)
        let configuration = try HostConfiguration.load(
            path: path, environment: ["CREDENTIALS_DIRECTORY": credentials], registry: .stock)
        #expect(configuration.auth.password.value == "from-credential")
        let error = #expect(throws: ConfigurationError.self) {
            try HostConfiguration.load(path: path, environment: [:], registry: .stock)
        }
        #expect(error?.description.contains("CREDENTIALS_DIRECTORY") == true, "\(String(describing: error))")
    }

    @Test func theSystemdUnitLoadsCredentialsAndCanPersist() throws {
        let unitPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Examples/config/component-host.service").path
        let unit = try String(contentsOfFile: unitPath, encoding: .utf8)
        let lines = unit.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        #expect(lines.contains { $0.hasPrefix("LoadCredential=") })
        #expect(lines.contains("ProtectSystem=strict"))
        // --persist rewrites the configuration next to itself: it must live in a writable
        // directory of the unit (StateDirectory), not under the read-only /etc.
        #expect(lines.contains { $0.hasPrefix("StateDirectory=component-host") })
        #expect(lines.contains { $0.hasPrefix("ExecStart=") && $0.contains("--config /var/lib/component-host/") })
    }

    // MARK: Item 9: the metrics endpoint

    private static func connect(_ port: Int) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
    }

    private static func withMetricsServer(
        maxConnections: Int, idleTimeout: Duration, _ body: (Int) async throws -> Void
    ) async throws {
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let server = MetricsServer(
            address: .init(host: "127.0.0.1", port: 0), registry: PrometheusCollectorRegistry(),
            logger: Logger(label: "test"), maxConnections: maxConnections, idleTimeout: idleTimeout,
            onListening: { continuation.yield($0.port ?? 0) })
        let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
        async let running: Void = group.run()
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next())
        do {
            try await body(port)
        } catch {
            await group.triggerGracefulShutdown()
            try await running
            throw error
        }
        await group.triggerGracefulShutdown()
        try await running
    }

    @Test func metricsEndpointClosesIdleConnections() async throws {
        try await Self.withMetricsServer(maxConnections: 16, idleTimeout: .milliseconds(300)) { port in
            // An idle connection is closed by the server (the read ends) rather than held forever.
            let idle = try await Self.connect(port)
            let closedByServer = try await idle.executeThenClose { inbound, _ in
                for try await _ in inbound {}
                return true
            }
            #expect(closedByServer)
        }
    }

    @Test func metricsEndpointCapsConnections() async throws {
        try await Self.withMetricsServer(maxConnections: 2, idleTimeout: .seconds(60)) { port in
            // Two idle connections fill the cap; a third is closed at once, unanswered.
            // Every client channel is finished on every path (an unfinished NIOAsyncChannel
            // aborts the process when it is released).
            let first = try await Self.connect(port)
            let refused: String
            do {
                let second = try await Self.connect(port)
                do {
                    refused = try await MetricsServerTests.get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                } catch {
                    refused = "closed without an answer: \(error)"  // a reset is a refusal too
                }
                try? await second.executeThenClose { _, _ in }
            } catch {
                try? await first.executeThenClose { _, _ in }
                throw error
            }
            try? await first.executeThenClose { _, _ in }
            #expect(!refused.hasPrefix("HTTP/1.1 200"), "\(refused)")
        }
    }

    // MARK: Item 10: the kv example

    @Test func kvCapsKeyAndValueSizes() throws {
        let store = KeyValueComponent.Store(limits: .init(maxKeys: 10, maxKeyBytes: 8, maxValueBytes: 16))
        #expect(throws: StanzaError.self) { try store.set(String(repeating: "k", count: 9), "v") }
        #expect(throws: StanzaError.self) { try store.set("k", String(repeating: "v", count: 17)) }
        try store.set("k", String(repeating: "v", count: 16))
        #expect(store.command("set \(String(repeating: "k", count: 9)) v").hasPrefix("error:"))
        let defaults = KeyValueComponent.Limits()
        #expect(defaults.maxKeyBytes <= 1024)
        #expect(defaults.maxValueBytes <= 64 << 10)
    }

    @Test func kvRestrictsWritersToConfiguredJIDs() throws {
        let admin = try JID("admin@example.com/laptop")
        let stranger = try JID("mallory@example.net/x")
        let store = KeyValueComponent.Store(limits: .init(writers: [try JID("admin@example.com")]))
        #expect(store.command("set colour blue", from: stranger).hasPrefix("error:"))
        #expect(store.value("colour") == nil)
        #expect(store.command("set colour blue", from: admin) == "ok")
        #expect(store.command("get colour", from: stranger) == "blue")  // reading stays open
        let query = Element(
            "query", namespace: KeyValueComponent.namespace,
            children: [Element("item", namespace: KeyValueComponent.namespace, attributes: ["key": "colour"], text: "red")])
        let error = #expect(throws: StanzaError.self) { try store.answer(query, isSet: true, from: stranger) }
        #expect(error?.condition == .forbidden)
        #expect(try store.answer(query, isSet: true, from: admin) == nil)
    }

    @Test func kvPluginOptionsForTheLimits() throws {
        let options = try PluginRegistry.stock.validate(
            plugin: "kv",
            options: [
                "max_key_bytes": .integer(32), "max_value_bytes": .integer(100),
                "writers": .string("admin@example.com, ops@example.com"),
            ])
        let limits = try KeyValuePlugin.limits(options)
        #expect(limits.maxKeyBytes == 32)
        #expect(limits.maxValueBytes == 100)
        #expect(limits.writers == [try JID("admin@example.com"), try JID("ops@example.com")])
        #expect(throws: PluginError.self) {
            try KeyValuePlugin.limits(
                try PluginRegistry.stock.validate(plugin: "kv", options: ["writers": .string("not a jid@@")]))
        }
    }
}

extension HostHardeningTests {
    /// Found by Fuzz/FuzzHostConfiguration: toml++ aborted the process (an assertion in
    /// parse_key) on a control character, so `check-config` or a SIGHUP reload crashed.
    @Test func controlCharactersAreASyntaxErrorNotACrash() {
        for text in ["[\u{01}s]\n", "[server]\nhost = \"a\u{00}b\"\n", "x\u{7F} = 1\n"] {
            let error = #expect(throws: ConfigurationError.self) {
                try HostConfiguration.parse(text, path: "host.toml", registry: .stock)
            }
            #expect(error?.description.contains("control character") == true, "\(String(describing: error))")
        }
        for text in ["[# wh.cin1\n", "[[ {a = 1}]]\n", "[\nho: Sa= 1\n", "[\u{34C}\n"] {
            let error = #expect(throws: ConfigurationError.self) {
                try HostConfiguration.parse(text, path: "host.toml", registry: .stock)
            }
            #expect(error?.description.contains("table header") == true, "\(String(describing: error))")
        }
    }
}
