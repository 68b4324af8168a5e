import COpenSSL
import NIOCore

/// One TLS connection: owns the `SSL*` and, through it, the two memory BIOs.
///
/// Ciphertext from the network is written into `rbio`; ciphertext for the network is read from `wbio`.
/// Not thread-safe: used only on the channel's event loop by ``OpenSSLHandler``.
final class OpenSSLConnection {
    enum HandshakeResult {
        case complete
        case wantRead
        case failed(TLSError)
    }

    enum ReadResult {
        /// Plaintext was appended to the buffer; call again.
        case read
        /// No complete record is buffered.
        case wantRead
        /// The peer sent `close_notify`.
        case closeNotify
        case failed(TLSError)
    }

    /// The largest plaintext a TLS record carries.
    static let maximumRecordPlaintext = 16_384

    private let ssl: OpaquePointer
    private let rbio: OpaquePointer
    private let wbio: OpaquePointer
    /// Keeps the `SSL_CTX` alive at least as long as the `SSL`.
    private let context: OpenSSLContext
    let isClient: Bool

    init(context: OpenSSLContext, serverName: String?) throws(TLSError) {
        OpenSSLErrorQueue.clear()
        guard let ssl = SSL_new(context.ctx) else {
            throw .configuration("cannot create SSL: \(OpenSSLErrorQueue.drain(fallback: "out of memory"))")
        }
        guard let rbio = BIO_new(BIO_s_mem()), let wbio = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw .configuration("cannot create memory BIOs: \(OpenSSLErrorQueue.drain(fallback: "out of memory"))")
        }
        // SSL_set_bio transfers ownership of both BIOs to `ssl`; SSL_free releases them.
        SSL_set_bio(ssl, rbio, wbio)
        self.ssl = ssl
        self.rbio = rbio
        self.wbio = wbio
        self.context = context

