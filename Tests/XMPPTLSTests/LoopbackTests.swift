import NIOCore
import NIOPosix
import Testing
import XMPPTLS
import XMPPTestSupport

/// Our client against our server over loopback TCP (NIOPosix).
@Suite(.timeLimit(.minutes(1)))
struct LoopbackTests {
    let certs = TestCertificates.shared
    let eventLoop = MultiThreadedEventLoopGroup.singleton.next()

    /// Runs a handshake between our client and our server and returns both sides' session info.
    private func handshake(
        client: OpenSSLContext, server: OpenSSLContext, serverName: String? = nil
    ) async throws -> (client: TLSSessionInfo, server: TLSSessionInfo) {
        let serverExpectations = Expectations(on: self.eventLoop)
        let clientExpectations = Expectations(on: self.eventLoop)
        defer {
            serverExpectations.finish()
            clientExpectations.finish()
        }
        let testServer = try await TestServer.start(context: server, expectations: serverExpectations)
        return try await withCleanup {
            let channel = try await connectClient(
                port: testServer.port, context: client, expectations: clientExpectations, serverName: serverName
            )
            defer { channel.close(promise: nil) }
            let clientInfo = try await awaitResult(clientExpectations.handshake.futureResult)
            let serverInfo = try await awaitResult(serverExpectations.handshake.futureResult)
            return (clientInfo, serverInfo)
        } cleanup: {
            await testServer.stop()
        }
    }

    @Test(arguments: [TLSVersion.v1_2, .v1_3])
    func channelBindingsAgree(version: TLSVersion) async throws {
        let (client, server) = try await self.handshake(
            client: try clientContext(self.certs, max: version),
            server: try serverContext(self.certs, min: version)
        )
        #expect(client.version == version)
        #expect(server.version == version)
        #expect(client.cipherSuite == server.cipherSuite)

        let exporter = try #require(client.tlsExporter)
        #expect(exporter.count == 32)
        #expect(exporter != [UInt8](repeating: 0, count: 32))
        #expect(server.tlsExporter == exporter)
        #expect(client.channelBinding(.tlsExporter) == exporter)

        let endPoint = try self.certs.digest(self.certs.serverCertificate, "sha256")
        #expect(client.tlsServerEndPoint == endPoint)
        #expect(server.tlsServerEndPoint == endPoint)
        #expect(server.channelBinding(.tlsServerEndPoint) == endPoint)

        if version == .v1_2 {
            let unique = try #require(client.tlsUnique)
            #expect(unique.count == 12)
            #expect(server.tlsUnique == unique)
            #expect(client.channelBinding(.tlsUnique) == unique)
        } else {
            #expect(client.tlsUnique == nil)
            #expect(server.tlsUnique == nil)
            #expect(client.channelBinding(.tlsUnique) == nil)
        }
        #expect(client.peerCertificateDER == (try self.certs.der(self.certs.serverCertificate)))
        #expect(server.peerCertificateDER == nil)
    }

    @Test func serverEndPointUsesTheCertificateSignatureDigest() async throws {
        let (client, server) = try await self.handshake(
            client: try clientContext(self.certs),
            server: try serverContext(self.certs, certificate: self.certs.serverSHA384Certificate)
        )
        let expected = try self.certs.digest(self.certs.serverSHA384Certificate, "sha384")
        #expect(expected.count == 48)
        #expect(client.tlsServerEndPoint == expected)
        #expect(server.tlsServerEndPoint == expected)
    }

    @Test func clientCertificateReachesTheServer() async throws {
        let (client, server) = try await self.handshake(
            client: try clientContext(self.certs, withClientCertificate: true),
            server: try serverContext(self.certs, clientCertificates: .required(trustRoots: .caFile(self.certs.caCertificate)))
        )
        #expect(server.peerCertificateDER == (try self.certs.der(self.certs.clientCertificate)))
        #expect(client.peerCertificateDER == (try self.certs.der(self.certs.serverCertificate)))
    }

