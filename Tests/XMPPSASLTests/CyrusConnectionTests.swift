import Testing
import XMPPCore

@testable import XMPPSASL

/// Facts about Cyrus that the module relies on, checked directly.
@Suite(.timeLimit(.minutes(1))) struct CyrusConnectionTests {
    func rawServer(mechList: String?) throws -> CyrusConnection {
        var options = ["sasldb_path": Account.sasldbPath]
        options["mech_list"] = mechList
        return try CyrusConnection.server(
            service: "xmpp",
            serverFQDN: "example.com",
            realm: Account.realm,
            context: CyrusCallbackContext(options: options)
        )
    }

    @Test func mechListIsHonouredPerConnection() throws {
        let narrow = try self.rawServer(mechList: "SCRAM-SHA-1")
        let wide = try self.rawServer(mechList: "SCRAM-SHA-256 PLAIN")
        let unfiltered = try self.rawServer(mechList: nil)
        #expect(try narrow.listMechanisms() == ["SCRAM-SHA-1"])
        #expect(Set(try wide.listMechanisms()) == ["SCRAM-SHA-256", "PLAIN"])
        // Without mech_list Cyrus offers every plugin it has, which is why SASLServer always sets it.
        let all = Set(try unfiltered.listMechanisms())
        #expect(all.isSuperset(of: ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"]))
        #expect(all.count > 3)
    }

    @Test func channelBindingAddsPlusVariants() throws {
        let server = try self.rawServer(mechList: "SCRAM-SHA-256")
        try server.setChannelBinding(.tlsExporter, data: [UInt8](repeating: 7, count: 32))
        #expect(Set(try server.listMechanisms()) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
    }

    @Test func clientStartReturnsTheNameWithoutPlusButBindsWithP() throws {
        let context = CyrusCallbackContext()
        context.setNames(authentication: "a.example.com", authorization: nil)
        context.setPassword("pw")
        let client = try CyrusConnection.client(service: "xmpp", serverFQDN: "example.com", context: context)
        try client.setChannelBinding(.tlsExporter, data: [UInt8](repeating: 7, count: 32))
        guard case .continue(let output?) = client.clientStart(mechanisms: "SCRAM-SHA-256-PLUS") else {
            Issue.record("expected SASL_CONTINUE with output")
            return
        }
        #expect(String(decoding: output, as: UTF8.self).hasPrefix("p=tls-exporter,,n=a.example.com,r="))
    }

    @Test func passwordBufferLayoutAndWipe() throws {
        let context = CyrusCallbackContext()
        context.setPassword("pässword")
        let secret = try #require(context.secret)
        #expect(secret.load(as: UInt.self) == UInt("pässword".utf8.count))
        context.wipePassword()
        #expect(context.secret == nil)
    }

    @Test func manyConcurrentExchanges() async throws {
        try await withThrowingTaskGroup(of: String?.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    let server = try makeServer(.tls13())
                    let client = try makeClient(.tls13())
                    return try exchange(client: client, server: server).serverIdentity
                }
            }
            var identities: [String?] = []
            for try await identity in group {
                identities.append(identity)
            }
            #expect(identities == Array(repeating: Account.user, count: 8))
        }
    }
}
