public import ComponentKit
import CoreMetrics
import Foundation
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import XMPPCore

/// Runs plugins on a ``/ComponentKit/ComponentConnection`` as a configuration describes,
/// and changes what runs while it runs: ``reload(from:)`` (SIGHUP), ``bind(_:plugin:options:weight:persist:)``
/// and ``unbind(_:persist:)`` (the admin socket).
///
/// ```swift
/// let configuration = try HostConfiguration.load(path: "host.toml", registry: registry)
/// let host = try ComponentHost(configuration: configuration, registry: registry, logger: logger)
/// try await ServiceGroup(services: [host], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
///
/// Every hostname is registered with a wrapping handler that forwards to the plugin's
/// handler, so a reload can give a hostname new options (or another plugin) without
/// unbinding it, and a watchdog can notice a handler that hangs: after
/// `watchdogThreshold` on one stanza it is logged (error), counted
/// (`xmpp_component_handler_hangs_total`) and shown in ``status``. ComponentKit runs each
/// hostname's handler on its own task, so a hung or throwing plugin does not hold up the
/// others.
public actor ComponentHost: Service {
    /// Where a served hostname came from.
    public enum Origin: String, Codable, Hashable, Sendable {
        /// The configuration file (or a bind written back to it with `persist`).
        case configuration
        /// A runtime bind that was not persisted: kept across reloads and reconnects,
        /// forgotten on restart.
        case runtime
    }

    /// What a reload did.
    public struct ReloadReport: Sendable {
        /// The changes applied.
        public var plan: ReloadPlan
        /// Hostnames whose change failed (e.g. the server refused the bind), with why.
        public var failures: [String: String]
        /// Settings that changed in the file but take effect only after a restart.
        public var restartRequired: [String]
    }

    private struct Entry {
        var hostname: String
        var origin: Origin
        var handler: HostedHandler
    }

    /// The plugins this host can run.
    public nonisolated let registry: PluginRegistry
    /// The connection (created from the configuration at init).
    public nonisolated let connection: ComponentConnection
    nonisolated let logger: Logger
    nonisolated let metrics: HostMetrics
    nonisolated let watchdogThreshold: Duration
    /// The local listeners and supervised commands of ``ExternalPlugin`` hostnames.
    nonisolated let gateway: ExternalGateway
    private var currentConfiguration: HostConfiguration
    private var entries: [String: Entry] = [:]
    private var isRunning = false

    /// Creates a host and registers every configured hostname; nothing connects until ``run()``.
    /// - Parameters:
    ///   - configuration: A validated configuration.
    ///   - registry: The plugins; the configuration's plugin names must be in it.
    ///   - logger: The logger (secrets are never logged).
    ///   - metrics: Where metrics go; created once per host.
    ///   - watchdogThreshold: How long a handler may spend on one stanza before it is reported hung.
    ///   - eventLoopGroup: The NIO event loops.
    /// - Throws: ``PluginError`` when a plugin refuses its options; ``/ComponentKit/ComponentError``
    ///   for an invalid hostname.
    public init(
        configuration: HostConfiguration, registry: PluginRegistry = .standard, logger: Logger,
        metrics: HostMetrics = HostMetrics(), watchdogThreshold: Duration = .seconds(10),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws {
        self.registry = registry
        self.logger = logger
        self.metrics = metrics
        self.watchdogThreshold = watchdogThreshold
        self.currentConfiguration = configuration
        self.connection = ComponentConnection(
            configuration: configuration.componentConfiguration, logger: logger, eventLoopGroup: eventLoopGroup)
        let connection = self.connection
        self.gateway = ExternalGateway(
            eventLoop: connection.streamEventLoop, logger: logger, isUpstreamConnected: { connection.status.isConnected })
        for component in configuration.components {
            let handler = try Self.makeHosted(
                component.hostname, plugin: component.plugin, options: component.options, registry: registry,
                logger: logger, metrics: metrics)
            if let onDemand = handler.snapshot.handler as? any OnDemandBinding {
                onDemand.start(
                    Self.onDemandRuntime(
                        component.hostname, weight: component.weight, hosted: handler, connection: connection,
                        gateway: self.gateway, logger: logger))
            } else {
                try self.connection.register(component.hostname, weight: component.weight, handler: handler)
            }
            self.entries[Self.key(component.hostname)] = Entry(
                hostname: component.hostname, origin: .configuration, handler: handler)
        }
    }

    /// The configuration in force (the last one loaded or reloaded).
    public var configuration: HostConfiguration {
        self.currentConfiguration
    }

    // MARK: Service

    /// Connects, binds, serves; watches handlers and samples metrics every second; returns
    /// after graceful shutdown (every hostname unbound, the stream closed, bounded by
    /// ComponentKit's timeouts).
    public func run() async throws {
        guard !self.isRunning else { throw HostError("the host is already running") }
        self.isRunning = true
        defer { self.isRunning = false }
        let events = self.connection.events()
        self.logger.info(
            "component host starting",
            metadata: [
                "server": "\(self.currentConfiguration.server.host):\(self.currentConfiguration.server.port)",
                "server.protocol": "\(self.currentConfiguration.server.protocolMode.rawValue)",
                "hostnames": "\(self.entries.count)",
            ])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.observe(events) }
            group.addTask { await self.monitor() }
            group.addTask { await self.gateway.run() }
            defer { group.cancelAll() }
            try await self.connection.run()
        }
        self.metrics.connected.record(0)
        self.logger.info("component host stopped")
    }

    private nonisolated func observe(_ events: AsyncStream<ComponentEvent>) async {
        var attempts = 0
        for await event in events {
            switch event.kind {
            case .connecting:
                attempts += 1
                if attempts > 1 { self.metrics.reconnects.increment() }
            case .connected:
                self.metrics.connected.record(1)
                self.logger.info(
                    "connected",
                    metadata: [
                        "connection.protocol": "\(event.info.map { Self.protocolName($0.protocolMode) } ?? "-")",
                        "connection.tls": "\(event.info?.tlsVersion ?? "none")",
                        "connection.sasl": "\(event.info?.saslMechanism ?? "none")",
                    ])
            case .fellBackToLegacy:
                self.logger.notice("falling back to XEP-0114", metadata: ["reason": "\(event.reason ?? "-")"])
            case .disconnected:
                self.metrics.connected.record(0)
                self.metrics.disconnects.increment()
                self.logger.info("disconnected", metadata: ["reason": "\(event.reason ?? "-")"])
            case .bindFailed:
                self.metrics.bindErrors.increment()
                self.logger.warning(
                    "bind failed",
                    metadata: ["component.hostname": "\(event.hostname ?? "-")", "reason": "\(event.reason ?? "-")"])
            default:
                break
            }
        }
    }

    private func monitor() async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: .seconds(1))
            } catch {
                return
            }
            self.checkWatchdogs()
            self.sampleMetrics()
        }
    }

    /// Reports handlers stuck on one stanza for longer than the threshold (once per stanza).
    func checkWatchdogs(now: ContinuousClock.Instant = .now) {
        for entry in self.entries.values {
            for hang in entry.handler.watchdog.check(now: now, threshold: self.watchdogThreshold) {
                entry.handler.metrics.hangs.increment()
                entry.handler.metrics.hung.record(1)
                self.logger.error(
                    "handler hung",
                    metadata: [
                        "component.hostname": "\(entry.hostname)",
                        "component.plugin": "\(entry.handler.snapshot.plugin)",
                        "stanza": "\(hang.stanza)",
                        "stanza.duration": "\(hang.duration)",
                    ])
            }
        }
    }

    /// Copies ComponentKit's per-hostname counters into metrics.
    public func sampleMetrics() {
        let status = self.connection.status
        for hostname in status.hostnames {
            let key = Self.key(hostname.hostname)
            let started = self.entries[key]?.handler.stanzasStarted ?? hostname.stanzasIn
            self.metrics.observe(
                hostname: key, stanzasIn: hostname.stanzasIn, stanzasOut: hostname.stanzasOut, started: started)
        }
    }

    // MARK: Runtime changes

    /// Binds a hostname to a plugin while the host runs (or registers it, to be bound when
    /// a stream is up).
    /// - Parameters:
    ///   - hostname: The hostname.
    ///   - plugin: The plugin's name.
    ///   - options: The plugin's options, as given.
    ///   - weight: The instance's weight for the server's `weighted` balancing (1–1000),
    ///     sent with the bind request; `nil` leaves it to the server (1).
    ///   - persist: Whether to append a `[[component]]` entry to the configuration file.
    /// - Returns: The hostname's status.
    /// - Throws: ``PluginError`` (unknown plugin, bad options), ``HostError`` (already
    ///   served, a weight out of range, no file to persist to), ``/ComponentKit/ComponentError`` (refused by the server).
    @discardableResult
    public func bind(
        _ hostname: String, plugin: String, options: [String: PluginOptionValue] = [:], weight: Int? = nil,
        persist: Bool = false
    ) async throws -> HostStatus.Component {
        let key = Self.key(hostname)
        if let weight, !(1...1000).contains(weight) {
            throw HostError("the weight of \(hostname) must be an integer from 1 to 1000, not \(weight)")
        }
        guard self.entries[key] == nil else {
            throw HostError(
                "\(hostname) is already served (by plugin '\(self.entries[key]!.handler.snapshot.plugin)'); unbind it first")
        }
        if persist, self.currentConfiguration.path == nil {
            throw HostError("cannot persist: the host was not started from a configuration file")
        }
        let validated = try self.registry.validate(plugin: plugin, options: options)
        let handler = try Self.makeHosted(
            hostname, plugin: plugin, options: validated, registry: self.registry, logger: self.logger,
            metrics: self.metrics)
        self.entries[key] = Entry(hostname: hostname, origin: persist ? .configuration : .runtime, handler: handler)
        do {
            try await self.serve(hostname, weight: weight, handler: handler)
        } catch {
            if self.entries[key]?.handler === handler {
                self.entries.removeValue(forKey: key)
            }
            if !(error is ComponentError) || (error as? ComponentError)?.kind != .alreadyBound {
                self.metrics.bindErrors.increment()
            }
            throw error
        }
        self.logger.info(
            "hostname added",
            metadata: ["component.hostname": "\(hostname)", "component.plugin": "\(plugin)", "persist": "\(persist)"])
        if persist, let path = self.currentConfiguration.path {
            try self.persist(path: path) { text in
                ConfigurationFileEditor.appending(text, hostname: hostname, plugin: plugin, options: options, weight: weight)
            }
            var component = HostConfiguration.Component(hostname: hostname, plugin: plugin, options: validated)
            component.weight = weight
            self.currentConfiguration.components.append(component)
        }
        return self.componentStatus(key)
            ?? HostStatus.Component(
                hostname: hostname, plugin: plugin, options: validated.values,
                origin: (persist ? Origin.configuration : .runtime).rawValue,
                state: "pending", stanzasIn: 0, stanzasOut: 0, hangs: 0)
    }

    /// Unbinds a hostname while the host runs.
    /// - Parameters:
    ///   - hostname: The hostname.
    ///   - persist: Whether to remove its `[[component]]` entry from the configuration file
    ///     (otherwise a hostname from the file comes back on the next reload or restart).
    /// - Throws: ``HostError`` when the hostname is not served; ``/ComponentKit/ComponentError``
    ///   when the server refuses (the hostname then stays bound).
    public func unbind(_ hostname: String, persist: Bool = false) async throws {
        let key = Self.key(hostname)
        guard let entry = self.entries[key] else {
            throw HostError("\(hostname) is not served by this host")
        }
        if let onDemand = entry.handler.snapshot.handler as? any OnDemandBinding {
            await onDemand.stop()
            await Self.waitWhileBinding(entry.hostname, on: self.connection)
        }
        do {
            try await self.connection.unbind(entry.hostname)
        } catch let error as ComponentError where error.kind == .notBound {
            // Already gone from the connection (a refused bind); forget it here too.
        }
        if self.entries[key]?.handler === entry.handler {
            self.entries.removeValue(forKey: key)
        }
        self.metrics.forget(hostname: key)
        self.logger.info("hostname removed", metadata: ["component.hostname": "\(hostname)", "persist": "\(persist)"])
        if persist, let path = self.currentConfiguration.path {
            let inFile = self.currentConfiguration.components.contains { Self.key($0.hostname) == key }
            if inFile {
                try self.persist(path: path) { text in
                    ConfigurationFileEditor.removing(text, hostname: hostname) ?? text
                }
                self.currentConfiguration.components.removeAll { Self.key($0.hostname) == key }
            }
        }
    }

    private func persist(path: String, _ edit: (String) -> String) throws {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw HostError("cannot read the configuration file \(path) to persist: \(HostConfiguration.reason(error))")
        }
        let edited = edit(text)
        do {
            _ = try HostConfiguration.parse(edited, path: path, registry: self.registry)
        } catch {
            throw HostError("not persisted: the edited configuration would not load: \(error)")
        }
        try ConfigurationFileEditor.write(edited, to: path)
    }

    // MARK: Reload

    /// Reads the configuration file again and applies it (SIGHUP).
    /// - Returns: What changed.
    /// - Throws: ``ConfigurationError`` when the file has an error: nothing changes.
    @discardableResult
    public func reload() async throws -> ReloadReport {
        guard let path = self.currentConfiguration.path else {
            throw HostError("cannot reload: the host was not started from a configuration file")
        }
        let configuration = try HostConfiguration.load(path: path, registry: self.registry)
        return try await self.reload(from: configuration)
    }

    /// Applies a new configuration: binds added hostnames, unbinds removed ones, gives
    /// changed ones their new plugin or options. Every new handler is made before anything
    /// changes, so a plugin refusing its options rejects the whole reload.
    /// - Parameter configuration: The new, validated configuration.
    /// - Returns: What changed, what failed, and what needs a restart.
    /// - Throws: ``PluginError`` when a plugin refuses: nothing changes.
    @discardableResult
    public func reload(from configuration: HostConfiguration) async throws -> ReloadReport {
        // A server the connection was transferred to (XEP-0051) holds until a reload.
        self.connection.forgetTransferTarget()
        let running = self.entries.mapValues { entry in
            let snapshot = entry.handler.snapshot
            return ReloadPlan.Running(
                plugin: snapshot.plugin, options: snapshot.options, fromConfiguration: entry.origin == .configuration)
        }
        let plan = ReloadPlan(running: running, desired: configuration.components)
        let byKey = Dictionary(configuration.components.map { (Self.key($0.hostname), $0) }) { first, _ in first }

        // Phase 1: make every handler; any refusal rejects the reload.
        var prepared: [String: any ComponentHandler] = [:]
        for hostname in plan.added + plan.changed {
            let component = byKey[Self.key(hostname)]!
            let context = PluginContext(hostname: hostname, logger: Self.pluginLogger(self.logger, hostname, component.plugin))
            do {
                prepared[Self.key(hostname)] = try self.registry.makeHandler(
                    plugin: component.plugin, options: component.options, context: context)
            } catch {
                throw ConfigurationError(
                    path: configuration.path, key: "component \(hostname)", "\(error); configuration not applied")
            }
        }

        // Phase 2: apply.
        var failures: [String: String] = [:]
        for key in plan.removed {
            do {
                try await self.unbind(key)
            } catch {
                failures[key] = "\(error)"
            }
        }
        for hostname in plan.changed {
            let key = Self.key(hostname)
            guard let entry = self.entries[key], let component = byKey[key] else { continue }
            let snapshot = entry.handler.snapshot
            if snapshot.handler is any OnDemandBinding || prepared[key] is any OnDemandBinding {
                // A hostname bound on demand (external) is served anew: its listener,
                // secret or command may have changed.
                do {
                    try await self.unbind(hostname)
                    let handler = HostedHandler(
                        hostname: hostname, plugin: component.plugin, options: component.options, handler: prepared[key]!,
                        metrics: self.metrics.hostname(hostname))
                    self.entries[key] = Entry(hostname: hostname, origin: .configuration, handler: handler)
                    try await self.serve(hostname, weight: component.weight, handler: handler)
                } catch {
                    failures[hostname] = "\(error)"
                }
                continue
            }
            if snapshot.plugin == component.plugin, let updatable = snapshot.handler as? any PluginOptionsUpdatable {
                do {
                    try await updatable.optionsChanged(to: component.options)
                    entry.handler.recordOptions(component.options)
                } catch {
                    failures[hostname] = "\(error)"
                }
            } else {
                entry.handler.replace(plugin: component.plugin, options: component.options, handler: prepared[key]!)
            }
            self.entries[key]?.origin = .configuration
        }
        for hostname in plan.unchanged {
            self.entries[Self.key(hostname)]?.origin = .configuration
        }
        for hostname in plan.added {
            let key = Self.key(hostname)
            let component = byKey[key]!
            let handler = HostedHandler(
                hostname: hostname, plugin: component.plugin, options: component.options, handler: prepared[key]!,
                metrics: self.metrics.hostname(hostname))
            self.entries[key] = Entry(hostname: hostname, origin: .configuration, handler: handler)
            do {
                try await self.serve(hostname, weight: component.weight, handler: handler)
            } catch {
                if self.entries[key]?.handler === handler {
                    self.entries.removeValue(forKey: key)
                }
                failures[hostname] = "\(error)"
            }
        }

        let restartRequired = Self.restartRequired(old: self.currentConfiguration, new: configuration)
        self.currentConfiguration = configuration
        self.logger.info(
            "configuration reloaded",
            metadata: [
                "reload.added": "\(plan.added)", "reload.removed": "\(plan.removed)",
                "reload.changed": "\(plan.changed)", "reload.failures": "\(failures.count)",
            ])
        for setting in restartRequired {
            self.logger.warning("setting changed; restart to apply it", metadata: ["setting": "\(setting)"])
        }
        return ReloadReport(plan: plan, failures: failures, restartRequired: restartRequired)
    }

    static func restartRequired(old: HostConfiguration, new: HostConfiguration) -> [String] {
        var settings: [String] = []
        if old.server != new.server { settings.append("[server]") }
        if old.auth != new.auth { settings.append("[auth]") }
        if old.adminSocket != new.adminSocket { settings.append("[admin] socket") }
        if old.metricsListen != new.metricsListen { settings.append("[metrics] listen") }
        if old.logging != new.logging { settings.append("[logging]") }
        let oldSecrets = Dictionary(old.components.map { (Self.key($0.hostname), $0.secret) }) { a, _ in a }
        for component in new.components where oldSecrets[Self.key(component.hostname)] != nil {
            if oldSecrets[Self.key(component.hostname)]! != component.secret {
                settings.append("component \(component.hostname) secret_file")
            }
        }
        // The weight goes with the bind request: it changes with the next bind.
        let oldWeights = Dictionary(old.components.map { (Self.key($0.hostname), $0.weight) }) { a, _ in a }
        for component in new.components {
            if let weight = oldWeights[Self.key(component.hostname)], weight != component.weight {
                settings.append("component \(component.hostname) weight")
            }
        }
        return settings
    }

    // MARK: Status

    /// The server, the negotiated stream, and every hostname with its plugin, state and counters.
    public var status: HostStatus {
        let connectionStatus = self.connection.status
        let configuration = self.connection.configuration
        var components: [HostStatus.Component] = []
        var byKey: [String: ComponentStatus.Hostname] = [:]
        for hostname in connectionStatus.hostnames {
            byKey[Self.key(hostname.hostname)] = hostname
        }
        let now = ContinuousClock.now
        for (key, entry) in self.entries {
            let snapshot = entry.handler.snapshot
            let kit = byKey[key]
            let hang = entry.handler.watchdog.currentHang(now: now)
            components.append(
                HostStatus.Component(
                    hostname: kit?.hostname ?? entry.hostname, plugin: snapshot.plugin, options: snapshot.options.values,
                    origin: entry.origin.rawValue, state: kit?.state.rawValue ?? "unbound",
                    stanzasIn: kit?.stanzasIn ?? 0, stanzasOut: kit?.stanzasOut ?? 0,
                    hangs: entry.handler.watchdog.hangCount, hungOn: hang?.stanza,
                    hungSeconds: hang.map { Double($0.duration.components.seconds) },
                    external: self.externalStatus(key, handler: snapshot.handler)))
        }
        components.sort { $0.hostname < $1.hostname }
        let info = connectionStatus.isConnected ? connectionStatus.connection : nil
        return HostStatus(
            server: "\(configuration.host):\(configuration.port)", domain: configuration.serverDomain,
            connected: connectionStatus.isConnected, protocolInUse: info.map { Self.protocolName($0.protocolMode) },
            tlsVersion: info?.tlsVersion, saslMechanism: info?.saslMechanism, lastError: connectionStatus.lastError,
            components: components)
    }

    /// Starts serving a hostname: binds it now (or registers it, to be bound when a stream
    /// is up), or, for a plugin bound on demand (``ExternalPlugin``), lets the handler bind
    /// it when it is ready.
    private func serve(_ hostname: String, weight: Int? = nil, handler: HostedHandler) async throws {
        if let onDemand = handler.snapshot.handler as? any OnDemandBinding {
            onDemand.start(self.onDemandRuntime(hostname, weight: weight, hosted: handler))
        } else if self.isRunning && self.connection.status.isConnected {
            _ = try await self.connection.bind(hostname, weight: weight, handler: handler)
        } else {
            try self.connection.register(hostname, weight: weight, handler: handler)
        }
    }

    /// What a handler bound on demand may do with the host's connection.
    private nonisolated func onDemandRuntime(_ hostname: String, weight: Int?, hosted: HostedHandler) -> OnDemandRuntime {
        Self.onDemandRuntime(
            hostname, weight: weight, hosted: hosted, connection: self.connection, gateway: self.gateway, logger: self.logger)
    }

    private static func onDemandRuntime(
        _ hostname: String, weight: Int?, hosted: HostedHandler, connection: ComponentConnection, gateway: ExternalGateway,
        logger: Logger
    ) -> OnDemandRuntime {
        let logger = Self.pluginLogger(logger, hostname, hosted.snapshot.plugin)
        return OnDemandRuntime(
            hostname: hostname, gateway: gateway,
            bind: { try connection.register(hostname, weight: weight, handler: hosted) },
            unbind: {
                await Self.waitWhileBinding(hostname, on: connection)
                do {
                    try await connection.unbind(hostname)
                } catch let error as ComponentError where error.kind == .notBound {
                    // Never bound (the upstream was down): nothing to undo.
                } catch {
                    logger.warning("unbinding failed", metadata: ["error": "\(error)"])
                }
            },
            send: { try await connection.send($0) },
            pendingStanzas: {
                let key = hostnameKey(hostname)
                return connection.status.hostnames.first { hostnameKey($0.hostname) == key }?.queuedStanzas ?? 0
            },
            isUpstreamConnected: { connection.status.isConnected },
            logger: logger)
    }

    private func externalStatus(_ key: String, handler: any ComponentHandler) -> HostStatus.External? {
        guard let external = handler as? ExternalHandler else { return nil }
        var status = HostStatus.External(
            listen: external.options.listen.description, connected: external.isConnected,
            listenError: self.gateway.listenerError(external.options.listen))
        if let supervisor = self.gateway.supervisor(for: key) {
            let snapshot = supervisor.snapshot
            status.pid = snapshot.pid
            status.processState = snapshot.state
            status.restarts = snapshot.restarts
            status.uptimeSeconds = snapshot.pid == nil ? nil : snapshot.startedAt.map { Date().timeIntervalSince($0) }
            status.lastExit = snapshot.lastExit
        }
        return status
    }

    /// Waits (up to the request timeout) until a bind in flight for `hostname` is answered:
    /// ComponentKit drops a binding unbound while its bind is in flight without telling the
    /// server, which then keeps routing to it. A hostname bound on demand can be unbound
    /// that soon (a component that connects and leaves at once).
    static func waitWhileBinding(_ hostname: String, on connection: ComponentConnection) async {
        let key = hostnameKey(hostname)
        let deadline = ContinuousClock.now + connection.configuration.requestTimeout
        while ContinuousClock.now < deadline,
            connection.status.hostnames.first(where: { hostnameKey($0.hostname) == key })?.state == .binding
        {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The wrapping handler of a served hostname (tests, diagnostics).
    func hostedHandler(for hostname: String) -> HostedHandler? {
        self.entries[Self.key(hostname)]?.handler
    }

    private func componentStatus(_ key: String) -> HostStatus.Component? {
        self.status.components.first { Self.key($0.hostname) == key }
    }

    // MARK: Helpers

    /// The key of a hostname: ``/ComponentKit/HostnameKey``'s spelling (the same key the
    /// connection and the reload plan use).
    static func key(_ hostname: String) -> String {
        hostnameKey(hostname)
    }

    static func protocolName(_ mode: ComponentConfiguration.ProtocolMode) -> String {
        switch mode {
        case .xep0225: "XEP-0225"
        case .xep0114: "XEP-0114"
        case .auto: "auto"
        }
    }

    static func pluginLogger(_ logger: Logger, _ hostname: String, _ plugin: String) -> Logger {
        var logger = logger
        logger[metadataKey: "component.hostname"] = "\(hostname)"
        logger[metadataKey: "component.plugin"] = "\(plugin)"
        return logger
    }

    static func makeHosted(
        _ hostname: String, plugin: String, options: PluginOptions, registry: PluginRegistry, logger: Logger,
        metrics: HostMetrics
    ) throws -> HostedHandler {
        let context = PluginContext(hostname: hostname, logger: Self.pluginLogger(logger, hostname, plugin))
        let handler = try registry.makeHandler(plugin: plugin, options: options, context: context)
        return HostedHandler(
            hostname: hostname, plugin: plugin, options: options, handler: handler, metrics: metrics.hostname(hostname))
    }
}

/// One spelling per hostname for the host's tables, its reload plan and its metrics:
/// ``/ComponentKit/HostnameKey``'s (domain lowercased without a trailing dot, resource kept).
func hostnameKey(_ hostname: String) -> String {
    HostnameKey(hostname)?.description ?? hostname.lowercased()
}