        switch context.role {
        case .server:
            self.isClient = false
            SSL_set_accept_state(ssl)
        case .client(let configuredName, let verify):
            self.isClient = true
            SSL_set_connect_state(ssl)
            let host = serverName ?? configuredName
            if verify, host.allSatisfy(\.isWhitespace) {
                throw .configuration(
                    "the TLS server name is empty: verification would accept any trusted certificate; set the server name")
            }
            let isIPAddress = Self.isIPAddress(host)
            // RFC 6066: literal IP addresses are not sent as SNI.
            if !isIPAddress, !host.isEmpty, cxmpp_SSL_set_tlsext_host_name(ssl, host) != 1 {
                throw .configuration("invalid server name \(host): \(OpenSSLErrorQueue.drain(fallback: "rejected"))")
            }
            if verify {
                if isIPAddress {
                    if X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1 {
                        throw .configuration("invalid IP address \(host)")
                    }
                } else {
                    SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                    if SSL_set1_host(ssl, host) != 1 {
                        throw .configuration("invalid server name \(host): \(OpenSSLErrorQueue.drain(fallback: "rejected"))")
                    }
                }
            }
        }
    }

    deinit {
        SSL_free(self.ssl)
    }

    private static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || (!host.isEmpty && host.allSatisfy { $0 == "." || $0.isASCII && $0.isNumber })
    }

    // MARK: Ciphertext in and out

    /// Hands ciphertext received from the network to OpenSSL.
    func feed(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let chunk = min(bytes.count - offset, Int(Int32.max))
                // A memory BIO grows as needed; a write only fails on allocation failure.
                let written = BIO_write(self.rbio, bytes.baseAddress! + offset, Int32(chunk))
                if written <= 0 { break }
                offset += Int(written)
            }
        }
    }

    /// Moves all pending ciphertext out of the write BIO into one buffer, or returns `nil` if there is none.
    func drainOutput(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = BIO_ctrl_pending(self.wbio)
        guard pending > 0 else { return nil }
        var buffer = allocator.buffer(capacity: pending)
        while true {
            let remaining = BIO_ctrl_pending(self.wbio)
            if remaining == 0 { break }
            let read = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: remaining) { target in
                let count = min(target.count, Int(Int32.max))
                return max(0, Int(BIO_read(self.wbio, target.baseAddress, Int32(count))))
            }
            if read == 0 { break }
        }
        return buffer
    }

    // MARK: TLS operations

    func handshake() -> HandshakeResult {
        OpenSSLErrorQueue.clear()
        let rc = SSL_do_handshake(self.ssl)
        if rc == 1 { return .complete }
        switch SSL_get_error(self.ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantRead
        case SSL_ERROR_ZERO_RETURN:
            OpenSSLErrorQueue.clear()
            return .failed(.closedDuringHandshake)
        default:
            return .failed(self.handshakeError())
        }
    }

    private func handshakeError() -> TLSError {
        let verifyResult = SSL_get_verify_result(self.ssl)
        let verifying = SSL_get_verify_mode(self.ssl) & SSL_VERIFY_PEER != 0
        if verifying, verifyResult != X509_V_OK {
            let text = X509_verify_cert_error_string(verifyResult).map { String(cString: $0) } ?? "unknown"
            OpenSSLErrorQueue.clear()
            return .certificateVerificationFailed(TLSVerificationFailure(verifyResult: verifyResult), text)
        }
        return .handshakeFailed(OpenSSLErrorQueue.drain(fallback: "the peer or OpenSSL aborted the handshake"))
    }

    /// Decrypts at most one record's worth of plaintext into `buffer`.
    func read(into buffer: inout ByteBuffer) -> ReadResult {
        OpenSSLErrorQueue.clear()
        var rc: Int32 = 0
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.maximumRecordPlaintext) { target in
            var readBytes = 0
            rc = SSL_read_ex(self.ssl, target.baseAddress, target.count, &readBytes)
            return rc == 1 ? readBytes : 0
        }
        if rc == 1 { return .read }
        switch SSL_get_error(self.ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantRead
        case SSL_ERROR_ZERO_RETURN:
            return .closeNotify
        default:
            return .failed(.protocolError(OpenSSLErrorQueue.drain(fallback: "the connection failed")))
        }
    }

    /// Encrypts all of `buffer` into the write BIO.
    func write(_ buffer: ByteBuffer) -> TLSError? {
        buffer.withUnsafeReadableBytes { bytes -> TLSError? in
            var offset = 0
            while offset < bytes.count {
                OpenSSLErrorQueue.clear()
                var written = 0
                let rc = SSL_write_ex(self.ssl, bytes.baseAddress! + offset, bytes.count - offset, &written)
                if rc != 1 {
                    switch SSL_get_error(self.ssl, rc) {
                    case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                        // Cannot happen with a growing memory BIO and no renegotiation; treat as failure
                        // rather than spin.
                        return .protocolError("OpenSSL could not accept application data")
                    default:
                        return .protocolError(OpenSSLErrorQueue.drain(fallback: "write failed"))
                    }
                }
                offset += written
            }
            return nil
        }
    }

    /// Queues a `close_notify` alert in the write BIO. Does not wait for the peer's.
    func shutdown() {
        OpenSSLErrorQueue.clear()
        _ = SSL_shutdown(self.ssl)
        OpenSSLErrorQueue.clear()
    }

    // MARK: Session information

    /// Captures version, cipher, peer certificate and channel bindings; call once the handshake completed.
    func makeSessionInfo() -> TLSSessionInfo {
        let version = TLSVersion(openSSLValue: SSL_version(self.ssl)) ?? .v1_2
        var cipherName = "unknown"
        if let cipher = SSL_get_current_cipher(self.ssl) {
            if let name = SSL_CIPHER_standard_name(cipher) ?? SSL_CIPHER_get_name(cipher) {
                cipherName = String(cString: name)
            }
        }

        var peerDER: [UInt8]?
        var serverEndPoint: [UInt8]?
        if let peer = SSL_get1_peer_certificate(self.ssl) {
            peerDER = Self.der(of: peer)
            if self.isClient { serverEndPoint = Self.serverEndPointHash(of: peer) }
            X509_free(peer)
        }
        if !self.isClient, let own = SSL_get_certificate(self.ssl) {
            serverEndPoint = Self.serverEndPointHash(of: own)
        }

        var exporter = [UInt8](repeating: 0, count: 32)
        let label = "EXPORTER-Channel-Binding"
        let dummyContext: [UInt8] = [0]
        let exported = SSL_export_keying_material(
            self.ssl, &exporter, exporter.count, label, label.utf8.count, dummyContext, 0, 1
        )

        var unique: [UInt8]?
        if version == .v1_2 {
            // RFC 5929: the first Finished message: the client's on a full handshake, the server's on resumption.
            let resumed = SSL_session_reused(self.ssl) == 1
            var finished = [UInt8](repeating: 0, count: 64)
            let length =
                self.isClient != resumed
                ? SSL_get_finished(self.ssl, &finished, finished.count)
                : SSL_get_peer_finished(self.ssl, &finished, finished.count)
            if length > 0 { unique = Array(finished.prefix(length)) }
        }
        OpenSSLErrorQueue.clear()

        return TLSSessionInfo(
            version: version,
            cipherSuite: cipherName,
            peerCertificateDER: peerDER,
            tlsExporter: exported == 1 ? exporter : nil,
            tlsServerEndPoint: serverEndPoint,
            tlsUnique: unique
        )
    }

    private static func der(of certificate: OpaquePointer) -> [UInt8]? {
        let length = i2d_X509(certificate, nil)
        guard length > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        let written = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor = buffer.baseAddress
            return i2d_X509(certificate, &cursor)
        }
        return written == length ? bytes : nil
    }

    /// RFC 5929 §4.1: hash the certificate with its signature's digest; MD5 and SHA-1 become SHA-256.
    private static func serverEndPointHash(of certificate: OpaquePointer) -> [UInt8]? {
        var digestNID: Int32 = 0
        var keyNID: Int32 = 0
        guard OBJ_find_sigid_algs(X509_get_signature_nid(certificate), &digestNID, &keyNID) == 1 else { return nil }
        if digestNID == NID_md5 || digestNID == NID_sha1 { digestNID = NID_sha256 }
        guard digestNID != NID_undef, let shortName = OBJ_nid2sn(digestNID),
            let digest = EVP_get_digestbyname(shortName)
        else { return nil }
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard X509_digest(certificate, digest, &output, &length) == 1 else { return nil }
        return Array(output.prefix(Int(length)))
    }
}
