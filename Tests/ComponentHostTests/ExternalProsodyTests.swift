import ComponentKit
import Foundation
import Logging
import StockPlugins
import Testing
import XMPPCore
import XMPPTestSupport

@testable import ComponentHost

/// The stock host against a real Prosody running the project's `mod_component_xep0225`:
/// a slixmpp and a libstrophe component, supervised by the host, connect to its local
/// listener and are bound on the host's one XEP-0225 stream; a real c2s user talks to them.
@Suite("External components through the host, against Prosody", .serialized, .timeLimit(.minutes(3)))
struct ExternalProsodyTests {
    static let identity = "comp.localhost"
    static let secret = "xep0225-secret-for-external-tests"

    /// A world-readable copy of the module: Prosody runs as its own user.
    static func moduleDirectory(in directory: TemporaryDirectory) throws -> String {
        let source = ExternalSupervisedTests.repository + "/ServerModules/prosody/mod_component_xep0225.lua"
        let target = directory.path + "/modules"
        try FileManager.default.createDirectory(
            atPath: target, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        try FileManager.default.copyItem(atPath: source, toPath: target + "/mod_component_xep0225.lua")
        _ = chmod(target + "/mod_component_xep0225.lua", 0o644)
        _ = chmod(directory.path, 0o755)
        return target
    }

    @Test func slixmppAndLibstropheServeARealUserThroughProsody() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let hostnames = ["slix.localhost", "strophe.localhost"]
        var components = [
            ProsodyFixture.Component(
                hostname: Self.identity, secret: Self.secret, module: "component_xep0225",
                extraLines: ["component_xep0225_hostnames = { \(hostnames.map { "\"\($0)\"" }.joined(separator: ", ")) }"])
        ]
        for hostname in hostnames {
            components.append(.init(hostname: hostname, secret: nil, module: "component_xep0225"))
        }
        let prosody = try await ProsodyFixture.start(
            .init(
                domain: "localhost", components: components, accounts: [.init(username: "alice", password: "alice-pass")],
                pluginPaths: [try Self.moduleDirectory(in: directory)], xep0225Port: true))
        defer { prosody.stop() }
        let xep0225Port = try #require(prosody.xep0225Port)

        let strophe = try ExternalSupervisedTests.compileStropheEcho(into: directory.path)
        let port = try FreePort.allocate()
        let password = try directory.write("password", Self.secret + "\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: password)
        let text = """
            [server]
            host = "127.0.0.1"
            port = \(xep0225Port)
            domain = "localhost"
            protocol = "xep0225"
            tls = "starttls"
            ca_file = "\(prosody.caCertificatePath)"

            [auth]
            identity = "\(Self.identity)"
            password_file = "password"

            [admin]
            socket = "\(directory.path)/admin.sock"

            \(try ExternalSupervisedTests.components(
                port: port, directory: directory, strophe: strophe, slixHostname: hostnames[0], stropheHostname: hostnames[1]))
            """
        let path = try directory.write("host.toml", text)
        let host = try ComponentHost(
            configuration: try HostConfiguration.load(path: path, environment: [:], registry: .stock), registry: .stock,
            logger: Logger(label: "host-prosody"))
        try await LiveHostTests.whileRunning(host) {
            for hostname in hostnames {
                _ = try await ExternalSupervisedTests.waitFor(host, hostname, "connected and bound") { $0.connected }
            }
            let deadline = ContinuousClock.now + .seconds(20)
            while await host.status.components.contains(where: { $0.state != "bound" }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            let status = await host.status
            #expect(status.protocolInUse == "XEP-0225")
            #expect(status.components.allSatisfy { $0.state == "bound" })

            let alice = try await C2SClient.connect(
                .init(
                    port: prosody.c2sPort, domain: "localhost", username: "alice", password: "alice-pass",
                    caFile: prosody.caCertificatePath))
            for hostname in hostnames {
                try await alice.send(
                    Message(type: .chat, to: try JID(hostname), id: "m-\(hostname)", body: "hello \(hostname)").element)
                let echo = try await alice.next { $0.name.localName == "message" && $0["id"] == "m-\(hostname)" }
                #expect(Message(echo)?.body == "hello \(hostname)")
                #expect(echo["from"] == hostname)
            }
            // disco#info of the slixmpp hostname: its own identity, not the host's.
            let disco = try await alice.request(
                IQ(type: .get, to: try JID("slix.localhost"), id: "d1", payload: Element("query", namespace: Namespace.discoInfo))
            )
            #expect(disco.type == .result)
            let identities = disco.payload?.children("identity", namespace: Namespace.discoInfo) ?? []
            #expect(identities.contains { $0["name"] == "slixmpp gateway" })
            // An IQ from the component to the user.
            try await alice.send(Message(type: .chat, to: try JID("slix.localhost"), id: "q1", body: "iq").element)
            let ping = try await alice.next { $0.name.localName == "iq" && $0["id"] == "c2u-q1" }
            #expect(ping["type"] == "get")
            #expect(ping["from"] == "slix.localhost")
            await alice.close()
        }
    }
}