    @Test func serverRequiringClientCertificateRejectsClientWithout() async throws {
        let serverExpectations = Expectations(on: self.eventLoop)
        defer { serverExpectations.finish() }
        let server = try serverContext(self.certs, clientCertificates: .required(trustRoots: .caFile(self.certs.caCertificate)))
        let testServer = try await TestServer.start(context: server, expectations: serverExpectations)
        try await withCleanup {
            let clientExpectations = Expectations(on: self.eventLoop)
            defer { clientExpectations.finish() }
            let channel = try await connectClient(
                port: testServer.port, context: try clientContext(self.certs), expectations: clientExpectations)
            defer { channel.close(promise: nil) }
            let error = try #require(try await serverExpectations.firstError() as? TLSError)
            #expect(error.kind == .handshakeFailed)
            #expect(error.description.contains("peer did not return a certificate"))
        } cleanup: {
            await testServer.stop()
        }
    }

    struct VerificationCase: Sendable, CustomTestStringConvertible {
        var name: String
        /// The certificate's file name in ``TestCertificates``.
        var certificate: String
        var serverName: String?
        var expected: TLSVerificationFailure
        var testDescription: String { self.name }
    }

    @Test(arguments: [
        VerificationCase(name: "untrusted CA", certificate: "untrusted.pem", expected: .untrustedIssuer),
        VerificationCase(name: "expired", certificate: "expired.pem", expected: .expired),
        VerificationCase(name: "not yet valid", certificate: "notyet.pem", expected: .notYetValid),
        VerificationCase(name: "self-signed", certificate: "selfsigned.pem", expected: .selfSigned),
        VerificationCase(
            name: "wrong host name", certificate: "server.pem", serverName: "other.test", expected: .hostnameMismatch
        ),
    ])
    func verificationFailureSaysWhich(_ testCase: VerificationCase) async throws {
        let serverExpectations = Expectations(on: self.eventLoop)
        let clientExpectations = Expectations(on: self.eventLoop)
        defer {
            serverExpectations.finish()
            clientExpectations.finish()
        }
        let server = try serverContext(self.certs, certificate: self.certs.path(testCase.certificate))
        let testServer = try await TestServer.start(context: server, expectations: serverExpectations)
        try await withCleanup {
            let channel = try await connectClient(
                port: testServer.port, context: try clientContext(self.certs), expectations: clientExpectations,
                serverName: testCase.serverName
            )
            defer { channel.close(promise: nil) }

            let error = try #require(try await clientExpectations.firstError() as? TLSError)
            #expect(error.kind == .certificateVerificationFailed)
            #expect(error.verificationFailure == testCase.expected)
            #expect(error.description.contains(testCase.expected.description))
            #expect(!channel.isActive)
            // The server learns about it from the client's alert.
            let serverError = try #require(try await serverExpectations.firstError() as? TLSError)
            #expect(serverError.kind == .handshakeFailed)
            #expect(serverError.description.contains("alert"))
        } cleanup: {
            await testServer.stop()
        }
    }

    @Test func insecureOptOutConnectsToUntrustedServer() async throws {
        let (client, _) = try await self.handshake(
            client: try clientContext(self.certs, verification: .noVerificationInsecureDevelopmentOnly),
            server: try serverContext(self.certs, certificate: self.certs.untrustedCertificate),
            serverName: "wrong.test"
        )
        #expect(client.peerCertificateDER == (try self.certs.der(self.certs.untrustedCertificate)))
    }

    @Test func peerClosingMidHandshakeIsReported() async throws {
        // A plain TCP server that hangs up as soon as the ClientHello arrives.
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(HangUpOnRead())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let expectations = Expectations(on: self.eventLoop)
        defer { expectations.finish() }
        let channel = try await connectClient(
            port: server.localAddress!.port!, context: try clientContext(self.certs), expectations: expectations
        )
        defer { channel.close(promise: nil) }
        let error = try #require(try await expectations.firstError() as? TLSError)
        #expect(error == .closedDuringHandshake)
        #expect(error.kind == .closedDuringHandshake)
    }

