import Testing
import XMPPCore

@testable import XMPPSASL

@Suite struct SASLServerTests {
    static let exporter = (0..<32).map { UInt8($0) }

    func auth(_ mechanism: String, _ payload: String?) -> Element {
        Element(
            "auth",
            namespace: Namespace.sasl,
            attributes: ["mechanism": mechanism],
            text: payload.map { $0.isEmpty ? "=" : SASLTestBase64.encode(Array($0.utf8)) }
        )
    }

    func expectFailure(_ step: SASLServerStep, _ kind: SASLError.Kind, sourceLocation: SourceLocation = #_sourceLocation) {
        guard case .failure(let element, let error) = step else {
            Issue.record("expected a failure, got \(step)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.kind == kind, sourceLocation: sourceLocation)
        #expect(element.name == QualifiedName(Namespace.sasl, "failure"), sourceLocation: sourceLocation)
        #expect(element.elements.first?.name.localName == kind.condition, sourceLocation: sourceLocation)
    }

    @Test func advertisedMechanisms() throws {
        let withBinding = try makeServer(.tls13([.tlsExporter: Self.exporter]))
        #expect(withBinding.mechanisms == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
        #expect(
            withBinding.mechanismsElement.children("mechanism", namespace: Namespace.sasl).map(\.text) == withBinding.mechanisms)
        #expect(
            withBinding.channelBindingElement?.firstChild("channel-binding", namespace: Namespace.saslChannelBinding)?["type"]
                == "tls-exporter")

        let tls = try makeServer(.tls13())
        #expect(tls.mechanisms == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
        #expect(tls.channelBindingElement == nil)

        // No TLS: no PLAIN, and binding data is ignored.
        let plaintext = try makeServer(
            SASLTransportSecurity(isTLSActive: false, isTLS13: false, channelBindings: [.tlsExporter: Self.exporter]))
        #expect(plaintext.mechanisms == ["SCRAM-SHA-256", "SCRAM-SHA-1"])

        // tls-exporter below TLS 1.3 is not used.
        let tls12 = try makeServer(.tls12([.tlsExporter: Self.exporter]))
        #expect(tls12.channelBindingType == nil)
        #expect(!tls12.mechanisms.contains("SCRAM-SHA-256-PLUS"))

        // mech_list keeps Cyrus' other plugins out; EXTERNAL only with an external identity.
        let external = try makeServer(.tls13(), mechanisms: ["SCRAM-SHA-256"], externalIdentity: "x.example.com")
        #expect(external.mechanisms == ["EXTERNAL", "SCRAM-SHA-256"])
    }

    @Test func plainWithoutTLSIsEncryptionRequired() throws {
        let server = try makeServer(.plaintext)
        #expect(!server.mechanisms.contains("PLAIN"))
        expectFailure(server.start(auth: auth("PLAIN", "\0component.example.com\0\(Account.password)")), .encryptionRequired)
    }

    @Test func plainWithoutTLSIsRefusedByOurClient() throws {
        let client = try makeClient(.plaintext)
        let error = #expect(throws: SASLError.self) { try client.start(features: features(["PLAIN"])) }
        #expect(error?.kind == .noAcceptableMechanism)
        #expect(error?.detail?.contains("PLAIN refused without TLS") == true)
    }

    @Test func unofferedMechanismIsInvalid() throws {
        let server = try makeServer(.tls13())
        expectFailure(server.start(auth: auth("DIGEST-MD5", nil)), .invalidMechanism)
        expectFailure(
            try makeServer(.tls13()).start(auth: auth("SCRAM-SHA-256-PLUS", "p=tls-exporter,,n=a,r=b")), .invalidMechanism)
        expectFailure(try makeServer(.tls13()).start(auth: Element("auth", namespace: Namespace.sasl)), .invalidMechanism)
    }

    @Test func malformedBase64IsIncorrectEncoding() throws {
        let server = try makeServer(.tls13())
        let step = server.start(
            auth: Element("auth", namespace: Namespace.sasl, attributes: ["mechanism": "SCRAM-SHA-256"], text: "bi*sbj1h"))
        expectFailure(step, .incorrectEncoding)

        // In a response too.
        let second = try makeServer(.tls13())
        guard case .challenge = second.start(auth: auth("SCRAM-SHA-256", nil)) else {
            Issue.record("expected an empty challenge")
            return
        }
        expectFailure(second.receive(response: Element("response", namespace: Namespace.sasl, text: "%%%")), .incorrectEncoding)
    }

