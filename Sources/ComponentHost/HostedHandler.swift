import ComponentKit
import Synchronization
import XMPPCore

/// The handler the host registers for a hostname: the plugin's handler (which a reload can
/// replace without unbinding) behind the host's middleware: ``HandlerMetricsMiddleware``
/// (stanzas started, IQ latency) and ``HandlerWatchdogMiddleware`` (what is in progress,
/// for the ``HandlerWatchdog``).
final class HostedHandler: ComponentHandler, Sendable {
    struct Current: Sendable {
        var plugin: String
        var options: PluginOptions
        var handler: any ComponentHandler
    }

    /// The end of the middleware chain: whichever plugin handler is current.
    private struct Swappable: ComponentHandler {
        let owner: HostedHandler

        func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
            try await self.owner.snapshot.handler.handle(stanza, in: context)
        }
    }

    let hostname: String
    let watchdog = HandlerWatchdog()
    let metrics: HostMetrics.Hostname
    private let current: Mutex<Current>
    private let started = HandlerMetricsMiddleware.Counter()
    private let middleware: [any StanzaMiddleware]

    init(hostname: String, plugin: String, options: PluginOptions, handler: any ComponentHandler, metrics: HostMetrics.Hostname) {
        self.hostname = hostname
        self.metrics = metrics
        self.current = Mutex(Current(plugin: plugin, options: options, handler: handler))
        self.middleware = [
            HandlerMetricsMiddleware(started: self.started, metrics: metrics),
            HandlerWatchdogMiddleware(watchdog: self.watchdog, metrics: metrics),
        ]
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
        self.started.value.load(ordering: .relaxed)
    }

    var discoInfo: DiscoInfo {
        self.snapshot.handler.discoInfo
    }

    var features: [any ComponentFeature] {
        self.snapshot.handler.features
    }

    /// The plugin's choice (read when the hostname's handler loop starts).
    var execution: HandlerExecution {
        self.snapshot.handler.execution
    }

    func handle(_ stanza: Stanza, in context: ComponentContext) async throws {
        try await MiddlewareHandler(self.middleware, handler: Swappable(owner: self)).handle(stanza, in: context)
    }

    func hostnameBound(_ hostname: String, in context: ComponentContext) async {
        await self.snapshot.handler.hostnameBound(hostname, in: context)
    }

    func hostnameUnbound(_ hostname: String) async {
        await self.snapshot.handler.hostnameUnbound(hostname)
    }
}
