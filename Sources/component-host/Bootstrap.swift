import ComponentHost
import Logging
import Metrics
import Prometheus

/// The process-wide set-up that only the executable does, once: swift-log and swift-metrics.
enum Bootstrap {
    /// Bootstraps logging with the configured format and level.
    static func logging(format: HostConfiguration.Logging.Format, level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            HostLogging.makeHandler(label: label, format: format, level: level)
        }
    }

    /// Bootstraps swift-metrics with Prometheus; returns the registry to expose.
    static func metrics() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }
}
