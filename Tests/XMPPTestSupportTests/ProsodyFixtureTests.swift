import Foundation
import Testing
import XMPPCore
import XMPPStream
import XMPPTestSupport

@Suite("Prosody fixture", .serialized, .timeLimit(.minutes(3)))
struct ProsodyFixtureTests {
    static let configuration = ProsodyFixture.Configuration(
        components: [.init(hostname: "echo.localhost", secret: "echo-secret")],
        accounts: [Interop.alice, Interop.bob],
        directTLSPort: true)

    @Test("two c2s accounts log in (STARTTLS, SCRAM, bind) and exchange messages")
    func messages() async throws {
        let prosody = try await ProsodyFixture.start(Self.configuration)
        defer { prosody.stop() }
        print("Prosody started in \(prosody.lastStartupDuration)")
        let mechanisms = try await Interop.exchangeMessages(
            port: prosody.c2sPort, domain: prosody.domain, caFile: prosody.caCertificatePath)
        #expect(mechanisms.allSatisfy { $0.hasPrefix("SCRAM-SHA-1") }, "\(mechanisms)")
    }

    @Test("XEP-0114 handshake: plain component port and direct TLS (ssl_ports)")
    func componentHandshake() async throws {
        let prosody = try await ProsodyFixture.start(Self.configuration)
        defer { prosody.stop() }
        try await Interop.checkHandshake(port: prosody.componentPort, hostname: "echo.localhost", secret: "echo-secret")
        let tlsPort = try #require(prosody.directTLSPort)
        try await Interop.checkHandshake(
            port: tlsPort, hostname: "echo.localhost", secret: "echo-secret",
            tls: .init(caFile: prosody.caCertificatePath, serverName: "echo.localhost"))
        // For an unknown hostname Prosody 0.12 sends a header with id='' followed by a
        // host-unknown stream error. The state machine currently stops at the empty id
        // (invalidStreamHeader) before it sees the stream error; either outcome is a refusal.
        await #expect {
            _ = try await ComponentHandshake.run(port: prosody.componentPort, hostname: "nope.localhost", secret: "x")
        } throws: { error in
            guard let error = error as? NegotiationError else { return false }
            return error.kind == .invalidStreamHeader || error.streamError?.condition == .hostUnknown
        }
    }

    @Test("restart keeps ports and accounts; stop leaves no process")
    func restartAndStop() async throws {
        let prosody = try await ProsodyFixture.start(
            .init(components: [.init(hostname: "echo.localhost", secret: "s")], accounts: [Interop.alice]))
        defer { prosody.stop() }  // when a try or #require below throws (stop() is idempotent)
        let ports = [prosody.c2sPort, prosody.componentPort]
        let first = prosody.processIdentities()
        #expect(first.count == 1 && first.first?.pid == prosody.pid, "\(first)")
        try await prosody.register(username: "carol", password: "carol-pw")

        try await prosody.restart()
        Interop.expectAllGone(first, "Prosody (first run)")
        #expect([prosody.c2sPort, prosody.componentPort] == ports)
        #expect(ports.allSatisfy(FreePort.isAccepting))
        let second = prosody.processIdentities()
        #expect(second != first)
        for account in [ProsodyFixture.Account(username: "carol", password: "carol-pw"), Interop.alice] {
            let client = try await C2SClient.connect(
                .init(
                    port: prosody.c2sPort, domain: prosody.domain, username: account.username,
                    password: account.password, caFile: prosody.caCertificatePath))
            await client.close()
        }

        prosody.stop()
        Interop.expectAllGone(second, "Prosody")
        #expect(prosody.pid == nil)
        #expect(!ports.contains(where: FreePort.isAccepting))
        #expect(prosody.log.contains("Shutdown"))
    }

    @Test("a wrong password fails with a clear SASL error")
    func wrongPassword() async throws {
        let prosody = try await ProsodyFixture.start(.init(accounts: [Interop.alice]))
        defer { prosody.stop() }
        await #expect {
            _ = try await C2SClient.connect(
                .init(
                    port: prosody.c2sPort, domain: prosody.domain, username: "alice", password: "wrong",
                    caFile: prosody.caCertificatePath))
        } throws: { error in
            guard let error = error as? C2SClientError else { return false }
            return error.kind == .authenticationFailed && error.message.contains("not-authorized")
        }
    }
}

@Suite("Prosody fixture configuration")
struct ProsodyFixtureConfigurationTests {
    @Test("plugin_paths, extra modules and extra config lines reach Prosody")
    func pluginPaths() async throws {
        let plugins = try TemporaryDirectory(prefix: "prosody-plugins")
        try """
        local greeting = module:get_option_string("testsupport_greeting", "none");
        module:log("info", "testsupport probe loaded: %s", greeting);
        """.write(toFile: plugins.path("mod_testsupport_probe.lua"), atomically: true, encoding: .utf8)
        let prosody = try await ProsodyFixture.start(
            .init(
                pluginPaths: [plugins.path], extraModules: ["testsupport_probe"],
                extraGlobalLines: ["testsupport_greeting = \"hello from the fixture\""]))
        defer { prosody.stop() }
        // Prosody may open the c2s port before it has loaded (and logged) the last global module.
        let deadline = ContinuousClock.now + .seconds(5)
        while !prosody.log.contains("testsupport probe loaded"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(prosody.log.contains("testsupport probe loaded: hello from the fixture"), "\(prosody.log.suffix(2000))")
    }

    @Test("a server that cannot start fails with its log tail, and leaves no process")
    func startupFailure() async throws {
        let error = await #expect(throws: TestSupportError.self) {
            _ = try await ProsodyFixture.start(.init(extraGlobalLines: ["this is not lua ="], startupTimeout: .seconds(5)))
        }
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text.contains("Prosody exited with status"), "\(text)")
        #expect(text.contains("prosody.cfg.lua"), "the message should carry Prosody's own complaint: \(text)")
    }
}
