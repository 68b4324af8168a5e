public import XMPPCore

/// Why a ``C2SClient`` could not connect, or why a wait on it failed.
public struct C2SClientError: Error, CustomStringConvertible, Sendable {
    /// The kinds of failure.
    public enum Kind: Sendable, Hashable {
        /// The TCP connection could not be made.
        case connectFailed
        /// The server offered no STARTTLS on a stream that is not yet encrypted.
        case tlsNotOffered
        /// STARTTLS or the TLS handshake failed (certificate verification included).
        case tlsFailed
        /// SASL failed (no mechanism, wrong password…).
        case authenticationFailed
        /// Resource binding (or the legacy session) failed.
        case bindFailed
        /// The server sent a stream error.
        case streamError
        /// The server sent something that makes no sense at that point.
        case unexpected
        /// The stream or the connection closed.
        case closed
        /// A deadline passed.
        case timeout
    }

    /// What went wrong.
    public var kind: Kind
    /// A sentence saying what and where.
    public var message: String
    /// The server's stream error, for ``Kind/streamError``.
    public var streamError: StreamError?

    /// Creates an error.
    public init(_ kind: Kind, _ message: String, streamError: StreamError? = nil) {
        self.kind = kind
        self.message = message
        self.streamError = streamError
    }

    /// The message.
    public var description: String { "C2SClient: \(self.message)" }
}
