import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import XMPPTLS

@Suite struct DevelopmentCertificateAuthorityTests {
    func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "devca-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test(arguments: [DevelopmentCertificateAuthority.KeyType.p256, .rsa2048])
    func issuedCertificateVerifiesWithHostnameCheck(keyType: DevelopmentCertificateAuthority.KeyType) async throws {
        let directory = try self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ca = try DevelopmentCertificateAuthority(keyType: keyType)
        let certificate = try ca.issue(
            dnsNames: ["example.test", "*.example.test"], ipAddresses: ["127.0.0.1", "::1"], keyType: keyType)
        #expect(!certificate.description.contains("PRIVATE"))
        let files = try certificate.write(toDirectory: directory, name: "server")
        let attributes = try FileManager.default.attributesOfItem(atPath: files.privateKeyFile)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)

        let server = try OpenSSLContext(server: files.serverConfiguration)
        for name in ["example.test", "chat.example.test"] {
            let client = try OpenSSLContext(
                client: TLSClientConfiguration(serverName: name, trustRoots: .caFile(files.caCertificateFile)))
            try await handshake(server: server, client: client)
        }
        let wrong = try OpenSSLContext(
            client: TLSClientConfiguration(serverName: "wrong.example.org", trustRoots: .caFile(files.caCertificateFile)))
        await #expect(throws: TLSError.self) { try await handshake(server: server, client: wrong) }

        // A certificate from another CA is not trusted.
        let other = try DevelopmentCertificateAuthority().issue(dnsNames: ["example.test"]).write(
            toDirectory: directory, name: "other")
        let otherServer = try OpenSSLContext(server: other.serverConfiguration)
        let client = try OpenSSLContext(
            client: TLSClientConfiguration(serverName: "example.test", trustRoots: .caFile(files.caCertificateFile)))
        await #expect(throws: TLSError.self) { try await handshake(server: otherServer, client: client) }
    }

    @Test func needsAName() throws {
        let ca = try DevelopmentCertificateAuthority()
        #expect(throws: TLSError.self) { try ca.issue(dnsNames: []) }
        #expect(throws: TLSError.self) { try ca.issue(dnsNames: ["a,IP:1.2.3.4"]) }
    }
}

/// Runs a TLS handshake between two handlers over loopback TCP; throws the client's error.
private func handshake(server: OpenSSLContext, client: OpenSSLContext) async throws {
    let group = MultiThreadedEventLoopGroup.singleton
    let listener = try await ServerBootstrap(group: group)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(OpenSSLHandler(context: server))
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    defer { listener.close(promise: nil) }
    let done = group.next().makePromise(of: Void.self)
    let channel = try await ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers([OpenSSLHandler(context: client), HandshakeWatcher(done)])
            }
        }
        .connect(host: "127.0.0.1", port: listener.localAddress!.port!).get()
    defer { channel.close(promise: nil) }
    let timeout = group.next().scheduleTask(in: .seconds(10)) { done.fail(TLSError.closedDuringHandshake) }
    defer { timeout.cancel() }
    try await done.futureResult.get()
}

private final class HandshakeWatcher: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<Void>
    init(_ promise: EventLoopPromise<Void>) { self.promise = promise }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSEvent { self.promise.succeed() }
        context.fireUserInboundEventTriggered(event)
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.promise.fail(error)
    }
    func channelInactive(context: ChannelHandlerContext) {
        self.promise.fail(TLSError.closedDuringHandshake)
    }
}
