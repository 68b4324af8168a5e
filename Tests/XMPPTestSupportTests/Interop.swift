import Foundation
import Testing
import XMPPCore
import XMPPStream
import XMPPTestSupport

/// Checks shared by the Prosody and ejabberd suites.
enum Interop {
    static let alice = ProsodyFixture.Account(username: "alice", password: "alice-pw-1")
    static let bob = ProsodyFixture.Account(username: "bob", password: "bob-pw-2")

    /// Logs two accounts in and exchanges a message each way, plus an IQ ping to the server.
    static func exchangeMessages(
        port: Int, domain: String, caFile: String, allowsChannelBinding: Bool = true
    ) async throws -> [String] {
        func configuration(_ account: ProsodyFixture.Account, resource: String) -> C2SClient.Configuration {
            .init(
                port: port, domain: domain, username: account.username, password: account.password, resource: resource,
                caFile: caFile, allowsChannelBinding: allowsChannelBinding)
        }
        let a = try await C2SClient.connect(configuration(alice, resource: "laptop"))
        let b = try await C2SClient.connect(configuration(bob, resource: "phone"))
        #expect(a.jid.description == "alice@\(domain)/laptop")
        #expect(b.jid.bare.description == "bob@\(domain)")

        try await a.send(Message(type: .chat, to: b.jid, id: "m1", body: "hello bob").element)
        let received = try await b.next(timeout: .seconds(5)) { $0.name.localName == "message" }
        #expect(Message(received)?.body == "hello bob")
        #expect(received["from"] == a.jid.description)

        try await b.send(Message(type: .chat, to: a.jid, id: "m2", body: "hi alice").element)
        let reply = try await a.next(timeout: .seconds(5)) { $0.name.localName == "message" }
        #expect(Message(reply)?.body == "hi alice")

        let pong = try await a.request(
            IQ(type: .get, to: try JID(domain), id: "", payload: Element("ping", namespace: Namespace.ping)))
        #expect(pong.type == .result)

        await a.close()
        await b.close()
        return [a.session.mechanism, b.session.mechanism]
    }

    /// The right secret negotiates; a wrong one is refused with `not-authorized`.
    static func checkHandshake(
        port: Int, hostname: String, secret: String, tls: ComponentHandshake.DirectTLS? = nil
    ) async throws {
        let id = try await ComponentHandshake.run(port: port, hostname: hostname, secret: secret, tls: tls)
        #expect(id?.isEmpty == false)
        await #expect {
            _ = try await ComponentHandshake.run(port: port, hostname: hostname, secret: secret + "-wrong", tls: tls)
        } throws: { error in
            guard let error = error as? NegotiationError else { return false }
            return error.kind == .handshakeRejected && error.streamError?.condition == .notAuthorized
        }
    }

    /// No process of the run is alive (zombies count as gone: they hold no port or file).
    static func expectAllGone(_ identities: [ProcessTree.Identity], _ server: String) {
        #expect(!identities.isEmpty)
        for identity in identities {
            #expect(!ProcessTree.isAlive(identity), "\(server): \(identity) is still running")
        }
    }
}
