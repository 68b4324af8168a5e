public import XMPPCore

/// An error from the SDK's connection-level operations: binding, sending, requests.
///
/// ``kind`` is for code; ``description`` is a sentence for people.
public struct ComponentError: Error, CustomStringConvertible, Hashable, Sendable {
    /// The kinds of errors.
    ///
    /// A struct rather than an enum, so that adding a kind does not break code that
    /// switches over them: compare with `==` or match with `case .timeout:` (a `switch`
    /// needs a `default`).
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case notConnected
            case bindRefused(StanzaError.Condition)
            case unbindRefused(StanzaError.Condition)
            case alreadyBound
            case notBound
            case invalidHostname
            case unboundSender
            case invalidStanza
            case timeout
            case connectionClosed
            case shuttingDown
            case protocolViolation
            case invalidRedirect
            case tooManyRedirects
            case queueFull
            case expired
            case invalidConfiguration
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// No stream is connected and the operation cannot wait.
        public static let notConnected = Kind(.notConnected)

        /// The server refused to bind a hostname (XEP-0225); see ``ComponentError/stanzaError``.
        /// - Parameter value: The condition.
        public static func bindRefused(_ value: StanzaError.Condition) -> Kind { Kind(.bindRefused(value)) }

        /// The server refused to unbind a hostname; see ``ComponentError/stanzaError``.
        /// - Parameter value: The condition.
        public static func unbindRefused(_ value: StanzaError.Condition) -> Kind { Kind(.unbindRefused(value)) }

        /// The hostname is already bound (or being bound) on this connection.
        public static let alreadyBound = Kind(.alreadyBound)

        /// The hostname is not bound on this connection.
        public static let notBound = Kind(.notBound)

        /// The hostname is not a valid domain (or `domain/resource`).
        public static let invalidHostname = Kind(.invalidHostname)

        /// An outgoing stanza's `from` is not under a bound hostname.
        public static let unboundSender = Kind(.unboundSender)

        /// An outgoing stanza is not valid (missing `to`, characters XML cannot carry…).
        public static let invalidStanza = Kind(.invalidStanza)

        /// No answer came within the timeout.
        public static let timeout = Kind(.timeout)

        /// The stream closed before the answer came.
        public static let connectionClosed = Kind(.connectionClosed)

        /// The connection is shutting down.
        public static let shuttingDown = Kind(.shuttingDown)

        /// The server answered in a way the protocol does not allow.
        public static let protocolViolation = Kind(.protocolViolation)

        /// An IQ answer redirected the request (error code 302) in a way that is not allowed:
        /// the original or redirected query is not a `get`, or its envelope changed more than `to`.
        public static let invalidRedirect = Kind(.invalidRedirect)

        /// An IQ request was redirected more than three times in a row.
        public static let tooManyRedirects = Kind(.tooManyRedirects)

        /// The hostname's outgoing queue (while disconnected) is full.
        public static let queueFull = Kind(.queueFull)

        /// The stanza waited in the outgoing queue longer than allowed.
        public static let expired = Kind(.expired)

        /// The configuration cannot work safely (see ``ComponentConfiguration/validate()``);
        /// the message names the setting to change.
        public static let invalidConfiguration = Kind(.invalidConfiguration)

        /// The kind's name, for logs.
        public var description: String {
            "\(self.base)"
        }
    }

    /// What went wrong.
    public let kind: Kind
    /// A sentence for people.
    public let message: String
    /// The server's stanza error, when it sent one.
    public let stanzaError: StanzaError?

    /// Creates an error.
    /// - Parameters:
    ///   - kind: What went wrong.
    ///   - message: A sentence for people.
    ///   - stanzaError: The server's stanza error, if any.
    public init(_ kind: Kind, _ message: String, stanzaError: StanzaError? = nil) {
        self.kind = kind
        self.message = message
        self.stanzaError = stanzaError
    }

    /// The message.
    public var description: String { self.message }
}
