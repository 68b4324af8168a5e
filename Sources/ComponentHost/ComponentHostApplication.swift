public import Logging
import NIOPosix
public import Prometheus
import ServiceLifecycle
import UnixSignals

/// Runs a host as a process: the ``ComponentHost``, its ``AdminServer``, the
/// ``MetricsServer`` (when `[metrics] listen` is set and a registry is given), graceful
/// shutdown on SIGTERM/SIGINT and reload on SIGHUP. What `component-host run` does, and
/// what a custom `@main` with its own plugins calls:
///
/// ```swift
/// let registry = PluginRegistry.standard.adding([WeatherPlugin.self])
/// let configuration = try HostConfiguration.load(path: "host.toml", registry: registry)
/// LoggingSystem.bootstrap { HostLogging.makeHandler(label: $0, format: .human, level: .info) }
/// try await ComponentHostApplication(configuration: configuration, registry: registry).run()
/// ```
///
/// It installs signal handlers only when ``run()`` is called, and never bootstraps
/// logging or metrics: that is the application's job.
public struct ComponentHostApplication: Sendable {
    /// The configuration to start with.
    public var configuration: HostConfiguration
    /// The plugins.
    public var registry: PluginRegistry
    /// The logger.
    public var logger: Logger
    /// The Prometheus registry that metrics go to (the one the application bootstrapped
    /// swift-metrics with); no metrics endpoint when `nil`.
    public var metricsRegistry: PrometheusCollectorRegistry?
    /// How long a handler may spend on one stanza before it is reported hung.
    public var watchdogThreshold: Duration = .seconds(10)
    /// How long graceful shutdown may take before the services are cancelled.
    public var shutdownTimeout: Duration = .seconds(15)

    /// Creates an application.
    /// - Parameters:
    ///   - configuration: The configuration to start with.
    ///   - registry: The plugins.
    ///   - logger: The logger.
    ///   - metricsRegistry: The Prometheus registry to expose, if any.
    public init(
        configuration: HostConfiguration, registry: PluginRegistry = .standard,
        logger: Logger = Logger(label: "component-host"), metricsRegistry: PrometheusCollectorRegistry? = nil
    ) {
        self.configuration = configuration
        self.registry = registry
        self.logger = logger
        self.metricsRegistry = metricsRegistry
    }

    /// Runs until SIGTERM or SIGINT (graceful, bounded by ``shutdownTimeout``).
    public func run() async throws {
        // What check-config warns about (secret files others can read, cleartext…) is logged too.
        for warning in self.configuration.warnings {
            self.logger.warning("configuration: \(warning)")
        }
        let host = try ComponentHost(
            configuration: self.configuration, registry: self.registry, logger: self.logger,
            watchdogThreshold: self.watchdogThreshold)
        var services: [any Service] = [
            host,
            AdminServer(path: self.configuration.adminSocket, host: host, logger: self.logger),
            ReloadOnHangup(host: host, logger: self.logger),
        ]
        if let listen = self.configuration.metricsListen, let registry = self.metricsRegistry {
            services.append(
                MetricsServer(
                    address: listen, registry: registry, logger: self.logger,
                    beforeScrape: { await host.sampleMetrics() }))
        }
        var configuration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: self.logger)
        configuration.maximumGracefulShutdownDuration = self.shutdownTimeout
        configuration.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: configuration).run()
    }
}

/// Reloads the host's configuration file on SIGHUP; a file with an error is logged and
/// the running state kept.
struct ReloadOnHangup: Service {
    let host: ComponentHost
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                for await _ in signals.cancelOnGracefulShutdown() {
                    self.logger.info("SIGHUP: reloading the configuration")
                    do {
                        let report = try await self.host.reload()
                        for (hostname, failure) in report.failures {
                            self.logger.error(
                                "reload: change failed", metadata: ["component.hostname": "\(hostname)", "error": "\(failure)"])
                        }
                    } catch {
                        self.logger.error(
                            "reload rejected; the running configuration is kept", metadata: ["error": "\(error)"])
                    }
                }
            } onCancel: {
            }
        } onGracefulShutdown: {
        }
    }
}
