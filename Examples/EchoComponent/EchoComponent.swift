public import ComponentKit
public import XMPPCore

/// The smallest useful component: echoes every chat or normal message back to its
/// sender, and describes itself in service discovery.
///
/// ```swift
/// try connection.register("echo.example.com", handler: EchoComponent())
/// ```
public struct EchoComponent: ComponentHandler {
    /// The prefix put before each echoed body (empty by default).
    public var prefix: String

    /// Creates an echo component.
    /// - Parameter prefix: Text put before each echoed body.
    public init(prefix: String = "") {
        self.prefix = prefix
    }

    /// Advertised with XEP-0030: a `component/generic` identity named "Echo".
    public var discoInfo: DiscoInfo {
        DiscoInfo(identities: [.init(category: "component", type: "generic", name: "Echo")])
    }

    /// Echoes messages that have a body; ignores errors (never answer an error) and
    /// everything else. IQ requests fall through to the built-ins (disco, ping, version)
    /// or get `service-unavailable`.
    public func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        guard case .message(let message) = stanza, message.type != .error, let body = message.body else {
            return
        }
        try await context.send(message.reply(body: self.prefix + body))
    }
}
