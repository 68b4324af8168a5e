public import XMPPCore

/// An error from the SDK's connection-level operations: binding, sending, requests.
///
/// ``kind`` is for code; ``description`` is a sentence for people.
public struct ComponentError: Error, CustomStringConvertible, Hashable, Sendable {
    /// The kinds of errors.
    public enum Kind: Hashable, Sendable {
        /// No stream is connected and the operation cannot wait.
        case notConnected
        /// The server refused to bind a hostname (XEP-0225); see ``ComponentError/stanzaError``.
        case bindRefused(StanzaError.Condition)
        /// The server refused to unbind a hostname; see ``ComponentError/stanzaError``.
        case unbindRefused(StanzaError.Condition)
        /// The hostname is already bound (or being bound) on this connection.
        case alreadyBound
        /// The hostname is not bound on this connection.
        case notBound
        /// The hostname is not a valid domain (or `domain/resource`).
        case invalidHostname
        /// An outgoing stanza's `from` is not under a bound hostname.
        case unboundSender
        /// An outgoing stanza is not valid (missing `to`, characters XML cannot carry…).
        case invalidStanza
        /// No answer came within the timeout.
        case timeout
        /// The stream closed before the answer came.
        case connectionClosed
        /// The connection is shutting down.
        case shuttingDown
        /// The server answered in a way the protocol does not allow.
        case protocolViolation
        /// An IQ answer redirected the request (error code 302) in a way that is not allowed:
        /// the original or redirected query is not a `get`, or its envelope changed more than `to`.
        case invalidRedirect
        /// An IQ request was redirected more than three times in a row.
        case tooManyRedirects
        /// The hostname's outgoing queue (while disconnected) is full.
        case queueFull
        /// The stanza waited in the outgoing queue longer than allowed.
        case expired
        /// The configuration cannot work safely (see ``ComponentConfiguration/validate()``);
        /// the message names the setting to change.
        case invalidConfiguration
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
