public import ComponentKit
public import XMPPCore

/// The smallest useful component: echoes every message with a body back to its sender,
/// and describes itself in service discovery. Built on a ``ComponentKit/StanzaRouter``.
///
/// ```swift
/// try connection.register("echo.example.com", handler: EchoComponent())
/// ```
public struct EchoComponent: ComponentHandler {
    /// The prefix put before each echoed body (empty by default).
    public let prefix: String
    private let router: StanzaRouter

    /// Creates an echo component.
    /// - Parameter prefix: Text put before each echoed body.
    public init(prefix: String = "") {
        self.prefix = prefix
        var router = StanzaRouter(identity: .init(category: "component", type: "generic", name: "Echo"))
        // Any type but error (never answer an error); a message without a body is ignored.
        router.message { message, context in
            guard let body = message.body else { return }
            try await context.send(message.reply(body: prefix + body))
        }
        self.router = router
    }

    /// Advertised with XEP-0030: a `component/generic` identity named "Echo".
    public var discoInfo: DiscoInfo {
        self.router.discoInfo
    }

    /// Echoes messages that have a body; ignores errors and everything else. IQ requests
    /// fall through to the built-ins (disco, ping, version) or get `service-unavailable`.
    public func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        try await self.router.handle(stanza, in: context)
    }
}
