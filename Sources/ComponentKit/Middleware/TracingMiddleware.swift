public import Tracing
public import XMPPCore

/// Makes a span per stanza (swift-distributed-tracing): `xmpp.iq`, `xmpp.message` or
/// `xmpp.presence`, of kind `server` for an IQ request and `consumer` otherwise, with the
/// stanza's type, id, addresses and payload namespace as attributes (never its content).
///
/// A ``/XMPPCore/StanzaError`` the handler throws is recorded as `xmpp.stanza.error` (an
/// answer, not a failure of the component); any other error is recorded on the span and
/// sets its status to error. Spans go to the tracer given, or to the one the application
/// bootstrapped (`InstrumentationSystem.bootstrap`), which is a no-op by default.
///
/// ```swift
/// let handler = router.using(TracingMiddleware())
/// ```
public struct TracingMiddleware: StanzaMiddleware {
    private let tracer: (any Tracer)?

    /// Creates the middleware.
    /// - Parameter tracer: The tracer; `InstrumentationSystem.tracer` when `nil` (the default).
    public init(tracer: (any Tracer)? = nil) {
        self.tracer = tracer
    }

    /// Runs `next` inside a span.
    public func handle(
        _ stanza: Stanza, context: ComponentContext, next: (Stanza, ComponentContext) async throws -> Void
    ) async throws {
        let tracer: any Tracer = self.tracer ?? InstrumentationSystem.tracer
        try await Self.trace(tracer, stanza, context, next)
    }

    private static func trace<T: Tracer>(
        _ tracer: T, _ stanza: Stanza, _ context: ComponentContext, _ next: (Stanza, ComponentContext) async throws -> Void
    ) async throws {
        let element = stanza.element
        let localName = element.name.localName
        var isRequest = false
        if case .iq(let iq) = stanza, iq.type.isRequest {
            isRequest = true
        }
        // A stanza error leaves the span as a value: `withSpan` marks a span failed when its
        // body throws, and an error answer is not a failure of the component.
        let answered: StanzaError? = try await tracer.withSpan(
            "xmpp.\(localName)", ofKind: isRequest ? .server : .consumer
        ) { span in
            span.attributes["xmpp.stanza.kind"] = localName
            span.attributes["xmpp.stanza.type"] = element["type"] ?? "-"
            span.attributes["xmpp.stanza.id"] = element["id"] ?? "-"
            span.attributes["xmpp.stanza.from"] = element["from"] ?? "-"
            span.attributes["xmpp.stanza.to"] = element["to"] ?? "-"
            span.attributes["xmpp.hostname"] = context.hostname
            if case .iq(let iq) = stanza, let payload = iq.payload {
                span.attributes["xmpp.payload.namespace"] = payload.name.namespace
            }
            do {
                try await next(stanza, context)
                return nil
            } catch let error as StanzaError {
                span.attributes["xmpp.stanza.error"] = error.condition.rawValue
                return error
            }
        }
        if let answered {
            throw answered
        }
    }
}
