import Testing
import XMPPCore

@testable import XMPPSASL

@Suite struct SASLClientTests {
    static let exporter = [UInt8](repeating: 0xA5, count: 32)
    static let endPoint = [UInt8](repeating: 0x5A, count: 32)

    struct PreferenceCase: CustomTestStringConvertible, Sendable {
        var offered: [String]
        var bindingTypes: [String]?
        var transport: SASLTransportSecurity
        var allowed: [String]?
        var certificate: Bool = false
        var password: Bool = true
        /// The expected mechanism, or nil for "no acceptable mechanism".
        var expected: String?
        var expectedFlag: String?
        var testDescription: String { "\(self.offered) -> \(self.expected ?? "none")" }
    }

    static let all = ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "EXTERNAL"]
    static let tls13Exporter = SASLTransportSecurity.tls13([.tlsExporter: exporter])

    static let preferenceCases: [PreferenceCase] = [
        // Everything offered, TLS 1.3 with exporter data: the best -PLUS.
        .init(offered: all, transport: tls13Exporter, expected: "SCRAM-SHA-256-PLUS", expectedFlag: "p=tls-exporter,"),
        .init(
            offered: ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "PLAIN"], transport: tls13Exporter,
            expected: "SCRAM-SHA-1-PLUS", expectedFlag: "p=tls-exporter,"),
        // Server order does not matter.
        .init(
            offered: ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"], transport: .tls13(), expected: "SCRAM-SHA-256",
            expectedFlag: "n,"),
        .init(offered: ["PLAIN", "SCRAM-SHA-1"], transport: .tls13(), expected: "SCRAM-SHA-1", expectedFlag: "n,"),
        .init(offered: ["PLAIN"], transport: .tls13(), expected: "PLAIN"),
        // -PLUS offered but no binding data: plain SCRAM with "n" (the server does support binding).
        .init(
            offered: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], transport: .tls13(), expected: "SCRAM-SHA-256",
            expectedFlag: "n,"),
        // TLS 1.2 without XEP-0440: no tls-exporter, no -PLUS.
        .init(
            offered: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], transport: .tls12([.tlsExporter: exporter]),
            expected: "SCRAM-SHA-256", expectedFlag: "n,"),
        // XEP-0440 decides the type: first server type we have data for.
        .init(
            offered: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], bindingTypes: ["tls-unique", "tls-server-end-point"],
            transport: .tls13([.tlsExporter: exporter, .tlsServerEndPoint: endPoint]),
            expected: "SCRAM-SHA-256-PLUS", expectedFlag: "p=tls-server-end-point,"),
        .init(
            offered: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], bindingTypes: ["tls-exporter", "tls-server-end-point"],
            transport: .tls13([.tlsExporter: exporter, .tlsServerEndPoint: endPoint]),
            expected: "SCRAM-SHA-256-PLUS", expectedFlag: "p=tls-exporter,"),
        // XEP-0440 types we have no data for: no -PLUS, and "n" because the server offers -PLUS.
        .init(
            offered: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], bindingTypes: ["tls-server-end-point"],
            transport: tls13Exporter, expected: "SCRAM-SHA-256", expectedFlag: "n,"),
        // Binding data, no -PLUS offered: "y" (downgrade protection).
        .init(
            offered: ["SCRAM-SHA-256", "SCRAM-SHA-1"], transport: tls13Exporter, expected: "SCRAM-SHA-256",
            expectedFlag: "y,"),
        .init(offered: ["SCRAM-SHA-1"], transport: tls13Exporter, expected: "SCRAM-SHA-1", expectedFlag: "y,"),
        // Allowed list restricts.
        .init(
            offered: all, transport: tls13Exporter, allowed: ["scram-sha-1"], expected: "SCRAM-SHA-1",
            expectedFlag: "n,"),
        // EXTERNAL first with a client certificate.
        .init(offered: all, transport: tls13Exporter, certificate: true, expected: "EXTERNAL"),
        .init(
            offered: ["SCRAM-SHA-256", "EXTERNAL"], transport: .tls13(), certificate: true, password: false,
            expected: "EXTERNAL"),
        // EXTERNAL without a certificate is never chosen.
        .init(offered: ["EXTERNAL", "SCRAM-SHA-1"], transport: .tls13(), expected: "SCRAM-SHA-1", expectedFlag: "n,"),
        // No TLS: no PLAIN, SCRAM still fine; nothing else supported.
        .init(offered: ["PLAIN", "SCRAM-SHA-1"], transport: .plaintext, expected: "SCRAM-SHA-1", expectedFlag: "n,"),
        .init(offered: ["PLAIN"], transport: .plaintext, expected: nil),
        .init(offered: ["DIGEST-MD5", "CRAM-MD5", "ANONYMOUS"], transport: .tls13(), expected: nil),
        .init(offered: ["SCRAM-SHA-256"], transport: .tls13(), password: false, expected: nil),
        .init(offered: [], transport: .tls13(), expected: nil),
    ]

    @Test(arguments: preferenceCases)
    func mechanismPreference(_ testCase: PreferenceCase) throws {
        let client = try SASLClient(
            configuration: .init(
                authenticationIdentity: "component.example.com",
                password: testCase.password ? "pw" : nil,
                serverFQDN: "example.com",
                allowedMechanisms: testCase.allowed,
                hasClientCertificate: testCase.certificate
            ),
            transport: testCase.transport
        )
        let offer = features(testCase.offered, bindingTypes: testCase.bindingTypes)
        guard let expected = testCase.expected else {
            let error = #expect(throws: SASLError.self) { try client.start(features: offer) }
            #expect(error?.kind == .noAcceptableMechanism)
            return
        }
        let auth = try client.start(features: offer)
        #expect(auth.name == QualifiedName(Namespace.sasl, "auth"))
        #expect(auth["mechanism"] == expected)
        #expect(client.mechanism == expected)
        if let flag = testCase.expectedFlag {
            #expect(initialResponse(auth).hasPrefix(flag), "\(initialResponse(auth))")
        }
    }

    @Test func noAcceptableMechanismExplainsEachRefusal() throws {
        let client = try makeClient(.plaintext)
        let error = #expect(throws: SASLError.self) {
            try client.start(features: features(["PLAIN", "DIGEST-MD5", "SCRAM-SHA-256-PLUS"]))
        }
        #expect(error?.kind == .noAcceptableMechanism)
        let detail = error?.detail ?? ""
        #expect(detail.contains("offered: PLAIN, DIGEST-MD5, SCRAM-SHA-256-PLUS"))
        #expect(detail.contains("PLAIN refused without TLS"))
        #expect(detail.contains("DIGEST-MD5 refused: not supported"))
        #expect(detail.contains("SCRAM-SHA-256-PLUS refused: channel binding needs TLS"))
    }

    @Test func acceptsTheMechanismsElementItselfAndNestedXEP0440() throws {
        var mechanisms = Element(
            "mechanisms",
            namespace: Namespace.sasl,
            children: [Element("mechanism", namespace: Namespace.sasl, text: " SCRAM-SHA-256-PLUS\n")]
        )
        mechanisms.append(
            Element(
                "sasl-channel-binding",
                namespace: Namespace.saslChannelBinding,
                children: [
                    Element(
                        "channel-binding", namespace: Namespace.saslChannelBinding, attributes: ["type": "tls-server-end-point"])
                ]
            )
        )
        let client = try makeClient(.tls13([.tlsServerEndPoint: Self.endPoint]))
        let auth = try client.start(features: mechanisms)
        #expect(auth["mechanism"] == "SCRAM-SHA-256-PLUS")
        #expect(initialResponse(auth).hasPrefix("p=tls-server-end-point,,"))
    }

    @Test func passwordNeverAppearsInDescriptions() throws {
        let configuration = SASLClient.Configuration(
            authenticationIdentity: "component.example.com", password: "hunter2-secret", serverFQDN: "example.com"
        )
        let client = try SASLClient(configuration: configuration, transport: .tls13())
        _ = try client.start(features: features(["SCRAM-SHA-256"]))
        var dumped = ""
        dump(client, to: &dumped)
        var dumpedConfiguration = ""
        dump(configuration, to: &dumpedConfiguration)
        for text in [
            client.description, String(describing: client), String(reflecting: client), configuration.description,
            String(reflecting: configuration), dumped, dumpedConfiguration,
        ] {
            #expect(!text.contains("hunter2"), "\(text)")
        }
        #expect(configuration.description.contains("<redacted>"))
        #expect(client.description.contains("component.example.com"))
    }

    @Test func transportDescriptionShowsLengthsNotBindingData() {
        let transport = SASLTransportSecurity.tls13([.tlsExporter: Self.exporter, .tlsServerEndPoint: Self.endPoint])
        #expect(
            transport.description
                == "SASLTransportSecurity(TLS 1.3, bindings: [tls-exporter(32 bytes), tls-server-end-point(32 bytes)])")
        #expect(SASLTransportSecurity.plaintext.description == "SASLTransportSecurity(plaintext)")
    }

    @Test func passwordBufferIsWipedWhenTheExchangeFails() throws {
        let client = try makeClient(.tls13())
        _ = try client.start(features: features(["SCRAM-SHA-256"]))
        #expect(client.connectionForTesting?.context.secret != nil)
        #expect(throws: SASLError.self) {
            try client.receive(
                Element("failure", namespace: Namespace.sasl, children: [Element("aborted", namespace: Namespace.sasl)]))
        }
        #expect(client.connectionForTesting?.context.secret == nil)
    }

    @Test func malformedBase64InAChallengeIsAnError() throws {
        let client = try makeClient(.tls13())
        _ = try client.start(features: features(["SCRAM-SHA-256"]))
        let error = #expect(throws: SASLError.self) {
            try client.receive(Element("challenge", namespace: Namespace.sasl, text: "cj1*bad"))
        }
        #expect(error?.kind == .malformedBase64)
        // The exchange is over.
        let again = #expect(throws: SASLError.self) {
            try client.receive(Element("challenge", namespace: Namespace.sasl, text: "="))
        }
        #expect(again?.kind == .unexpectedElement)
    }

    @Test func unexpectedElementsAreErrors() throws {
        let client = try makeClient(.tls13())
        let early = #expect(throws: SASLError.self) {
            try client.receive(Element("challenge", namespace: Namespace.sasl))
        }
        #expect(early?.kind == .unexpectedElement)
        _ = try client.start(features: features(["SCRAM-SHA-256"]))
        let twice = #expect(throws: SASLError.self) { try client.start(features: features(["SCRAM-SHA-256"])) }
        #expect(twice?.kind == .unexpectedElement)
        let other = #expect(throws: SASLError.self) {
            try client.receive(Element("proceed", namespace: Namespace.tls))
        }
        #expect(other?.kind == .unexpectedElement)
    }

    @Test func failureElementsAreParsedIntoTheirKinds() throws {
        for kind in SASLError.Kind.allConditions {
            let client = try makeClient(.tls13())
            _ = try client.start(features: features(["SCRAM-SHA-256"]))
            let failure = Element(
                "failure",
                namespace: Namespace.sasl,
                children: [
                    Element(kind.condition!, namespace: Namespace.sasl),
                    Element("text", namespace: Namespace.sasl, attributes: [:], text: "because \(kind)"),
                ]
            )
            let error = #expect(throws: SASLError.self) { try client.receive(failure) }
            #expect(error?.kind == kind)
            #expect(error?.detail == "because \(kind)")
        }
    }
}
