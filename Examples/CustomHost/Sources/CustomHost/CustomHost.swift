import ComponentHost
import Logging
import StockPlugins

/// `custom-host host.toml`: the stock plugins plus `time`, with the same configuration
/// file, admin socket (use `component-host bind/unbind/status` against it), metrics and
/// signals as `component-host run`.
@main
struct CustomHost {
    static func main() async throws {
        let arguments = CommandLine.arguments
        guard arguments.count == 2 else {
            print("usage: \(arguments[0]) host.toml")
            return
        }
        // Your plugins next to the stock ones (echo, kv).
        let registry = PluginRegistry.stock.adding([TimePlugin.self])
        let configuration = try HostConfiguration.load(path: arguments[1], registry: registry)

        // The application bootstraps logging once (and metrics, if it wants an endpoint:
        // MetricsSystem.bootstrap(PrometheusMetricsFactory(registry:)) and pass the registry).
        LoggingSystem.bootstrap { label in
            HostLogging.makeHandler(label: label, format: configuration.logging.format, level: configuration.logging.level)
        }
        let application = ComponentHostApplication(
            configuration: configuration, registry: registry, logger: Logger(label: "custom-host"))
        try await application.run()  // SIGTERM/SIGINT: graceful shutdown; SIGHUP: reload
    }
}
