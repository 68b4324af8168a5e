import NIOCore
import NIOPosix
import Testing
import XMPPTLS

@Suite(.timeLimit(.minutes(1)))
struct OpenSSLContextTests {
    let certs = TestCertificates.shared

    @Test func missingCertificateChainIsAConfigurationErrorNamingTheFile() throws {
        let error = #expect(throws: TLSError.self) {
            try OpenSSLContext(
                server: TLSServerConfiguration(certificateChainFile: "/nonexistent/chain.pem", privateKeyFile: self.certs.leafKey)
            )
        }
        #expect(error?.kind == .configuration)
        #expect(error?.description.contains("cannot read certificate chain /nonexistent/chain.pem") == true)
    }

    @Test func mismatchedKeyIsRejected() throws {
        let error = #expect(throws: TLSError.self) {
            try OpenSSLContext(
                server: TLSServerConfiguration(
                    certificateChainFile: self.certs.serverCertificate, privateKeyFile: self.certs.path("ca.key")
                )
            )
        }
        #expect(error?.kind == .configuration)
        #expect(error?.description.contains("does not match") == true)
        #expect(error?.description.contains("key values mismatch") == true)
    }

    @Test func invertedVersionRangeIsRejected() throws {
        let error = #expect(throws: TLSError.self) {
            try OpenSSLContext(
                client: TLSClientConfiguration(serverName: "example.test", minimumVersion: .v1_3, maximumVersion: .v1_2)
            )
        }
        #expect(error?.kind == .configuration)
    }

    @Test func missingCAFileIsRejected() throws {
        let error = #expect(throws: TLSError.self) {
            try OpenSSLContext(
                client: TLSClientConfiguration(serverName: "example.test", trustRoots: .caFile("/nonexistent/ca.pem")))
        }
        #expect(error?.description.contains("/nonexistent/ca.pem") == true)
    }

    @Test func systemTrustRootsLoad() throws {
        _ = try OpenSSLContext(client: TLSClientConfiguration(serverName: "example.test"))
    }

    @Test func versionDescriptions() {
        #expect(TLSVersion.v1_2.description == "TLSv1.2")
        #expect(TLSVersion.v1_3.description == "TLSv1.3")
        #expect(ChannelBindingType(rawValue: "tls-exporter") == .tlsExporter)
        #expect(ChannelBindingType.tlsServerEndPoint.rawValue == "tls-server-end-point")
        #expect(ChannelBindingType.tlsUnique.rawValue == "tls-unique")
    }

    /// `openssl s_server` asked to renegotiate (`r` on stdin) on TLS 1.2: our client refuses, so no second
    /// handshake ever completes.
    @Test func renegotiationIsRefused() async throws {
        let (server, port) = try await OpenSSLPeer.server([
            "-cert", self.certs.serverCertificate, "-key", self.certs.leafKey, "-tls1_2",
        ])
        defer { server.terminate() }
        let expectations = Expectations(on: MultiThreadedEventLoopGroup.singleton.next())
        defer { expectations.finish() }
        let channel = try await connectClient(port: port, context: try clientContext(self.certs), expectations: expectations)
        defer { channel.close(promise: nil) }
        _ = try await awaitResult(expectations.handshake.futureResult)
        try await server.waitFor("CIPHER is")
        server.send("r\n")
        // Our client answers the HelloRequest with a no_renegotiation alert; s_server gives up on the connection.
        try await server.waitFor("no renegotiation")
        let error = try await expectations.firstError(timeout: .seconds(5))
        #expect(expectations.handshakes.value == 1)
        // s_server answers our alert with a fatal handshake_failure alert.
        let tlsError = try #require(error as? TLSError)
        #expect(tlsError.kind == .protocolError)
        #expect(tlsError.description.contains("handshake failure"))
    }
}
