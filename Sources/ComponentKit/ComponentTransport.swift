public import XMPPCore

/// What a ``ComponentContext`` does its work through: the connection that carries a
/// handler's stanzas, or a stand-in for tests.
///
/// ``ComponentConnection`` is the transport of every context it makes. Tests give a
/// handler a context over their own transport (the `ComponentKitTesting` product's
/// `TestContext` records everything a handler sends, requests, binds and unbinds), so a
/// handler can be tested from outside this package with no server and no socket.
///
/// A transport receives stanzas already addressed: the context fills in a missing `from`
/// and enforces the exactly-one-answer rule before calling ``send(_:)``.
public protocol ComponentTransport: Sendable {
    /// Sends a stanza (see ``ComponentConnection/send(_:)``).
    /// - Parameter stanza: The stanza, with its `from` set.
    func send(_ stanza: Stanza) async throws

    /// Sends an IQ request and waits for its answer (see
    /// ``ComponentConnection/request(_:timeout:redirects:)``).
    /// - Parameters:
    ///   - iq: A `get` or `set` with its `from` set.
    ///   - timeout: How long to wait; the transport's default when `nil`.
    ///   - redirects: Which IQ redirects to follow.
    /// - Returns: The `result` or `error` answer.
    func request(_ iq: IQ, timeout: Duration?, redirects: IQRedirectPolicy) async throws -> IQ

    /// Binds a hostname to a handler (see ``ComponentConnection/bind(_:handler:)``).
    /// - Parameters:
    ///   - hostname: The hostname (a domain, or `domain/resource`).
    ///   - handler: The handler for its stanzas.
    /// - Returns: The hostname the server bound.
    func bind(_ hostname: String, handler: some ComponentHandler) async throws -> String

    /// Unbinds a hostname (see ``ComponentConnection/unbind(_:)``).
    /// - Parameter hostname: The hostname.
    func unbind(_ hostname: String) async throws
}

extension ComponentConnection: ComponentTransport {}
