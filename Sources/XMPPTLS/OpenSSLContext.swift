import COpenSSL

/// An immutable OpenSSL `SSL_CTX` built from a client or server configuration, shared by many connections.
///
/// Create one per configuration and hand it to each ``OpenSSLHandler``. Renegotiation and compression are
/// always disabled, and only TLS 1.2 and newer are offered.
public final class OpenSSLContext: @unchecked Sendable {
    // @unchecked: `ctx` is fully configured in init and never mutated afterwards; OpenSSL allows
    // concurrent SSL_new on a shared, unmodified SSL_CTX.

    /// Whether connections act as the client or the server.
    enum Role: Sendable {
        case client(serverName: String, verify: Bool)
        case server
    }

    let ctx: OpaquePointer
    let role: Role

    /// Creates a client context.
    ///
    /// - Parameter configuration: The client settings.
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` if a file cannot be read or a setting is
    ///   invalid, including an empty server name with verification on (it would skip SNI, and
    ///   `SSL_set1_host("")` accepts any certificate the trust roots vouch for).
    public convenience init(client configuration: TLSClientConfiguration) throws(TLSError) {
        let verify = configuration.certificateVerification == .fullVerification
        if verify, configuration.serverName.allSatisfy(\.isWhitespace) {
            throw .configuration(
                "the TLS server name is empty: verification would accept any trusted certificate; set the server name "
                    + "(the name the server's certificate carries)")
        }
        try self.init(
            role: .client(serverName: configuration.serverName, verify: verify),
            minimumVersion: configuration.minimumVersion,
            maximumVersion: configuration.maximumVersion
        ) { ctx throws(TLSError) in
            if verify {
                try Self.loadTrustRoots(configuration.trustRoots, into: ctx)
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
            } else {
                SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
            }
            switch (configuration.certificateChainFile, configuration.privateKeyFile) {
            case (let chain?, let key?):
                try Self.loadIdentity(chain: chain, key: key, into: ctx)
            case (nil, nil):
                break
            default:
                throw .configuration("a client certificate needs both a certificate chain file and a private key file")
            }
        }
    }

    /// Creates a server context.
    ///
    /// - Parameter configuration: The server settings.
    /// - Throws: ``TLSError`` of kind ``TLSError/Kind/configuration`` if a file cannot be read or a setting is invalid.
    public convenience init(server configuration: TLSServerConfiguration) throws(TLSError) {
        try self.init(
            role: .server,
            minimumVersion: configuration.minimumVersion,
            maximumVersion: configuration.maximumVersion
        ) { ctx throws(TLSError) in
            try Self.loadIdentity(chain: configuration.certificateChainFile, key: configuration.privateKeyFile, into: ctx)
            switch configuration.clientCertificateRequest {
            case .none:
                SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
            case .optional(let roots):
                try Self.loadTrustRoots(roots, into: ctx)
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
            case .required(let roots):
                try Self.loadTrustRoots(roots, into: ctx)
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
            }
            // Required by OpenSSL for session resumption when client certificates are requested.
            let sessionContext: [UInt8] = Array("xmpp-tls".utf8)
            _ = SSL_CTX_set_session_id_context(ctx, sessionContext, UInt32(sessionContext.count))
        }
    }

    private init(
        role: Role,
        minimumVersion: TLSVersion,
        maximumVersion: TLSVersion?,
        configure: (OpaquePointer) throws(TLSError) -> Void
    ) throws(TLSError) {
        if let maximumVersion, maximumVersion < minimumVersion {
            throw .configuration("maximum version \(maximumVersion) is older than minimum version \(minimumVersion)")
        }
        OpenSSLErrorQueue.clear()
        let method: OpaquePointer?
        switch role {
        case .client: method = TLS_client_method()
        case .server: method = TLS_server_method()
        }
        guard let ctx = SSL_CTX_new(method) else {
            throw .configuration("cannot create SSL_CTX: \(OpenSSLErrorQueue.drain(fallback: "out of memory"))")
        }
        self.ctx = ctx
        self.role = role
        // From here on deinit frees ctx even if configuration throws.
        _ = SSL_CTX_set_options(ctx, cxmpp_SSL_OP_NO_RENEGOTIATION() | cxmpp_SSL_OP_NO_COMPRESSION())
        _ = cxmpp_SSL_CTX_set_min_proto_version(ctx, minimumVersion.openSSLValue)
        _ = cxmpp_SSL_CTX_set_max_proto_version(ctx, maximumVersion?.openSSLValue ?? 0)
        // Keep buffers small for idle connections; accept a moved write buffer on retry.
        _ = cxmpp_SSL_CTX_set_mode(ctx, Int(SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        try configure(ctx)
        OpenSSLErrorQueue.clear()
    }

    deinit {
        SSL_CTX_free(self.ctx)
    }

    private static func loadTrustRoots(_ roots: TLSTrustRoots, into ctx: OpaquePointer) throws(TLSError) {
        OpenSSLErrorQueue.clear()
        switch roots {
        case .system:
            if SSL_CTX_set_default_verify_paths(ctx) != 1 {
                throw .configuration("cannot load the system trust roots: \(OpenSSLErrorQueue.drain(fallback: "unknown error"))")
            }
        case .caFile(let path):
            if SSL_CTX_load_verify_file(ctx, path) != 1 {
                throw .configuration("cannot read CA file \(path): \(OpenSSLErrorQueue.drain(fallback: "unknown error"))")
            }
        case .caDirectory(let path):
            if SSL_CTX_load_verify_dir(ctx, path) != 1 {
                throw .configuration("cannot use CA directory \(path): \(OpenSSLErrorQueue.drain(fallback: "unknown error"))")
            }
        }
    }

    private static func loadIdentity(chain: String, key: String, into ctx: OpaquePointer) throws(TLSError) {
        OpenSSLErrorQueue.clear()
        if SSL_CTX_use_certificate_chain_file(ctx, chain) != 1 {
            throw .configuration("cannot read certificate chain \(chain): \(OpenSSLErrorQueue.drain(fallback: "unknown error"))")
        }
        if SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 {
            // OpenSSL also lands here when the key does not match the certificate ("key values mismatch").
            throw .configuration(
                "cannot read private key \(key) or it does not match certificate \(chain): "
                    + OpenSSLErrorQueue.drain(fallback: "unknown error")
            )
        }
        if SSL_CTX_check_private_key(ctx) != 1 {
            throw .configuration(
                "private key \(key) does not match certificate \(chain): \(OpenSSLErrorQueue.drain(fallback: "mismatch"))"
            )
        }
    }
}
