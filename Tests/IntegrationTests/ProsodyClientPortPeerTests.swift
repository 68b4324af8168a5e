import ComponentKit
import EchoComponent
import Foundation
import Testing
import XMPPCore
import XMPPStream
import XMPPTLS
import XMPPTestSupport

/// An independent peer for the SDK's XEP-0225 negotiation (issue 4): Prosody's **client**
/// port, without any component module. STARTTLS (verified against the generated CA) and SCRAM
/// must succeed against a real server implementation; the server then offers no
/// `urn:xmpp:component:0`, which the SDK must report as ``NegotiationError/Kind/noComponentBinding``.
///
/// The SASL identity is a c2s account whose localpart looks like a domain
/// (`component.localhost`, so the JID is `component.localhost@localhost`): Prosody
/// authenticates localparts at a VirtualHost, and the SDK sends its identity as the authcid.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ProsodyClientPortPeerTests {
    static let identity = "component.localhost"
    static let password = "peer-password-7"

    private func configuration(_ prosody: ProsodyFixture, mode: ComponentConfiguration.ProtocolMode) -> ComponentConfiguration {
        var configuration = ComponentConfiguration(
            host: "127.0.0.1", port: prosody.c2sPort, serverDomain: "localhost", identity: Self.identity,
            password: Secret(Self.password))
        configuration.protocolMode = mode
        configuration.tlsMode = .startTLS
        configuration.trustRoots = .caFile(prosody.caCertificatePath)
        configuration.saslMechanisms = ["SCRAM-SHA-1"]
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(50), maxAttempts: 1)
        return configuration
    }

    private func startProsody() async throws -> ProsodyFixture {
        try await ProsodyFixture.start(
            .init(domain: "localhost", accounts: [.init(username: Self.identity, password: Self.password)]))
    }

    @Test(arguments: [ComponentConfiguration.ProtocolMode.xep0225, .auto])
    func clientPortAuthenticatesThenReportsNoComponentBinding(mode: ComponentConfiguration.ProtocolMode) async throws {
        let prosody = try await self.startProsody()
        defer { prosody.stop() }
        let connection = ComponentConnection(
            configuration: self.configuration(prosody, mode: mode), logger: testLogger("peer-\(mode.rawValue)"))
        let events = EventRecorder(connection)
        try connection.register("echo.localhost", handler: EchoComponent())
        let error = await #expect(throws: NegotiationError.self) { try await connection.run() }
        // The error exists only after the authenticated stream restart: TLS and SCRAM succeeded.
        #expect(error?.kind == .noComponentBinding)
        let description = error?.description ?? ""
        #expect(description.contains("authenticated, but the server offers no XEP-0225 component binding (urn:xmpp:component:0)"))
        // It names what the server offered instead (resource binding: a client port).
        #expect(description.contains("urn:ietf:params:xml:ns:xmpp-bind"))
        #expect(!description.contains(Self.password))
        // STARTTLS was offered, so auto never falls back to XEP-0114 here.
        #expect(!events.all.contains { $0.kind == .fellBackToLegacy })
        #expect(!events.all.contains { $0.kind == .bound })
        // Prosody's own log confirms the authentication of the account (sessionmanager, info).
        #expect(prosody.log.contains("Authenticated as \(Self.identity)@localhost"))

        // A wrong password fails earlier, at SASL: the difference shows SASL really ran.
        var wrong = self.configuration(prosody, mode: mode)
        wrong.password = Secret("wrong-password")
        let rejected = ComponentConnection(configuration: wrong, logger: testLogger("peer-wrong-\(mode.rawValue)"))
        let failure = await #expect(throws: NegotiationError.self) { try await rejected.run() }
        #expect(failure?.kind == .authenticationFailed)
        #expect(failure?.description.contains("not-authorized") == true)
    }
}
