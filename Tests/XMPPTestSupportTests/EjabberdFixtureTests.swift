import Foundation
import Testing
import XMPPCore
import XMPPStream
import XMPPTestSupport

@Suite("ejabberd fixture", .serialized, .timeLimit(.minutes(4)))
struct EjabberdFixtureTests {
    static let configuration = EjabberdFixture.Configuration(
        services: [.init(hostname: "echo.localhost", password: "echo-secret")],
        plainServices: [.init(hostname: "plain.localhost", password: "plain-secret")],
        accounts: [Interop.alice, Interop.bob])

    @Test("c2s messages and XEP-0114 handshakes (direct TLS verified against the fixture CA, and plain)")
    func messagesAndHandshakes() async throws {
        let began = ContinuousClock.now
        let ejabberd = try await EjabberdFixture.start(Self.configuration)
        print("ejabberd: start() took \(ContinuousClock.now - began), listeners up \(ejabberd.lastStartupDuration) after launch")
        defer {
            let stopping = ContinuousClock.now
            ejabberd.stop()
            print("ejabberd: stop() took \(ContinuousClock.now - stopping)")
        }
        let mechanisms = try await Interop.exchangeMessages(
            port: ejabberd.c2sPort, domain: ejabberd.domain, caFile: ejabberd.caCertificatePath,
            // ejabberd 23.01 offers SCRAM-*-PLUS on TLS 1.3 but rejects tls-exporter.
            allowsChannelBinding: false)
        #expect(mechanisms.allSatisfy { $0.hasPrefix("SCRAM-") }, "\(mechanisms)")

        try await Interop.checkHandshake(
            port: ejabberd.componentTLSPort, hostname: "echo.localhost", secret: "echo-secret",
            tls: .init(caFile: ejabberd.caCertificatePath, serverName: "echo.localhost"))
        let plainPort = try #require(ejabberd.componentPlainPort)
        try await Interop.checkHandshake(port: plainPort, hostname: "plain.localhost", secret: "plain-secret")
    }

    @Test("restart keeps ports and accounts; stop leaves no beam, epmd or ejabberdctl process")
    func restartAndStop() async throws {
        let ejabberd = try await EjabberdFixture.start(.init(accounts: [Interop.alice]))
        defer { ejabberd.stop() }  // when a try or #require below throws (stop() is idempotent)
        print("ejabberd started in \(ejabberd.lastStartupDuration)")
        let ports = [ejabberd.c2sPort, ejabberd.componentTLSPort, ejabberd.distributionPort]
        let first = ejabberd.processIdentities()
        #expect(first.contains { $0.command == "beam.smp" }, "\(first)")
        #expect(!first.contains { $0.command == "epmd" }, "\(first)")
        #expect(ejabberd.beamPID == first.first { $0.command == "beam.smp" }?.pid)

        try await ejabberd.restart()
        print("ejabberd restarted in \(ejabberd.lastStartupDuration)")
        Interop.expectAllGone(first, "ejabberd (first run)")
        #expect([ejabberd.c2sPort, ejabberd.componentTLSPort, ejabberd.distributionPort] == ports)
        #expect(ports.allSatisfy(FreePort.isAccepting))
        let users = try await ejabberd.ctl(["registered_users", ejabberd.domain])
        #expect(users.output.contains("alice"), "\(users)")
        let client = try await C2SClient.connect(
            .init(
                port: ejabberd.c2sPort, domain: ejabberd.domain, username: Interop.alice.username,
                password: Interop.alice.password, caFile: ejabberd.caCertificatePath, allowsChannelBinding: false))
        await client.close()

        let second = ejabberd.processIdentities()
        ejabberd.stop()
        Interop.expectAllGone(second, "ejabberd")
        #expect(!second.contains { $0.command == "epmd" }, "\(second)")
        #expect(!ports.contains(where: FreePort.isAccepting))
        #expect(ejabberd.log.contains("is stopped"))
    }
}
