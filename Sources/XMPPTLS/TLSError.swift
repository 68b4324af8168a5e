/// An error raised by ``OpenSSLContext`` or ``OpenSSLHandler``.
///
/// Test against ``kind`` (or the static members without payload, such as ``closedDuringHandshake``);
/// ``description`` carries the human-readable detail, including OpenSSL's own error text.
public struct TLSError: Error, CustomStringConvertible, Hashable, Sendable {
    /// The category of a ``TLSError``.
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        private enum Base: Hashable {
            case configuration
            case handshakeFailed
            case certificateVerificationFailed
            case closedDuringHandshake
            case uncleanShutdown
            case protocolError
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// The configuration could not be applied (unreadable file, key mismatch, bad version range).
        public static let configuration = Self(.configuration)
        /// The handshake failed for a reason other than certificate verification.
        public static let handshakeFailed = Self(.handshakeFailed)
        /// The peer's certificate was rejected; see ``TLSError/verificationFailure``.
        public static let certificateVerificationFailed = Self(.certificateVerificationFailed)
        /// The connection closed before the handshake completed.
        public static let closedDuringHandshake = Self(.closedDuringHandshake)
        /// The connection closed without a TLS `close_notify` alert, so the data may have been truncated.
        public static let uncleanShutdown = Self(.uncleanShutdown)
        /// A fatal TLS error after the handshake (bad record, alert from the peer, refused renegotiation).
        public static let protocolError = Self(.protocolError)

        /// The name of the kind, for example `"handshakeFailed"`.
        public var description: String {
            switch self.base {
            case .configuration: "configuration"
            case .handshakeFailed: "handshakeFailed"
            case .certificateVerificationFailed: "certificateVerificationFailed"
            case .closedDuringHandshake: "closedDuringHandshake"
            case .uncleanShutdown: "uncleanShutdown"
            case .protocolError: "protocolError"
            }
        }
    }

    private enum Backing: Hashable {
        case configuration(String)
        case handshakeFailed(String)
        case certificateVerificationFailed(TLSVerificationFailure, String)
        case closedDuringHandshake
        case uncleanShutdown
        case protocolError(String)
    }

    private let backing: Backing

    private init(_ backing: Backing) {
        self.backing = backing
    }

    /// The configuration could not be applied.
    ///
    /// - Parameter message: What went wrong, for example `"cannot read certificate chain /x.pem: ..."`.
    public static func configuration(_ message: String) -> Self {
        Self(.configuration(message))
    }

    /// The handshake failed.
    ///
    /// - Parameter message: The reason, built from OpenSSL's error queue.
    public static func handshakeFailed(_ message: String) -> Self {
        Self(.handshakeFailed(message))
    }

    /// The peer's certificate was rejected.
    ///
    /// - Parameters:
    ///   - reason: Which check failed.
    ///   - message: OpenSSL's text for the verify result.
    public static func certificateVerificationFailed(_ reason: TLSVerificationFailure, _ message: String) -> Self {
        Self(.certificateVerificationFailed(reason, message))
    }

    /// The connection closed before the handshake completed.
    public static let closedDuringHandshake = Self(.closedDuringHandshake)

    /// The connection closed without a `close_notify` alert (possible truncation attack).
    public static let uncleanShutdown = Self(.uncleanShutdown)

    /// A fatal TLS error after the handshake.
    ///
    /// - Parameter message: The reason, built from OpenSSL's error queue.
    public static func protocolError(_ message: String) -> Self {
        Self(.protocolError(message))
    }

    /// The category of this error.
    public var kind: Kind {
        switch self.backing {
        case .configuration: .configuration
        case .handshakeFailed: .handshakeFailed
        case .certificateVerificationFailed: .certificateVerificationFailed
        case .closedDuringHandshake: .closedDuringHandshake
        case .uncleanShutdown: .uncleanShutdown
        case .protocolError: .protocolError
        }
    }

    /// Which certificate check failed, for ``Kind/certificateVerificationFailed``; otherwise `nil`.
    public var verificationFailure: TLSVerificationFailure? {
        if case .certificateVerificationFailed(let reason, _) = self.backing { return reason }
        return nil
    }

    /// A human-readable description of the error.
    public var description: String {
        switch self.backing {
        case .configuration(let message): "TLS configuration error: \(message)"
        case .handshakeFailed(let message): "TLS handshake failed: \(message)"
        case .certificateVerificationFailed(let reason, let message):
            "TLS certificate verification failed: \(reason) (\(message))"
        case .closedDuringHandshake: "TLS connection closed during the handshake"
        case .uncleanShutdown: "TLS connection closed without close_notify (possible truncation)"
        case .protocolError(let message): "TLS protocol error: \(message)"
        }
    }
}
