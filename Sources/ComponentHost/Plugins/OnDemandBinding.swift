import ComponentKit
import Logging
import XMPPCore

/// A handler whose hostname the host does not bind when it starts: the handler binds it
/// when it has something to serve (the ``ExternalPlugin``: when its local component has
/// connected) and unbinds it when that goes away.
///
/// The host calls ``start(_:)`` once the hostname is served (at start or on a runtime
/// `bind`), and ``stop()`` before it unbinds the hostname for good (runtime `unbind`,
/// reload, shutdown).
protocol OnDemandBinding: ComponentHandler {
    /// Starts serving: the handler may now call the runtime's `bind` and `unbind`.
    func start(_ runtime: OnDemandRuntime)
    /// Stops serving; the host unbinds the hostname after this returns.
    func stop() async
}

/// What the host gives an ``OnDemandBinding`` handler.
struct OnDemandRuntime: Sendable {
    /// The hostname.
    var hostname: String
    /// The local listeners and supervised processes of the host.
    var gateway: ExternalGateway
    /// Registers the hostname on the host's connection (bound now if a stream is up, and
    /// after every reconnect). Throws ``/ComponentKit/ComponentError`` (`alreadyBound` while a
    /// previous unbind is in flight).
    var bind: @Sendable () throws -> Void
    /// Unbinds the hostname from the host's connection (waits for the server's answer).
    var unbind: @Sendable () async -> Void
    /// Sends a stanza upstream (waiting in the hostname's bounded queue while it is not bound).
    var send: @Sendable (Stanza) async throws -> Void
    /// Stanzas received for the hostname and not yet handled (its mailbox).
    var pendingStanzas: @Sendable () -> Int
    /// Whether the host's upstream stream is up.
    var isUpstreamConnected: @Sendable () -> Bool
    /// A logger with the hostname's metadata.
    var logger: Logger
}
