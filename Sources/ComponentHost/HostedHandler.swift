import ComponentKit
import CoreMetrics
import Logging
import Synchronization
import XMPPCore

/// The handler the host registers for a hostname: forwards to the plugin's handler (which
/// a reload can replace without unbinding), times IQ handling, counts stanzas started,
/// and lets the ``HandlerWatchdog`` see what is in progress.
final class HostedHandler: ComponentHandler, Sendable {
    struct Current: Sendable {
        var plugin: String
        var options: PluginOptions
        var handler: any ComponentHandler
    }

    let hostname: String
    let watchdog = HandlerWatchdog()
    let metrics: HostMetrics.Hostname
    private let current: Mutex<Current>
    private let started = Atomic<Int>(0)

    init(hostname: String, plugin: String, options: PluginOptions, handler: any ComponentHandler, metrics: HostMetrics.Hostname) {
        self.hostname = hostname
        self.metrics = metrics
        self.current = Mutex(Current(plugin: plugin, options: options, handler: handler))
    }

    /// The plugin, its options and its handler.
    var snapshot: Current {
        self.current.withLock { $0 }
    }

    /// Replaces the plugin's handler: the next stanza goes to the new one.
    func replace(plugin: String, options: PluginOptions, handler: any ComponentHandler) {
        self.current.withLock { $0 = Current(plugin: plugin, options: options, handler: handler) }
    }

    /// Records options applied in place (``PluginOptionsUpdatable``).
    func recordOptions(_ options: PluginOptions) {
        self.current.withLock { $0.options = options }
    }

    /// Stanzas that reached ``handle(_:in:)``.
    var stanzasStarted: Int {
        self.started.load(ordering: .relaxed)
    }

    var discoInfo: DiscoInfo {
        self.snapshot.handler.discoInfo
    }

    /// The plugin's choice (read when the hostname's handler loop starts).
    var execution: HandlerExecution {
        self.snapshot.handler.execution
    }

    func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        self.started.add(1, ordering: .relaxed)
        let handler = self.snapshot.handler
        let token = self.watchdog.begin(Self.describe(stanza))
        let start = ContinuousClock.now
        defer {
            if let took = self.watchdog.end(token) {
                context.logger.notice(
                    "hung handler finished", metadata: ["stanza.duration": "\(took)"])
                self.metrics.hung.record(0)
            }
            if case .iq(let iq) = stanza, iq.type.isRequest {
                self.metrics.iqLatency.recordNanoseconds(Self.nanoseconds(ContinuousClock.now - start))
            }
        }
        try await handler.handle(stanza, in: context)
    }

    func hostnameBound(_ hostname: String, in context: ComponentContext) async {
        await self.snapshot.handler.hostnameBound(hostname, in: context)
    }

    func hostnameUnbound(_ hostname: String) async {
        await self.snapshot.handler.hostnameUnbound(hostname)
    }

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

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
