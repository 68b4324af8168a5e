import NIOCore
import NIOPosix
import Testing
import XMPPTLS
import XMPPTestSupport

/// Our handler against independent `openssl s_server` / `s_client` peers.
@Suite(.timeLimit(.minutes(1)))
struct OpenSSLInteropTests {
    let certs = TestCertificates.shared

    @Test(arguments: [TLSVersion.v1_2, .v1_3])
    func clientAgainstOpenSSLServer(version: TLSVersion) async throws {
        let versionFlag = version == .v1_3 ? "-tls1_3" : "-tls1_2"
        let (server, port) = try await OpenSSLPeer.server([
            "-cert", self.certs.serverCertificate, "-key", self.certs.leafKey, versionFlag,
            "-keymatexport", "EXPORTER-Channel-Binding", "-keymatexportlen", "32",
        ])
        defer { server.terminate() }
        let reply = "Hello from openssl\n"
        let expectations = Expectations(on: MultiThreadedEventLoopGroup.singleton.next(), expectedBytes: reply.utf8.count)
        defer { expectations.finish() }

        let channel = try await connectClient(port: port, context: try clientContext(self.certs), expectations: expectations)
        defer { channel.close(promise: nil) }
        let info = try await awaitResult(expectations.handshake.futureResult)

        #expect(info.version == version)
        if version == .v1_3 {
            #expect(info.cipherSuite == "TLS_AES_256_GCM_SHA384")
            #expect(info.tlsUnique == nil)
        } else {
            #expect(info.cipherSuite.hasPrefix("TLS_ECDHE_ECDSA_WITH_"))
            #expect(info.tlsUnique?.count == 12)
        }
        #expect(info.peerCertificateDER == (try self.certs.der(self.certs.serverCertificate)))
        #expect(info.tlsServerEndPoint == (try self.certs.digest(self.certs.serverCertificate, "sha256")))
        #expect(info.tlsExporter?.count == 32)
        let opensslExporter = try await server.keyingMaterial()
        if version == .v1_3 {
            // s_server exports with use_context=0, which on TLS 1.3 equals an empty context (RFC 9266).
            #expect(info.tlsExporter == opensslExporter)
        } else {
            // On TLS 1.2 "no context" and "empty context" are different PRF inputs.
            #expect(info.tlsExporter != opensslExporter)
            #expect(opensslExporter.count == 32)
        }

        // Client to server.
        try await awaitResult(channel.writeAndFlush(ByteBuffer(string: "Hello from swift\n")))
        try await server.waitFor("Hello from swift")
        // Server to client.
        server.send(reply)
        let received = try await awaitResult(expectations.data.futureResult)
        #expect(received.string == reply)
    }

    @Test(arguments: [TLSVersion.v1_2, .v1_3])
    func serverAgainstOpenSSLClient(version: TLSVersion) async throws {
        let expectations = Expectations(on: MultiThreadedEventLoopGroup.singleton.next(), expectedBytes: 16)
        defer { expectations.finish() }
        let server = try await TestServer.start(context: try serverContext(self.certs), expectations: expectations, echo: true)
        try await withCleanup {

            let client = try OpenSSLPeer.client(
                port: server.port,
                [
                    "-servername", "example.test", "-verify_hostname", "example.test", "-CAfile", self.certs.caCertificate,
                    "-verify_return_error", version == .v1_3 ? "-tls1_3" : "-tls1_2",
                    "-keymatexport", "EXPORTER-Channel-Binding", "-keymatexportlen", "32",
                ])
            defer { client.terminate() }

            let info = try await awaitResult(expectations.handshake.futureResult)
            #expect(info.version == version)
            #expect(info.peerCertificateDER == nil)  // no client certificate requested
            #expect(info.tlsServerEndPoint == (try self.certs.digest(self.certs.serverCertificate, "sha256")))
            try await client.waitFor("Verify return code: 0 (ok)")
            if version == .v1_3 {
                #expect(info.tlsExporter == (try await client.keyingMaterial()))
            }

            client.send("ping from client\n")  // 17 bytes: the echo comes back and s_client prints it
            let received = try await awaitResult(expectations.data.futureResult)
            #expect(received.string.hasPrefix("ping from client"))
            // The pipe to s_client does not echo stdin, so this is our echo arriving.
            try await client.waitFor("ping from client")
        } cleanup: {
            await server.stop()
        }
    }

    @Test func closeSendsCloseNotifyToOpenSSLClient() async throws {
        let expectations = Expectations(on: MultiThreadedEventLoopGroup.singleton.next())
        defer { expectations.finish() }
        let server = try await TestServer.start(context: try serverContext(self.certs), expectations: expectations)
        try await withCleanup {
            let client = try OpenSSLPeer.client(port: server.port, ["-CAfile", self.certs.caCertificate, "-tls1_3"])
            defer { client.terminate() }

            _ = try await awaitResult(expectations.handshake.futureResult)
            try await client.waitFor("Verify return code: 0 (ok)")
            let child = try await awaitResult(expectations.channel.futureResult)
            try await awaitResult(child.close())
            // s_client prints "closed" only for SSL_ERROR_ZERO_RETURN, i.e. a received close_notify.
            try await client.waitFor("closed\n")
            try await client.waitForExit()
            #expect(try await expectations.firstError() == nil)
        } cleanup: {
            await server.stop()
        }
    }

    @Test func insecureClientAcceptsUntrustedOpenSSLServer() async throws {
        let (server, port) = try await OpenSSLPeer.server([
            "-cert", self.certs.untrustedCertificate, "-key", self.certs.leafKey,
        ])
        defer { server.terminate() }
        let expectations = Expectations(on: MultiThreadedEventLoopGroup.singleton.next())
        defer { expectations.finish() }
        let context = try clientContext(self.certs, verification: .noVerificationInsecureDevelopmentOnly)
        let channel = try await connectClient(port: port, context: context, expectations: expectations)
        defer { channel.close(promise: nil) }
        let info = try await awaitResult(expectations.handshake.futureResult)
        #expect(info.peerCertificateDER == (try self.certs.der(self.certs.untrustedCertificate)))
    }
}