    @Test func abortIsAborted() throws {
        let server = try makeServer(.tls13())
        let client = try makeClient(.tls13())
        guard case .challenge = server.start(auth: try client.start(features: features(of: server))) else {
            Issue.record("expected a challenge")
            return
        }
        expectFailure(server.receive(response: Element("abort", namespace: Namespace.sasl)), .aborted)
        // After the end, anything is malformed.
        expectFailure(server.receive(response: Element("response", namespace: Namespace.sasl)), .malformedRequest)
    }

    @Test func abortBeforeAuthIsAborted() throws {
        expectFailure(try makeServer(.tls13()).start(auth: Element("abort", namespace: Namespace.sasl)), .aborted)
    }

    @Test func channelBindingFlagWithANonPlusMechanismIsRefused() throws {
        let bindings = try OpenSSLFixture.bindings()
        let server = try makeServer(.tls13([.tlsExporter: bindings.serverExporter]))
        let client = try makeClient(.tls13([.tlsExporter: bindings.clientExporter]))
        // The client binds (p=tls-exporter) but the name loses its -PLUS on the way.
        let result = try exchange(
            client: client, server: server,
            tamperAuth: { auth in
                var renamed = auth
                renamed["mechanism"] = "SCRAM-SHA-256"
                return renamed
            })
        #expect(initialResponse(result.auth).hasPrefix("p=tls-exporter,"))
        #expect(result.serverError?.kind == .malformedRequest)
        #expect(result.serverError?.detail?.contains("not a -PLUS mechanism") == true)
        #expect(result.clientOutcome.failureKind == .malformedRequest)
    }

    @Test(arguments: ["n,,n=component.example.com,r=abcdef", "y,,n=component.example.com,r=abcdef"])
    func plusMechanismWithoutChannelBindingIsRefused(clientFirst: String) throws {
        let server = try makeServer(.tls13([.tlsExporter: Self.exporter]))
        let step = server.start(auth: auth("SCRAM-SHA-256-PLUS", clientFirst))
        expectFailure(step, .malformedRequest)
        if case .failure(_, let error) = step {
            #expect(error.detail?.contains("requires channel binding") == true)
        }
    }

    @Test func gs2CheckAlsoAppliesWhenTheClientFirstMessageComesAsAResponse() throws {
        let server = try makeServer(.tls13([.tlsExporter: Self.exporter]))
        guard case .challenge(let challenge) = server.start(auth: auth("SCRAM-SHA-256-PLUS", nil)) else {
            Issue.record("expected an empty challenge")
            return
        }
        #expect(challenge.text.isEmpty)
        let response = Element("response", namespace: Namespace.sasl, text: SASLTestBase64.encode(Array("n,,n=a,r=b".utf8)))
        expectFailure(server.receive(response: response), .malformedRequest)
    }

    @Test func scramWithoutInitialResponseWorks() throws {
        // A client that sends <auth/> without data gets an empty challenge, then sends client-first.
        let server = try makeServer(.tls13())
        let client = try makeClient(.tls13())
        let realAuth = try client.start(features: features(of: server))
        guard
            case .challenge = server.start(
                auth: Element("auth", namespace: Namespace.sasl, attributes: ["mechanism": "SCRAM-SHA-256"]))
        else {
            Issue.record("expected an empty challenge")
            return
        }
        var step = server.receive(response: Element("response", namespace: Namespace.sasl, text: realAuth.text))
        for _ in 0..<4 {
            switch step {
            case .challenge(let challenge):
                guard case .send(let response) = try client.receive(challenge) else {
                    Issue.record("client finished early")
                    return
                }
                step = server.receive(response: response)
            case .success(let success, let identity):
                #expect(identity == Account.user)
                #expect(try client.receive(success) == .succeeded(SASLOutcome(mechanism: "SCRAM-SHA-256", channelBinding: nil)))
                return
            case .failure(_, let error):
                Issue.record("unexpected failure \(error)")
                return
            }
        }
        Issue.record("no success")
    }

    @Test func authAfterStartIsMalformed() throws {
        let server = try makeServer(.tls13())
        _ = server.start(auth: auth("SCRAM-SHA-256", nil))
        expectFailure(server.start(auth: auth("SCRAM-SHA-256", nil)), .malformedRequest)
    }
}
