import ComponentKit
import CoreMetrics
import Logging
import Synchronization
import XMPPCore

/// Tells a ``HandlerWatchdog`` which stanza the handler is working on, and logs and records
/// the end of a stanza the watchdog had reported hung.
struct HandlerWatchdogMiddleware: StanzaMiddleware {
    let watchdog: HandlerWatchdog
    let metrics: HostMetrics.Hostname

    func handle(
        _ stanza: Stanza, context: ComponentContext, next: (Stanza, ComponentContext) async throws -> Void
    ) async throws {
        let token = self.watchdog.begin(Self.describe(stanza))
        defer {
            if let took = self.watchdog.end(token) {
                context.logger.notice("hung handler finished", metadata: ["stanza.duration": "\(took)"])
                self.metrics.hung.record(0)
            }
        }
        try await next(stanza, context)
    }

    /// What the watchdog shows for a stanza: kind, type, payload namespace, id (no content).
    static func describe(_ stanza: Stanza) -> String {
        let id = stanza.id.map { " id=\($0)" } ?? ""
        switch stanza {
        case .message(let message): return "message \(message.type.rawValue)\(id)"
        case .presence: return "presence\(id)"
        case .iq(let iq):
            let payload = iq.payload.map { " \($0.name.namespace)" } ?? ""
            return "iq \(iq.type.rawValue)\(payload)\(id)"
        }
    }
}

/// Counts the stanzas that reached a hosted handler and times its IQ requests.
struct HandlerMetricsMiddleware: StanzaMiddleware {
    /// Stanzas started, shared with the ``HostedHandler`` that reports it.
    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    let started: Counter
    let metrics: HostMetrics.Hostname

    func handle(
        _ stanza: Stanza, context: ComponentContext, next: (Stanza, ComponentContext) async throws -> Void
    ) async throws {
        self.started.value.add(1, ordering: .relaxed)
        guard case .iq(let iq) = stanza, iq.type.isRequest else {
            try await next(stanza, context)
            return
        }
        let start = ContinuousClock.now
        defer { self.metrics.iqLatency.recordNanoseconds(Self.nanoseconds(ContinuousClock.now - start)) }
        try await next(stanza, context)
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
