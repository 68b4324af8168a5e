import Foundation
import Testing
import XMPPCore
import XMPPSASL
import XMPPTLS
import XMPPTestSupport

/// An independent SCRAM server for the SDK's `SASLClient`: ejabberd 23.01's c2s port (its own
/// Erlang SCRAM, no Cyrus). With TLS 1.2 it offers the `-PLUS` mechanisms, without XEP-0440;
/// which channel bindings it accepts is pinned here, each from a real TLS session.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EjabberdClientPortPeerTests {
    static let password = "alice-pass-9"

    private func connect(
        _ ejabberd: EjabberdFixture, tls: TLSVersion, bindings: Set<SASLChannelBindingType>?, plus: Bool = true
    ) async throws -> C2SClient {
        try await C2SClient.connect(
            .init(
                port: ejabberd.c2sPort, domain: "localhost", username: "alice", password: Self.password,
                caFile: ejabberd.caCertificatePath, allowsChannelBinding: plus, channelBindingTypes: bindings,
                maximumTLSVersion: tls, timeout: .seconds(20)))
    }

    /// A message to herself comes back: the session is really up.
    private func roundTrip(_ client: C2SClient, id: String) async throws {
        try await client.send(Message(type: .chat, to: client.jid, id: id, body: "hello").element)
        let back = try await client.next(timeout: .seconds(10)) { $0.name.localName == "message" && $0["id"] == id }
        #expect(Message(back)?.body == "hello")
    }

    /// Measured with Debian's 23.01: on TLS 1.2 it verifies `tls-unique` and refuses
    /// `tls-server-end-point` ("Invalid channel binding"); on TLS 1.3 it refuses `tls-exporter`
    /// and `tls-server-end-point` alike. Without XEP-0440 the SDK itself uses no `-PLUS` on
    /// TLS 1.2 (plain SCRAM-SHA-256), so the accepted binding is advertised to the SDK's
    /// SASL client by the test (``C2SClient/Configuration/channelBindingTypes``).
    @Test func scramPlusChannelBindingsAgainstEjabberd() async throws {
        let ejabberd = try await EjabberdFixture.start(
            .init(domain: "localhost", accounts: [.init(username: "alice", password: Self.password)]))
        defer { ejabberd.stop() }

        // TLS 1.2, tls-unique (RFC 5929 §3): the first Finished message of this very session,
        // as OpenSSL reports it on our side; ejabberd computes its own from its side.
        let unique = try await self.connect(ejabberd, tls: .v1_2, bindings: [.tlsUnique])
        #expect(unique.session.tls.version == .v1_2)
        #expect(unique.session.tls.tlsUnique?.count == 12, "tls-unique is the 12-byte Finished verify_data")
        #expect(unique.session.mechanism == "SCRAM-SHA-256-PLUS")
        #expect(unique.session.channelBinding == .tlsUnique)
        try await self.roundTrip(unique, id: "unique")
        await unique.close()

        // The bindings ejabberd refuses: the SDK reports the server's own reason.
        for (tls, type) in [
            (TLSVersion.v1_2, SASLChannelBindingType.tlsServerEndPoint), (.v1_3, .tlsExporter), (.v1_3, .tlsServerEndPoint),
        ] {
            let error = await #expect(throws: C2SClientError.self, "\(tls) \(type)") {
                try await self.connect(ejabberd, tls: tls, bindings: [type])
            }
            #expect(error?.kind == .authenticationFailed, "\(tls) \(type): \(String(describing: error))")
            #expect(error?.description.contains("SCRAM-SHA-256-PLUS") == true, "\(tls) \(type): \(String(describing: error))")
            #expect(
                error?.description.contains("Invalid channel binding") == true, "\(tls) \(type): \(String(describing: error))")
        }

        // Left to itself on TLS 1.2 (no XEP-0440 from the server), the SDK does not use -PLUS.
        let chosen = try await self.connect(ejabberd, tls: .v1_2, bindings: nil)
        #expect(chosen.session.mechanism == "SCRAM-SHA-256")
        #expect(chosen.session.channelBinding == nil)
        try await self.roundTrip(chosen, id: "chosen")
        await chosen.close()
    }
}
