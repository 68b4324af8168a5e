import ComponentKit
import Foundation
import Logging
import NIOCore
import NIOPosix
import ReferenceServer
import StockPlugins
import Synchronization
import Testing
import XMPPCore
import XMPPStream
import XMPPTestSupport

@testable import ComponentHost

/// The built-in `external` plugin: its options, its XEP-0114 handshake, and out-of-process
/// components carried upstream by a host against the reference server.
@Suite("External plugin", .serialized, .timeLimit(.minutes(3)))
struct ExternalPluginTests {
    // MARK: Options

    @Test func listenMustBeLoopbackOrAUnixSocket() throws {
        let registry = PluginRegistry.standard
        func check(_ listen: String, _ extra: [String: PluginOptionValue] = ["secret_env": .string("GW")]) throws {
            var options = extra
            options["listen"] = .string(listen)
            _ = try registry.validate(plugin: "external", options: options)
        }
        try check("127.0.0.1:5347")
        try check("127.3.4.5:5347")
        try check("localhost:5347")
        try check("[::1]:5347")
        try check("unix:/run/component-host/gw.sock")
        for refused in [
            "0.0.0.0:5347", "10.0.0.1:5347", "[::]:5347", "example.com:5347", "unix:relative.sock", "127.0.0.1", "127.0.0.1:0",
        ] {
            let error = #expect(throws: PluginError.self, "\(refused)") { try check(refused) }
            #expect(error?.option == "listen")
        }
        let notLoopback = #expect(throws: PluginError.self) { try check("192.168.1.2:5347") }
        #expect(notLoopback?.description.contains("not a loopback address") == true)
        let noSecret = #expect(throws: PluginError.self) { try check("127.0.0.1:5347", [:]) }
        #expect(noSecret?.description.contains("secret_file or secret_env") == true)
        #expect(throws: PluginError.self) {
            try check("127.0.0.1:5347", ["secret_env": .string("A"), "secret_file": .string("/x")])
        }
        let restart = #expect(throws: PluginError.self) {
            try check("127.0.0.1:5347", ["secret_env": .string("A"), "restart": .string("sometimes")])
        }
        #expect(restart?.option == "restart")
    }

    @Test func aNonLoopbackListenIsRefusedWhenTheConfigurationLoads() throws {
        let text = Fixtures.configuration(
            extra: """

                [[component]]
                hostname = "gw.example.com"
                plugin = "external"
                [component.options]
                listen = "0.0.0.0:5347"
                secret_env = "GW_SECRET"
                command = ["/usr/bin/python3", "main.py"]
                """)
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let error = #expect(throws: ConfigurationError.self) {
            _ = try HostConfiguration.load(path: try Fixtures.write(in: directory, text), environment: [:], registry: .stock)
        }
        #expect(error?.description.contains("listen") == true)
        #expect(error?.description.contains("loopback") == true)
        // The same entry on loopback loads, with its command as an array.
        let good = try HostConfiguration.load(
            path: try Fixtures.write(in: directory, text.replacingOccurrences(of: "0.0.0.0:5347", with: "127.0.0.1:5347")),
            environment: [:], registry: .stock)
        let gw = try #require(good.components.first { $0.hostname == "gw.example.com" })
        #expect(gw.options.strings("command") == ["/usr/bin/python3", "main.py"])
        #expect(gw.options.string("restart") == "on-failure")
    }

    @Test func commandLineAssignmentsParseAStringArray() throws {
        let values = try PluginRegistry.standard.parseAssignments(
            plugin: "external", ["listen=127.0.0.1:5347", "secret_env=GW", #"command=["/bin/echo", "a b"]"#])
        #expect(values["command"] == .stringArray(["/bin/echo", "a b"]))
        let words = try PluginRegistry.standard.parseAssignments(plugin: "external", ["command=/bin/sleep 5"])
        #expect(words["command"] == .stringArray(["/bin/sleep", "5"]))
    }

    @Test func statusShowsTheComponentAndItsProcess() throws {
        var external = HostStatus.External(listen: "127.0.0.1:5347", connected: true)
        external.pid = 4242
        external.processState = "running"
        external.restarts = 2
        external.uptimeSeconds = 61
        let status = HostStatus(
            server: "127.0.0.1:5269", domain: "example.com", connected: true, protocolInUse: "XEP-0225", tlsVersion: nil,
            saslMechanism: nil, lastError: nil,
            components: [
                HostStatus.Component(
                    hostname: "gw.example.com", plugin: "external", options: [:], origin: "configuration", state: "bound",
                    stanzasIn: 1, stanzasOut: 2, hangs: 0, external: external)
            ])
        let line = try #require(status.rendered.split(separator: "\n").first { $0.hasPrefix("gw.example.com") })
        #expect(line.contains("local connected on 127.0.0.1:5347"))
        #expect(line.contains("process running pid 4242 up 61s, 2 restart(s)"))
        let json = String(decoding: try JSONEncoder().encode(status), as: UTF8.self)
        #expect(json.contains("\"process_state\":\"running\""))
        #expect(json.contains("\"uptime_seconds\":61"))
    }

    // MARK: Handshake

    @Test func handshakeMachineChecksHostnameSecretAndConflict() {
        let secrets: @Sendable (String) -> String? = { $0 == "gw.example.com" ? "s3cret" : nil }
        var unknown = ExternalAcceptStateMachine(secrets: secrets, makeStreamID: { "id1" })
        guard
            case .fail(let error, _) = unknown.streamOpened(
                StreamHeader(contentNamespace: Namespace.componentAccept, to: "other.example.com", version: nil))
        else {
            Issue.record("an unknown hostname must fail")
            return
        }
        #expect(error.condition == .hostUnknown)

        var wrong = ExternalAcceptStateMachine(secrets: secrets, makeStreamID: { "id1" })
        _ = wrong.streamOpened(StreamHeader(contentNamespace: Namespace.componentAccept, to: "GW.example.com", version: nil))
        let digest = ComponentHandshake.digest(streamID: "id1", secret: "wrong")
        guard case .fail(let denied, _) = wrong.received(Element("handshake", namespace: Namespace.client, text: digest)) else {
            Issue.record("a wrong secret must fail")
            return
        }
        #expect(denied.condition == .notAuthorized)

        var right = ExternalAcceptStateMachine(secrets: secrets, makeStreamID: { "id1" })
        guard
            case .sendHeader(let header) = right.streamOpened(
                StreamHeader(contentNamespace: Namespace.componentAccept, to: "gw.example.com", version: nil))
        else {
            Issue.record("a known hostname gets a header")
            return
        }
        #expect(header.id == "id1")
        #expect(header.from == "gw.example.com")
        let good = ComponentHandshake.digest(streamID: "id1", secret: "s3cret")
        #expect(
            right.received(Element("handshake", namespace: Namespace.client, text: good)) == .claim(hostname: "gw.example.com"))
        var conflicted = right
        guard case .fail(let conflict, _) = conflicted.conflicted() else {
            Issue.record("a conflict must fail")
            return
        }
        #expect(conflict.condition == .conflict)
        #expect(right.claimed() != nil)
        #expect(right.hostname == "gw.example.com")

        var wrongNamespace = ExternalAcceptStateMachine(secrets: secrets)
        guard
            case .fail(let namespace, _) = wrongNamespace.streamOpened(
                StreamHeader(contentNamespace: Namespace.client, to: "gw.example.com"))
        else {
            Issue.record("jabber:client must fail")
            return
        }
        #expect(namespace.condition == .invalidNamespace)
    }
}
