import Logging
import NIOCore
import NIOPosix
import XMPPCore
import XMPPSASL
import XMPPStream
import XMPPTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The reference server's client (c2s) port: its users' sasldb and its listener.
enum C2SListener {
    /// Checks ``ReferenceServerConfiguration/users`` (bare JIDs at the server domain with a
    /// non-empty password) and the client port's needs (a TLS certificate).
    static func validate(_ configuration: ReferenceServerConfiguration) throws(ReferenceServerError) {
        for (text, password) in configuration.users {
            guard let jid = try? JID(text), jid.localpart != nil, jid.resourcepart == nil,
                jid.domainpart == configuration.domain.lowercased()
            else {
                throw ReferenceServerError(
                    .configuration, "user '\(text)' must be a bare JID at \(configuration.domain) (user@\(configuration.domain))")
            }
            guard !password.isEmpty else {
                throw ReferenceServerError(.configuration, "user \(text) has an empty password")
            }
        }
        if configuration.c2sPort != nil, configuration.tls == nil {
            throw ReferenceServerError(.configuration, "the client port requires TLS, but no certificate is configured")
        }
    }

    /// Starts the client listener when ``ReferenceServerConfiguration/c2sPort`` is set: writes
    /// the users into a private sasldb (a `0700` directory of its own, removed when the
    /// listener closes) and listens.
    /// - Returns: The listening channel, or `nil` when the client port is off.
    static func start(
        configuration: ReferenceServerConfiguration, group: any EventLoopGroup, router: ComponentRouter,
        tlsContext: OpenSSLContext?, logger: Logger
    ) async throws -> (any Channel)? {
        try self.validate(configuration)
        guard let port = configuration.c2sPort, let tlsContext else { return nil }
        let directory = try self.makePrivateDirectory()
        let sasldb = directory + "/users.sasldb"
        do {
            for (text, password) in configuration.users {
                let jid = try JID(text)
                try SASLDatabase.setPassword(
                    path: sasldb, user: jid.localpart ?? "", realm: configuration.domain, password: password)
            }
        } catch {
            self.remove(directory)
            throw error
        }
        var mechanisms: [String] = []
        for mechanism in configuration.sasl.mechanisms {
            let upper = mechanism.uppercased()
            let base = upper.hasSuffix("-PLUS") ? String(upper.dropLast(5)) : upper
            if base != "EXTERNAL", !mechanisms.contains(base) { mechanisms.append(base) }
        }
        let sasl = SASLServer.Configuration(
            sasldbPath: sasldb, serverFQDN: configuration.domain, realm: configuration.domain, mechanisms: mechanisms,
            scramIterationCount: configuration.sasl.scramIterationCount)
        let machine = C2SNegotiationStateMachine.Configuration(
            serverDomain: configuration.domain, maxAuthenticationFailures: configuration.maxAuthenticationFailures)
        let timeout = TimeAmount.nanoseconds(
            configuration.authenticationTimeout.components.seconds * 1_000_000_000
                + configuration.authenticationTimeout.components.attoseconds / 1_000_000_000)
        let limits = configuration.streamLimits
        // `-PLUS` only when configured: a client that can do no channel binding the server
        // offers (slixmpp 1.8 knows tls-unique only, which TLS 1.3 lacks) sends gs2 `y`,
        // which must fail while `-PLUS` is offered (RFC 5802 §6).
        let channelBinding = configuration.sasl.mechanisms.contains { $0.uppercased().hasSuffix("-PLUS") }
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addXMLStreamHandler(contentNamespace: Namespace.client, limits: limits, authenticated: false)
                        try sync.addHandler(
                            C2SStreamHandler(
                                machine: C2SNegotiationStateMachine(configuration: machine), router: router,
                                tlsContext: tlsContext, saslConfiguration: sasl, channelBinding: channelBinding,
                                authenticationTimeout: timeout, logger: logger))
                    }
                }
                .bind(host: configuration.host, port: port).get()
        } catch {
            self.remove(directory)
            throw error
        }
        channel.closeFuture.whenComplete { _ in self.remove(directory) }
        logger.info(
            "client port listening",
            metadata: ["c2s.port": "\(channel.localAddress?.port ?? port)", "c2s.users": "\(configuration.users.count)"])
        return channel
    }

    private static func makePrivateDirectory() throws(ReferenceServerError) -> String {
        var base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        if base.isEmpty { base = "/tmp" }
        while base.count > 1, base.hasSuffix("/") { base.removeLast() }
        var template = Array((base + "/reference-server-c2s-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in mkdtemp(buffer.baseAddress!) }
        guard made != nil else {
            throw ReferenceServerError(.configuration, "cannot create a private directory for the users' sasldb in \(base)")
        }
        return String(cString: template)
    }

    /// Removes the directory and the files in it (the sasldb and anything Cyrus added).
    private static func remove(_ directory: String) {
        if let handle = opendir(directory) {
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                    String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { unlink(directory + "/" + name) }
            }
            closedir(handle)
        }
        rmdir(directory)
    }
}
