import Testing
import XMPPCore

@testable import XMPPSASL

/// Our client against our Cyrus server, with a sasldb made by `saslpasswd2` and channel-binding
/// bytes from a real TLS 1.3 session (openssl s_server/s_client).
@Suite(.timeLimit(.minutes(1))) struct SASLExchangeTests {
    @Test func opensslProducesMatchingExporterBytes() throws {
        let bindings = try OpenSSLFixture.bindings()
        #expect(bindings.clientExporter.count == 32)
        #expect(bindings.clientExporter == bindings.serverExporter)
        #expect(bindings.serverEndPoint.count == 32)
    }

    @Test(arguments: [("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"), ("SCRAM-SHA-1", "SCRAM-SHA-1-PLUS")])
    func scramPlusWithTLSExporter(base: String, plus: String) throws {
        let bindings = try OpenSSLFixture.bindings()
        let server = try makeServer(.tls13([.tlsExporter: bindings.serverExporter]), mechanisms: [base])
        #expect(server.mechanisms == [plus, base])
        #expect(server.channelBindingType == .tlsExporter)
        let client = try makeClient(.tls13([.tlsExporter: bindings.clientExporter]))
        let result = try exchange(client: client, server: server)

        #expect(result.auth["mechanism"] == plus)
        // The wire n= is the identity exactly (no realm split), gs2 says p=tls-exporter.
        let clientFirst = initialResponse(result.auth)
        #expect(clientFirst.hasPrefix("p=tls-exporter,,n=component.example.com,r="))
        #expect(try result.clientOutcome.get() == SASLOutcome(mechanism: plus, channelBinding: .tlsExporter))
        #expect(result.serverIdentity == "component.example.com")
        #expect(result.rounds == 2)
        #expect(client.connectionForTesting?.context.secret == nil, "password buffer wiped after success")
    }

    @Test(arguments: ["SCRAM-SHA-256", "SCRAM-SHA-1"])
    func scramWithoutChannelBinding(mechanism: String) throws {
        let server = try makeServer(.tls13(), mechanisms: [mechanism])
        #expect(server.mechanisms == [mechanism])
        #expect(server.channelBindingElement == nil)
        let client = try makeClient(.tls13())
        let result = try exchange(client: client, server: server)
        #expect(result.auth["mechanism"] == mechanism)
        #expect(initialResponse(result.auth).hasPrefix("n,,n=component.example.com,r="))
        #expect(try result.clientOutcome.get() == SASLOutcome(mechanism: mechanism, channelBinding: nil))
        #expect(result.serverIdentity == "component.example.com")
    }

    @Test func scramPlusWithTLSServerEndPointAdvertisedByXEP0440OnTLS12() throws {
        let bindings = try OpenSSLFixture.bindings()
        let server = try makeServer(.tls12([.tlsServerEndPoint: bindings.serverEndPoint]))
        #expect(server.channelBindingType == .tlsServerEndPoint)
        let advertised = features(of: server)
        #expect(
            advertised.firstChild("sasl-channel-binding", namespace: Namespace.saslChannelBinding)?
                .firstChild("channel-binding", namespace: Namespace.saslChannelBinding)?["type"]
                == "tls-server-end-point"
        )
        let client = try makeClient(.tls12([.tlsServerEndPoint: bindings.serverEndPoint]))
        let result = try exchange(client: client, server: server)
        #expect(initialResponse(result.auth).hasPrefix("p=tls-server-end-point,,n=component.example.com,"))
        #expect(
            try result.clientOutcome.get()
                == SASLOutcome(mechanism: "SCRAM-SHA-256-PLUS", channelBinding: .tlsServerEndPoint)
        )
    }

    /// tls-unique cannot be printed by the openssl CLI; fixed random bytes stand in (TLS 1.2).
    @Test func scramPlusWithTLSUniqueOnTLS12() throws {
        let finished = (0..<12).map { _ in UInt8.random(in: 0...255) }
        let server = try makeServer(.tls12([.tlsUnique: finished]))
        #expect(server.channelBindingType == .tlsUnique)
        let client = try makeClient(.tls12([.tlsUnique: finished]))
        let result = try exchange(client: client, server: server)
        #expect(try result.clientOutcome.get() == SASLOutcome(mechanism: "SCRAM-SHA-256-PLUS", channelBinding: .tlsUnique))
    }

    @Test func plainInsideTLS() throws {
        let server = try makeServer(.tls13(), mechanisms: ["PLAIN"])
        #expect(server.mechanisms == ["PLAIN"])
        let client = try makeClient(.tls13())
        let result = try exchange(client: client, server: server)
        #expect(result.auth["mechanism"] == "PLAIN")
        #expect(initialResponse(result.auth) == "\0component.example.com\0\(Account.password)")
        #expect(try result.clientOutcome.get() == SASLOutcome(mechanism: "PLAIN", channelBinding: nil))
        #expect(result.serverIdentity == "component.example.com")
        #expect(result.rounds == 1)
    }

    @Test func externalWithClientCertificate() throws {
        let server = try makeServer(.tls13(), externalIdentity: Account.user)
        #expect(server.mechanisms.first == "EXTERNAL")
        let client = try makeClient(.tls13(), password: nil, clientCertificate: true)
        let result = try exchange(client: client, server: server)
        #expect(result.auth["mechanism"] == "EXTERNAL")
        #expect(result.auth.text == "=")  // empty initial response
        #expect(try result.clientOutcome.get() == SASLOutcome(mechanism: "EXTERNAL", channelBinding: nil))
        #expect(result.serverIdentity == Account.user)
    }

    @Test func authorizationIdentityEqualToTheAuthenticationIdentityIsAccepted() throws {
        let server = try makeServer(.tls13())
        let client = try makeClient(.tls13(), authzid: Account.user)
        let result = try exchange(client: client, server: server)
        #expect(initialResponse(result.auth).hasPrefix("n,a=component.example.com,n=component.example.com,"))
        #expect(result.serverIdentity == Account.user)
        #expect(throws: Never.self) { try result.clientOutcome.get() }
    }

    @Test func foreignAuthorizationIdentityIsRefused() throws {
        let server = try makeServer(.tls13())
        let client = try makeClient(.tls13(), authzid: "other.example.com")
        let result = try exchange(client: client, server: server)
        #expect(result.serverError?.kind == .invalidAuthzid, "\(String(describing: result.serverError))")
        #expect(result.clientOutcome.failureKind == .invalidAuthzid)
    }

    @Test(arguments: ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
    func wrongPasswordIsNotAuthorized(mechanism: String) throws {
        let server = try makeServer(.tls13(), mechanisms: [mechanism])
        let client = try makeClient(.tls13(), password: "wrong")
        let result = try exchange(client: client, server: server)
        #expect(result.serverError?.kind == .notAuthorized)
        #expect(result.clientOutcome.failureKind == .notAuthorized)
        #expect(client.connectionForTesting?.context.secret == nil, "password buffer wiped after failure")
        #expect(!(result.serverError?.description.contains("wrong") ?? true))
    }

    @Test func unknownUserIsNotAuthorized() throws {
        let server = try makeServer(.tls13())
        let client = try SASLClient(
            configuration: .init(authenticationIdentity: "nobody.example.com", password: "x", serverFQDN: "example.com"),
            transport: .tls13()
        )
        let result = try exchange(client: client, server: server)
        #expect(result.clientOutcome.failureKind == .notAuthorized)
    }

    @Test func channelBindingDataMismatchFails() throws {
        let bindings = try OpenSSLFixture.bindings()
        let server = try makeServer(.tls13([.tlsExporter: bindings.serverExporter]))
        var other = bindings.clientExporter
        other[0] ^= 0x01
        let client = try makeClient(.tls13([.tlsExporter: other]))
        let result = try exchange(client: client, server: server)
        #expect(result.auth["mechanism"] == "SCRAM-SHA-256-PLUS")
        #expect(result.serverError?.kind == .notAuthorized)
        #expect(result.serverError?.detail?.contains("Channel bindings mismatch") == true)
        #expect(result.clientOutcome.failureKind == .notAuthorized)
    }

    @Test func channelBindingTypeMismatchFails() throws {
        let bindings = try OpenSSLFixture.bindings()
        // The server binds tls-exporter; a tampered XEP-0440 list makes the client use
        // tls-server-end-point.
        let server = try makeServer(.tls13([.tlsExporter: bindings.serverExporter]))
        let client = try makeClient(
            .tls13([.tlsExporter: bindings.clientExporter, .tlsServerEndPoint: bindings.serverEndPoint])
        )
        let offer = features(server.mechanisms, bindingTypes: ["tls-server-end-point"])
        let result = try exchange(client: client, server: server, features: offer)
        #expect(initialResponse(result.auth).hasPrefix("p=tls-server-end-point,,"))
        #expect(result.serverError?.kind == .notAuthorized)
        #expect(result.serverError?.detail?.contains("tls-server-end-point") == true)
        #expect(result.clientOutcome.failureKind == .notAuthorized)
    }

    @Test func strippedPlusMechanismsAreDetected() throws {
        let bindings = try OpenSSLFixture.bindings()
        let server = try makeServer(.tls13([.tlsExporter: bindings.serverExporter]))
        #expect(server.mechanisms.contains("SCRAM-SHA-256-PLUS"))
        let client = try makeClient(.tls13([.tlsExporter: bindings.clientExporter]))
        // A man in the middle removes every -PLUS mechanism and the XEP-0440 element.
        let stripped = features(server.mechanisms.filter { !$0.hasSuffix("-PLUS") })
        let result = try exchange(client: client, server: server, features: stripped)
        #expect(result.auth["mechanism"] == "SCRAM-SHA-256")
        #expect(initialResponse(result.auth).hasPrefix("y,,n=component.example.com,"))
        #expect(result.serverError?.kind == .notAuthorized)
        #expect(result.serverError?.detail?.contains("client incorrectly assumed server had no channel binding") == true)
        #expect(result.clientOutcome.failureKind == .notAuthorized)
    }

    @Test func clientWithBindingDataSendsYToAServerWithoutBindingAndSucceeds() throws {
        let bindings = try OpenSSLFixture.bindings()
        let server = try makeServer(.tls13())  // no binding data: no -PLUS offered
        let client = try makeClient(.tls13([.tlsExporter: bindings.clientExporter]))
        let result = try exchange(client: client, server: server)
        #expect(initialResponse(result.auth).hasPrefix("y,,"))
        #expect(try result.clientOutcome.get() == SASLOutcome(mechanism: "SCRAM-SHA-256", channelBinding: nil))
    }

    @Test func tamperedServerSignatureIsRejected() throws {
        let server = try makeServer(.tls13())
        let client = try makeClient(.tls13())
        let result = try exchange(
            client: client, server: server,
            tamperServer: { element in
                guard element.name.localName == "success", let data = SASLTestBase64.decode(element.text) else {
                    return element
                }
                // v=<base64 signature>: change one signature byte, keep the encoding valid.
                var text = String(decoding: data, as: UTF8.self)
                var signature = SASLTestBase64.decode(String(text.dropFirst(2)))!
                signature[0] ^= 0xFF
                text = "v=" + SASLTestBase64.encode(signature)
                return Element("success", namespace: Namespace.sasl, text: SASLTestBase64.encode(Array(text.utf8)))
            })
        #expect(result.serverIdentity == Account.user)  // the server was happy
        #expect(result.clientOutcome.failureKind == .serverSignatureMismatch)
        #expect(result.clientOutcome.failureDetail?.contains("ServerSignature mismatch") == true)
    }

    @Test func successWithoutServerSignatureIsRejected() throws {
        let server = try makeServer(.tls13())
        let client = try makeClient(.tls13())
        let result = try exchange(
            client: client, server: server,
            tamperServer: { element in
                element.name.localName == "success" ? Element("success", namespace: Namespace.sasl) : element
            })
        #expect(result.clientOutcome.failureKind == .serverSignatureMismatch)
    }

    @Test func scramIterationCountIsHonouredPerConnection() throws {
        for iterations in [Account.iterations, nil] {
            let server = try makeServer(.tls13(), iterations: iterations)
            let client = try makeClient(.tls13())
            let auth = try client.start(features: features(of: server))
            guard case .challenge(let challenge) = server.start(auth: auth) else {
                Issue.record("expected a challenge")
                return
            }
            let serverFirst = String(decoding: SASLTestBase64.decode(challenge.text) ?? [], as: UTF8.self)
            #expect(serverFirst.hasSuffix(",i=\(iterations ?? 4096)"), "\(serverFirst)")
        }
    }

    @Test func serversWithDifferentDatabasesInOneProcess() throws {
        let directory = try makeTemporaryDirectory()
        let first = directory + "/first.db"
        let second = directory + "/second.db"
        try createSASLDBEntry(path: first, realm: Account.realm, user: Account.user, password: "first-password")
        try createSASLDBEntry(path: second, realm: Account.realm, user: Account.user, password: "second-password")
        // Both servers exist at the same time.
        let serverA1 = try makeServer(.tls13(), sasldbPath: first)
        let serverB1 = try makeServer(.tls13(), sasldbPath: second)
        let serverA2 = try makeServer(.tls13(), sasldbPath: first)
        let serverB2 = try makeServer(.tls13(), sasldbPath: second)

        let okA = try exchange(client: try makeClient(.tls13(), password: "first-password"), server: serverA1)
        let okB = try exchange(client: try makeClient(.tls13(), password: "second-password"), server: serverB1)
        let badA = try exchange(client: try makeClient(.tls13(), password: "second-password"), server: serverA2)
        let badB = try exchange(client: try makeClient(.tls13(), password: "first-password"), server: serverB2)
        #expect(okA.serverIdentity == Account.user)
        #expect(okB.serverIdentity == Account.user)
        #expect(badA.serverError?.kind == .notAuthorized)
        #expect(badB.serverError?.kind == .notAuthorized)
    }
}

extension Result where Failure == SASLError {
    var failureKind: SASLError.Kind? {
        if case .failure(let error) = self { return error.kind }
        return nil
    }

    var failureDetail: String? {
        if case .failure(let error) = self { return error.detail }
        return nil
    }
}
