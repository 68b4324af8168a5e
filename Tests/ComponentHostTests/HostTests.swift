import Foundation
import KeyValueComponent
import Logging
import Testing
import XMPPCore
import XMPPTestSupport

@testable import ComponentHost
@testable import ComponentKit
@testable import StockPlugins

@Suite("Host (no server)", .timeLimit(.minutes(1)))
struct HostTests {
    static let logger = Logger(label: "test")

    static func host(in directory: TemporaryDirectory, extra: String = "", registry: PluginRegistry = .stock)
        throws -> ComponentHost
    {
        let path = try Fixtures.write(in: directory, Fixtures.configuration(socket: "\(directory.path)/admin.sock", extra: extra))
        let configuration = try HostConfiguration.load(path: path, environment: [:], registry: registry)
        return try ComponentHost(configuration: configuration, registry: registry, logger: Self.logger)
    }

    @Test func reloadPlanDiffs() {
        let running: [String: ReloadPlan.Running] = [
            "a.example.com": .init(plugin: "echo", options: PluginOptions(["prefix": .string("")]), fromConfiguration: true),
            "b.example.com": .init(plugin: "echo", options: PluginOptions(["prefix": .string("")]), fromConfiguration: true),
            "c.example.com": .init(plugin: "echo", options: PluginOptions(["prefix": .string("")]), fromConfiguration: true),
            "runtime.example.com": .init(plugin: "kv", options: PluginOptions(), fromConfiguration: false),
        ]
        let plan = ReloadPlan(
            running: running,
            desired: [
                .init(hostname: "A.example.com", plugin: "echo", options: PluginOptions(["prefix": .string("")])),
                .init(hostname: "b.example.com", plugin: "echo", options: PluginOptions(["prefix": .string("!")])),
                .init(hostname: "d.example.com", plugin: "kv"),
            ])
        #expect(plan.unchanged == ["A.example.com"])
        #expect(plan.changed == ["b.example.com"])
        #expect(plan.added == ["d.example.com"])
        #expect(plan.removed == ["c.example.com"])  // the runtime bind is kept
    }

    /// The plan keys hostnames as the connection does (HostnameKey): case and a trailing
    /// dot of the domain do not matter, a resource does.
    @Test func reloadPlanKeysInstancesApart() {
        let echo = PluginOptions(["prefix": .string("")])
        let running: [String: ReloadPlan.Running] = [
            hostnameKey("search.example.com/eu-1"): .init(plugin: "echo", options: echo, fromConfiguration: true),
            hostnameKey("Search.Example.com./EU-2"): .init(plugin: "echo", options: echo, fromConfiguration: true),
        ]
        let plan = ReloadPlan(
            running: running,
            desired: [
                .init(hostname: "SEARCH.example.com/eu-1", plugin: "echo", options: echo),
                .init(hostname: "search.example.com/eu-2", plugin: "echo", options: echo),
            ])
        #expect(plan.unchanged == ["SEARCH.example.com/eu-1"])
        #expect(plan.added == ["search.example.com/eu-2"])  // eu-2 is not EU-2
        #expect(plan.removed == ["search.example.com/EU-2"])
    }

