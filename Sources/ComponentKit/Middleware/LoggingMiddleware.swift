public import Logging
public import XMPPCore

/// Logs every stanza a handler receives and how it went: kind, type, id, addresses and
/// payload namespace, never the content (bodies and payloads can hold secrets).
///
/// One line when the stanza arrives (at ``level``) and one when the handler is done, with
/// `stanza.outcome` = `done` or `threw` and the error; a thrown ``/XMPPCore/StanzaError``
/// is logged at ``level`` (it is an answer), any other error at `error`.
///
/// ```swift
/// let handler = router.using(LoggingMiddleware(level: .info))
/// ```
public struct LoggingMiddleware: StanzaMiddleware {
    /// The level of the lines.
    public var level: Logger.Level

    /// Creates the middleware.
    /// - Parameter level: The level of the lines; `debug` by default.
    public init(level: Logger.Level = .debug) {
        self.level = level
    }

    /// Logs, calls `next`, logs the outcome.
    public func handle(
        _ stanza: Stanza, context: ComponentContext, next: (Stanza, ComponentContext) async throws -> Void
    ) async throws {
        var metadata = Self.metadata(stanza)
        context.logger.log(level: self.level, "stanza received", metadata: metadata)
        do {
            try await next(stanza, context)
            metadata["stanza.outcome"] = "done"
            context.logger.log(level: self.level, "stanza handled", metadata: metadata)
        } catch let error as StanzaError {
            metadata["stanza.outcome"] = "threw"
            metadata["stanza.error"] = "\(error.condition.rawValue)"
            context.logger.log(level: self.level, "stanza handled", metadata: metadata)
            throw error
        } catch {
            metadata["stanza.outcome"] = "threw"
            metadata["error"] = "\(error)"
            context.logger.error("stanza handled", metadata: metadata)
            throw error
        }
    }

    /// What is logged about a stanza: no body, no payload content.
    static func metadata(_ stanza: Stanza) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "stanza.kind": "\(stanza.element.name.localName)",
            "stanza.type": "\(stanza.element["type"] ?? "-")",
            "stanza.id": "\(stanza.id ?? "-")",
            "stanza.from": "\(stanza.element["from"] ?? "-")",
            "stanza.to": "\(stanza.element["to"] ?? "-")",
        ]
        if case .iq(let iq) = stanza, let payload = iq.payload {
            metadata["stanza.payload"] = "\(payload.name.namespace) \(payload.name.localName)"
        }
        return metadata
    }
}
