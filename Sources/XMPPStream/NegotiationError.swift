public import XMPPCore

/// Why a component stream could not be negotiated: TLS, authentication, binding
/// support, or the legacy handshake.
///
/// Each error names what went wrong in words an operator can act on; ``kind`` is for code.
public struct NegotiationError: Error, CustomStringConvertible, Sendable, Hashable {
    /// The kinds of negotiation failure.
    ///
    /// A struct rather than an enum, so that adding a kind does not break code that
    /// switches over them: compare with `==` or match with `case .timeout:` (a `switch`
    /// needs a `default`).
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case tlsNotOffered
            case serverRequiresTLS
            case tlsRefusedByServer
            case noSASLMechanisms
            case authenticationFailed
            case noComponentBinding
            case streamError(StreamError.Condition)
            case handshakeRejected
            case unexpectedElement(QualifiedName)
            case invalidStreamHeader
            case closedDuringNegotiation
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// TLS is required but the server offered no STARTTLS; nothing was sent in cleartext.
        public static let tlsNotOffered = Kind(.tlsNotOffered)

        /// The server requires STARTTLS but the configuration disables TLS.
        public static let serverRequiresTLS = Kind(.serverRequiresTLS)

        /// The server answered `<starttls/>` with `<failure/>`.
        public static let tlsRefusedByServer = Kind(.tlsRefusedByServer)

        /// The server offered no SASL mechanisms where authentication was due.
        public static let noSASLMechanisms = Kind(.noSASLMechanisms)

        /// SASL authentication failed (see ``NegotiationError/underlying``).
        public static let authenticationFailed = Kind(.authenticationFailed)

        /// Authenticated, but the server's features carry no XEP-0225 `<bind xmlns='urn:xmpp:component:0'/>`.
        public static let noComponentBinding = Kind(.noComponentBinding)

        /// The server sent a stream error.
        /// - Parameter value: The condition.
        public static func streamError(_ value: StreamError.Condition) -> Kind { Kind(.streamError(value)) }

        /// The legacy handshake was refused (`not-authorized`): the secret is wrong for the hostname.
        public static let handshakeRejected = Kind(.handshakeRejected)

        /// The server sent an element that has no place at this point of the negotiation.
        /// - Parameter value: The value.
        public static func unexpectedElement(_ value: QualifiedName) -> Kind { Kind(.unexpectedElement(value)) }

        /// The server's stream header is unusable (wrong namespace, version or missing id).
        public static let invalidStreamHeader = Kind(.invalidStreamHeader)

        /// The stream or connection closed before negotiation finished.
        public static let closedDuringNegotiation = Kind(.closedDuringNegotiation)

        /// The kind's name, for logs.
        public var description: String {
            "\(self.base)"
        }
    }

    /// What went wrong.
    public let kind: Kind
    /// A sentence for operators.
    public let message: String
    /// The stream error the server sent, for ``Kind/streamError(_:)`` and ``Kind/handshakeRejected``.
    public let streamError: StreamError?
    /// The underlying error (e.g. the SASL or TLS error), if any.
    public let underlying: (any Error & Sendable)?
    /// Whether the server's stream error arrived inside TLS (a verified TLS session was up):
    /// a `see-other-host` is followed only then.
    public internal(set) var streamErrorOverTLS = false

    /// Creates a negotiation error.
    /// - Parameters:
    ///   - kind: What went wrong.
    ///   - message: A sentence for operators.
    ///   - streamError: The server's stream error, if any.
    ///   - underlying: The underlying error, if any.
    public init(
        _ kind: Kind,
        _ message: String,
        streamError: StreamError? = nil,
        underlying: (any Error & Sendable)? = nil
    ) {
        self.kind = kind
        self.message = message
        self.streamError = streamError
        self.underlying = underlying
    }

    /// Errors are equal when kind, message and stream error are; the underlying error is not compared.
    public static func == (lhs: NegotiationError, rhs: NegotiationError) -> Bool {
        lhs.kind == rhs.kind && lhs.message == rhs.message && lhs.streamError == rhs.streamError
    }

    /// Hashes kind, message and stream error.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.kind)
        hasher.combine(self.message)
        hasher.combine(self.streamError)
    }

    /// The message, followed by the underlying error when there is one.
    public var description: String {
        if let underlying = self.underlying {
            return "\(self.message): \(underlying)"
        }
        return self.message
    }

    /// Maps a stream error received during negotiation to the clearest error.
    /// - Parameters:
    ///   - error: The server's stream error.
    ///   - hostname: The hostname being connected, for the message.
    ///   - legacy: Whether this is a XEP-0114 handshake stream.
    static func from(_ error: StreamError, hostname: String, legacy: Bool) -> NegotiationError {
        let detail = error.text.map { ": \($0)" } ?? ""
        switch error.condition {
        case .notAuthorized where legacy:
            return NegotiationError(
                .handshakeRejected,
                "the server rejected the XEP-0114 handshake for \(hostname) (not-authorized): the secret is wrong\(detail)",
                streamError: error)
        case .hostUnknown:
            return NegotiationError(
                .streamError(.hostUnknown),
                "the server does not serve \(hostname) (host-unknown): configure it as a component there\(detail)",
                streamError: error)
        case .conflict:
            return NegotiationError(
                .streamError(.conflict),
                "\(hostname) is already connected to the server (conflict)\(detail)",
                streamError: error)
        default:
            return NegotiationError(
                .streamError(error.condition),
                "the server ended the stream: \(error)",
                streamError: error)
        }
    }
}