    @Test func statusShowsPendingHostnamesWhenNotConnected() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let host = try Self.host(in: directory)
        let status = await host.status
        #expect(status.server == "127.0.0.1:1")
        #expect(status.connected == false)
        #expect(status.protocolInUse == nil)
        #expect(status.components.map(\.hostname) == ["echo.example.com", "kv.example.com"])
        #expect(status.components.allSatisfy { $0.state == "pending" && $0.origin == "configuration" })
        #expect(status.rendered.contains("echo.example.com  echo    pending  0   0    configuration"))
    }

    @Test func reloadAddsRemovesAndChanges() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let host = try Self.host(in: directory, extra: "[component.options]\nmax_keys = 10")
        let kv = try #require(await host.hostedHandler(for: "kv.example.com"))
        let store = try #require(kv.snapshot.handler as? KeyValueComponentProbe.Handler)
        try store.store.set("kept", "yes")
        let echoBefore = try #require(await host.hostedHandler(for: "echo.example.com"))

        let text = Fixtures.configuration(socket: "\(directory.path)/admin.sock", extra: "[component.options]\nmax_keys = 20")
            .replacingOccurrences(of: "prefix = \"> \"", with: "prefix = \">> \"")
            .replacingOccurrences(of: "hostname = \"echo.example.com\"", with: "hostname = \"echo2.example.com\"")
        let path = try directory.write("host.toml", text)
        _ = path
        let report = try await host.reload()
        #expect(report.plan.added == ["echo2.example.com"])
        #expect(report.plan.removed == ["echo.example.com"])
        #expect(report.plan.changed == ["kv.example.com"])
        #expect(report.failures.isEmpty)
        #expect(report.restartRequired.isEmpty)
        let status = await host.status
        #expect(status.components.map(\.hostname) == ["echo2.example.com", "kv.example.com"])
        #expect(status.components[1].options["max_keys"] == .integer(20))
        // kv takes options in place: the stored value survives.
        #expect(store.store.value("kept") == "yes")
        #expect(store.store.limits.maxKeys == 20)
        #expect(await host.hostedHandler(for: "echo.example.com") == nil)
        _ = echoBefore
    }

    @Test func changedPluginOptionsRemakeTheHandlerWithoutUnbinding() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let host = try Self.host(in: directory)
        let hosted = try #require(await host.hostedHandler(for: "echo.example.com"))
        let text = Fixtures.configuration(socket: "\(directory.path)/admin.sock")
            .replacingOccurrences(of: "prefix = \"> \"", with: "prefix = \"echo: \"")
        try directory.write("host.toml", text)
        let report = try await host.reload()
        #expect(report.plan.changed == ["echo.example.com"])
        #expect(await host.hostedHandler(for: "echo.example.com") === hosted)  // same registration
        #expect(hosted.snapshot.options.string("prefix") == "echo: ")
    }

    @Test func brokenReloadKeepsTheRunningState() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let host = try Self.host(in: directory)
        let before = await host.status
        // A syntax error, then a plugin refusal (max_keys = 0 passes the type check).
        try directory.write("host.toml", "[server\nhost = 1")
        await #expect(throws: ConfigurationError.self) { try await host.reload() }
        try directory.write(
            "host.toml",
            Fixtures.configuration(socket: "\(directory.path)/admin.sock", extra: "[component.options]\nmax_keys = 0")
                + "\n[[component]]\nhostname = \"new.example.com\"\nplugin = \"echo\"\n")
        await #expect(throws: ConfigurationError.self) { try await host.reload() }
        #expect(await host.status == before)
    }

    @Test func serverChangesNeedARestart() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let host = try Self.host(in: directory)
        try directory.write(
            "host.toml",
            Fixtures.configuration(socket: "\(directory.path)/admin.sock").replacingOccurrences(of: "port = 1", with: "port = 2"))
        let report = try await host.reload()
        #expect(report.restartRequired == ["[server]"])
        #expect(await host.status.server == "127.0.0.1:1")
    }

    @Test func runtimeBindPersistsOnlyWhenAsked() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let host = try Self.host(in: directory)
        let original = try directory.read("host.toml")
        let component = try await host.bind("weather.example.com", plugin: "echo", options: ["prefix": .string("w: ")])
        #expect(component.state == "pending")
        #expect(component.origin == "runtime")
        #expect(try directory.read("host.toml") == original)
        // A reload keeps runtime binds.
        let report = try await host.reload()
        #expect(report.plan.isEmpty)
        #expect(await host.status.components.contains { $0.hostname == "weather.example.com" })

        try await host.bind("kv2.example.com", plugin: "kv", options: ["max_keys": .integer(3)], weight: 4, persist: true)
        let persisted = try HostConfiguration.load(path: "\(directory.path)/host.toml", environment: [:], registry: .stock)
        #expect(persisted.components.map(\.hostname) == ["echo.example.com", "kv.example.com", "kv2.example.com"])
        #expect(persisted.components[2].options.integer("max_keys") == 3)
        #expect(persisted.components[2].weight == 4)
        #expect(try directory.read("host.toml").hasPrefix(original))  // comments and layout kept

        try await host.unbind("kv.example.com", persist: true)
        let after = try HostConfiguration.load(path: "\(directory.path)/host.toml", environment: [:], registry: .stock)
        #expect(after.components.map(\.hostname) == ["echo.example.com", "kv2.example.com"])
        await #expect(throws: HostError.self) { try await host.unbind("kv.example.com") }
        await #expect(throws: HostError.self) { try await host.bind("echo.example.com", plugin: "echo") }
        await #expect(throws: PluginError.self) { try await host.bind("x.example.com", plugin: "nope") }
    }

    @Test func hungHandlerIsDetectedAndReported() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let registry = PluginRegistry.stock.adding([HangingPlugin.self])
        let host = try Self.host(in: directory, registry: registry)
        try await host.bind("hang.example.com", plugin: "hang")
        let hosted = try #require(await host.hostedHandler(for: "hang.example.com"))
        let echo = try #require(await host.hostedHandler(for: "echo.example.com"))
        let context = ComponentContext(hostname: "hang.example.com", logger: Self.logger, transport: host.connection)
        let message = Stanza.message(
            Message(type: .chat, from: try JID("u@example.com"), to: try JID("hang.example.com"), id: "m1", body: "hi"))
        let task = Task { try await hosted.handle(message, in: context) }
        while hosted.watchdog.inFlightCount == 0 { await Task.yield() }

        await host.checkWatchdogs(now: .now + .seconds(5))
        #expect(await host.status.components.first { $0.hostname == "hang.example.com" }?.hungOn == nil)
        await host.checkWatchdogs(now: .now + .seconds(11))
        await host.checkWatchdogs(now: .now + .seconds(12))  // reported once
        let status = try #require(await host.status.components.first { $0.hostname == "hang.example.com" })
        #expect(status.hangs == 1)
        #expect(status.hungOn == "message chat id=m1")
        #expect(status.hungSeconds != nil)
        // Another hostname's handler is not held up.
        #expect(echo.watchdog.inFlightCount == 0)
        #expect(await host.status.components.first { $0.hostname == "echo.example.com" }?.hangs == 0)

        task.cancel()
        _ = try? await task.value
        #expect(hosted.watchdog.currentHang() == nil)
        #expect(hosted.watchdog.hangCount == 1)
    }

    @Test func shutdownWhileDisconnectedReturns() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let host = try Self.host(in: directory)
        let events = host.connection.events()
        let task = Task { try await host.run() }
        // Nobody listens on the configured port: wait for the first attempt to connect, and
        // for it to fail.
        try await withDeadline(.seconds(20), "a connection attempt") {
            for await event in events {
                if event.kind == .connecting { return }
            }
        }
        let failed = ContinuousClock.now + .seconds(20)
        while host.connection.status.lastError == nil, ContinuousClock.now < failed {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(host.connection.status.lastError != nil, "the attempt to connect to port 1 did not fail")
        #expect(!host.connection.status.isConnected)
        // shutdown() while disconnected (in the reconnect backoff): run() returns, without an
        // error, before the deadline.
        host.connection.shutdown()
        try await withDeadline(.seconds(20), "run() to return after shutdown()") { try await task.value }
        #expect(!host.connection.status.isConnected)
    }
}

/// A plugin whose handler never returns (until cancelled).
enum HangingPlugin: ComponentPlugin {
    static let name = "hang"
    static let description = "Hangs on every stanza."
    static func make(options: PluginOptions, context: PluginContext) throws -> any ComponentHandler {
        ClosureHandler { _, _ in
            try await Task.sleep(for: .seconds(3600))
        }
    }
}

enum KeyValueComponentProbe {
    typealias Handler = KeyValueComponent
}
