import Foundation
import Testing
import XMPPCore

@testable import XMPPSASL

/// Issue #13 items 2 (SCRAM iteration floor) and 4 (channel binding can be required), with
/// the real Cyrus client against the real Cyrus server.
@Suite struct SASLHardeningTests {
    @Test func defaultClientRefusesAServerBelow4096Iterations() throws {
        let server = try makeServer(.tls13(), mechanisms: ["SCRAM-SHA-256"], iterations: 1024)
        var configuration = SASLClient.Configuration(
            authenticationIdentity: Account.user, password: Account.password, serverFQDN: "example.com")
        #expect(configuration.minimumIterationCount == 4096)
        configuration.allowedMechanisms = nil
        let client = try SASLClient(configuration: configuration, transport: .tls13())
        let result = try exchange(client: client, server: server)
        guard case .failure(let error) = result.clientOutcome else {
            Issue.record("the client accepted i=1024")
            return
        }
        #expect(error.description.contains("iteration"), "\(error)")
        #expect(error.description.contains("1024"), "\(error)")
        #expect(!error.description.contains(Account.password))
        #expect(client.connectionForTesting?.context.secret == nil, "password buffer wiped after the refusal")
    }

    @Test func aForgedIterationCountOfOneIsRefused() throws {
        let server = try makeServer(.tls13(), mechanisms: ["SCRAM-SHA-256"])
        let client = try makeClient(.tls13())
        // A fake server (here: a man in the middle) lowers i= so the proof is cheap to brute-force.
        let result = try exchange(
            client: client, server: server,
            tamperServer: { element in
                guard element.name.localName == "challenge",
                    let bytes = SASLTestBase64.decode(element.text)
                else { return element }
                let text = String(decoding: bytes, as: UTF8.self)
                    .replacingOccurrences(of: ",i=\(Account.iterations)", with: ",i=1")
                return Element("challenge", namespace: Namespace.sasl, text: SASLTestBase64.encode(Array(text.utf8)))
            })
        guard case .failure(let error) = result.clientOutcome else {
            Issue.record("the client answered a challenge with i=1")
            return
        }
        #expect(error.description.contains("iteration"), "\(error)")
    }

    @Test func requiredChannelBindingRefusesAServerWithoutPlus() throws {
        let bindings = try OpenSSLFixture.bindings()
        // The server has no binding data, so it offers no -PLUS mechanism.
        let server = try makeServer(.tls13(), mechanisms: ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
        let client = try makeClient(.tls13([.tlsExporter: bindings.clientExporter]), requireChannelBinding: true)
        let error = #expect(throws: SASLError.self) { try client.start(features: features(of: server)) }
        #expect(error?.kind == .noAcceptableMechanism)
        #expect(error?.description.contains("channel binding") == true, "\(String(describing: error))")
    }

    @Test func requiredChannelBindingRefusesAnUnsupportedBindingType() throws {
        let bindings = try OpenSSLFixture.bindings()
        let client = try makeClient(.tls13([.tlsExporter: bindings.clientExporter]), requireChannelBinding: true)
        let offer = features(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], bindingTypes: ["tls-unique"])
        #expect(throws: SASLError.self) { try client.start(features: offer) }
    }

    @Test func requiredChannelBindingSucceedsWithPlus() throws {
        let bindings = try OpenSSLFixture.bindings()
        let server = try makeServer(.tls13([.tlsExporter: bindings.serverExporter]), mechanisms: ["SCRAM-SHA-256"])
        let client = try makeClient(.tls13([.tlsExporter: bindings.clientExporter]), requireChannelBinding: true)
        let result = try exchange(client: client, server: server)
        #expect(try result.clientOutcome.get() == SASLOutcome(mechanism: "SCRAM-SHA-256-PLUS", channelBinding: .tlsExporter))
    }
}

extension SASLHardeningTests {
    @Test func anAbsurdIterationCountIsRefusedBeforeAnyWork() throws {
        let server = try makeServer(.tls13(), mechanisms: ["SCRAM-SHA-256"])
        let client = try makeClient(.tls13())
        let result = try exchange(
            client: client, server: server,
            tamperServer: { element in
                guard element.name.localName == "challenge", let bytes = SASLTestBase64.decode(element.text) else {
                    return element
                }
                let text = String(decoding: bytes, as: UTF8.self)
                    .replacingOccurrences(of: ",i=\(Account.iterations)", with: ",i=2000000000")
                return Element("challenge", namespace: Namespace.sasl, text: SASLTestBase64.encode(Array(text.utf8)))
            })
        guard case .failure(let error) = result.clientOutcome else {
            Issue.record("the client accepted i=2000000000")
            return
        }
        #expect(error.kind == .weakServerParameters)
        #expect(error.description.contains("at most 1000000"), "\(error)")
    }
}