    @Test(arguments: [TLSVersion.v1_2, .v1_3])
    func largeTransferBothWays(version: TLSVersion) async throws {
        let size = 4 * 1024 * 1024
        let data = payload(count: size, seed: 7)
        let serverExpectations = Expectations(on: self.eventLoop, expectedBytes: size)
        let clientExpectations = Expectations(on: self.eventLoop, expectedBytes: size)
        defer {
            serverExpectations.finish()
            clientExpectations.finish()
        }
        let testServer = try await TestServer.start(
            context: try serverContext(self.certs, max: version), expectations: serverExpectations, echo: true
        )
        try await withCleanup {
            let channel = try await connectClient(
                port: testServer.port, context: try clientContext(self.certs), expectations: clientExpectations
            )
            defer { channel.close(promise: nil) }

            // Written before the handshake completes: buffered, then sent.
            let written = channel.eventLoop.makePromise(of: Void.self)
            channel.writeAndFlush(ByteBuffer(bytes: data), promise: written)
            try await awaitResult(written.futureResult, timeout: .seconds(30))
            let atServer = try await awaitResult(serverExpectations.data.futureResult, timeout: .seconds(30))
            #expect(atServer.readableBytes == size)
            #expect(Array(atServer.readableBytesView) == data)
            let echoed = try await awaitResult(clientExpectations.data.futureResult, timeout: .seconds(30))
            #expect(echoed.readableBytes == size)
            #expect(Array(echoed.readableBytesView) == data)
            #expect(try await awaitResult(clientExpectations.handshake.futureResult).version == version)
        } cleanup: {
            await testServer.stop()
        }
    }

    @Test func closeSendsCloseNotifySoPeerSeesCleanShutdown() async throws {
        let serverExpectations = Expectations(on: self.eventLoop)
        let clientExpectations = Expectations(on: self.eventLoop)
        defer {
            serverExpectations.finish()
            clientExpectations.finish()
        }
        let testServer = try await TestServer.start(context: try serverContext(self.certs), expectations: serverExpectations)
        try await withCleanup {
            let channel = try await connectClient(
                port: testServer.port, context: try clientContext(self.certs), expectations: clientExpectations
            )
            _ = try await awaitResult(clientExpectations.handshake.futureResult)
            _ = try await awaitResult(serverExpectations.handshake.futureResult)
            try await awaitResult(channel.close())

            // The server got close_notify before EOF, so it reports no truncation.
            #expect(try await serverExpectations.firstError() == nil)
            #expect(try await clientExpectations.firstError() == nil)
            // Writes after close fail.
            await #expect(throws: ChannelError.self) { try await channel.writeAndFlush(ByteBuffer(string: "late")).get() }
        } cleanup: {
            await testServer.stop()
        }
    }

    @Test func eofWithoutCloseNotifyIsReportedAsTruncation() async throws {
        let serverExpectations = Expectations(on: self.eventLoop)
        defer { serverExpectations.finish() }
        let testServer = try await TestServer.start(context: try serverContext(self.certs), expectations: serverExpectations)
        try await withCleanup {
            let client = try OpenSSLPeer.client(port: testServer.port, ["-CAfile", self.certs.caCertificate])
            defer { client.terminate() }
            _ = try await awaitResult(serverExpectations.handshake.futureResult)
            try await client.waitFor("Verify return code: 0 (ok)")
            kill(client.pid, SIGKILL)  // the kernel closes the socket: EOF without close_notify
            let error = try #require(try await serverExpectations.firstError() as? TLSError)
            #expect(error == .uncleanShutdown)
        } cleanup: {
            await testServer.stop()
        }
    }

    @Test func closingDuringHandshakeIsPromptAndSilent() async throws {
        // A plain TCP server that never reads: the handshake cannot complete; our own close must not hang
        // and is not reported as an error.
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let expectations = Expectations(on: self.eventLoop)
        defer { expectations.finish() }
        let channel = try await connectClient(
            port: server.localAddress!.port!, context: try clientContext(self.certs), expectations: expectations
        )
        try await awaitResult(channel.close(), timeout: .seconds(5))
        #expect(try await expectations.firstError() == nil)
    }
}

/// Closes the connection on the first byte received.
private final class HangUpOnRead: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.close(promise: nil)
    }
}
